"""minGRU (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024): layers, each a residual block around one minGRU.

Layer k, input u_t (H), state h_t (H), parameters `<name>_l{k}`:
    v_t = RMSNorm(u_t) = u_t / ||u_t|| * sqrt(H) * norm_weight           norm_weight (H) (pre-norm)
    z_t = sigmoid(gate_weight v_t + gate_bias)                          gate_weight (H, H), gate_bias (H)
    htilde_t = g(candidate_weight v_t + candidate_bias)                 candidate_weight (H, H), candidate_bias (H)
    h_t = (1 - z_t) * h_{t-1} + z_t * htilde_t
    out_t = u_t + out_weight h_t + out_bias                             out_weight (H, H), out_bias (H)
with g(x) = x + 0.5 for x >= 0, sigmoid(x) below: the paper's log-space version, whose
candidates and so states stay positive (h_0 >= 0). The gates read x_t alone, so the
recurrence is linear and diagonal in h: on a GPU training computes up to SCAN_CHUNK steps
at once with the paper's log-space parallel scan (mingru_scan, with the carried h_0 added
outside the logarithms); on the CPU it runs mingru_loop, the same recurrence step by step
with the same signature, because there the scan's logcumsumexp (its backward above all)
made a training step 5x slower than the loop at T = 100-1000
(`python benchmarks/training_speed.py --scans`, docs/performance.md).

The block is the authors' selective-copying model's (BorealisAI/minRNNs, models/model.py
with configs/selective_copy.yaml: RMSNorm, minGRU, residual; no convolution, no
feed-forward block). Not kept: its expansion factor (6 there; the probe's states are H
wide and the layers pass H on, so the state is H wide: factor 1), its dropout, its
learned initial state (the pipeline starts every sequence from h_0 = 0, as the probe's
burn-in does), and the final RMSNorm before the decoder (the decoder reads the top
layer's output, as for the LRU).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from rnngrad.archs import register
from rnngrad.archs.base import NOT_APPLICABLE, Arch, layer_tensors, uniform_parameters

# Steps per log-space scan (mingru_scan): a language model's bptt (35) in one, a long task's sequence in
# pieces. Over T = 1000 float32 steps the gradients' error is then ~1e-5 of the largest (2e-4 with gates
# saturated to +-60), against 2e-4 (4e-3) in one scan (tests/test_mingru.py).
SCAN_CHUNK = 64
PARAMETERS = ("norm_weight", "gate_weight", "gate_bias", "candidate_weight", "candidate_bias", "out_weight",
              "out_bias")


def g(x: torch.Tensor) -> torch.Tensor:
    """The candidate's activation: x + 0.5 for x >= 0, sigmoid(x) below: positive, continuous (slope 1/4, then 1)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: torch.Tensor) -> torch.Tensor:
    """log g(x), finite everywhere; relu keeps the unused branch finite so that torch.where's gradient is."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def parallel_scan_log(log_coeffs: torch.Tensor, log_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log h_t of h_t = a_t h_{t-1} + b_t from h_0 = 0, every step at once (time first, (T, ...)), and A_t.

    log_coeffs = log a_t, log_values = log b_t. With A_t = sum_{j<=t} log a_j,
    h_t = sum_{j<=t} exp(A_t - A_j) b_j = exp(A_t + logcumsumexp_j(log b_j - A_j)) (Heinsen
    2023, the paper's appendix). Its rounding error grows with |A_t|, the log of how much the
    state has forgotten: about |A_t| rounding units, relative, in the values and gradients
    (float32 at |A| ~ 800: gradients of ~1e-4 where the exact ones have vanished).
    """
    a_star = torch.cumsum(log_coeffs, dim=0)
    return a_star + torch.logcumsumexp(log_values - a_star, dim=0), a_star


def mingru_scan(gate: torch.Tensor, candidate: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """h_t (T, B, H) of the minGRU for t = 1..T by the log-space parallel scan: the training path.

    gate: k_t (T, B, H), z_t = sigmoid(k_t); candidate: htilde_t = g(candidate_t) (T, B, H);
    h0 (B, H). log(1 - z) = -softplus(k), log z = -softplus(-k). h_0 enters linearly,
    h_t = exp(A_t) h_0 + (the scan from 0), A_t = log prod_{j<=t} (1 - z_j), so no log h_0 is
    taken: a zero h_0 (the first batch) costs no -inf, and its gradient exp(A_t) is finite.
    The scan runs over SCAN_CHUNK steps at a time, each chunk's last state carried into the
    next as h_0: |A_t| then counts one chunk's forgetting, not the whole sequence's, which
    bounds the scan's rounding (parallel_scan_log) on long sequences with saturated gates.
    """
    log_coeffs, log_values = -F.softplus(gate), -F.softplus(-gate) + log_g(candidate)
    h, chunks = h0, []
    for chunk_coeffs, chunk_values in zip(log_coeffs.split(SCAN_CHUNK), log_values.split(SCAN_CHUNK)):
        log_from_zero, a_star = parallel_scan_log(chunk_coeffs, chunk_values)
        chunks.append(torch.exp(a_star) * h + torch.exp(log_from_zero))
        h = chunks[-1][-1]
    return torch.cat(chunks)


def mingru_loop(gate: torch.Tensor, candidate: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The same h_t (T, B, H) as mingru_scan, step by step: h_t = (1 - z_t) h_{t-1} + z_t g(candidate_t)."""
    h, outputs = h0, []
    # unbind: one backward node for all steps (indexing [t] would write a (T, B, H) zero tensor per step)
    for z, value in zip(torch.sigmoid(gate).unbind(0), g(candidate).unbind(0)):
        h = torch.lerp(h, value, z)
        outputs.append(h)
    return torch.stack(outputs)


def rms_norm(weights: dict, layer_input: torch.Tensor) -> torch.Tensor:
    """u / ||u|| * sqrt(H) * norm_weight, the authors' RMSNorm."""
    return F.normalize(layer_input, dim=-1) * math.sqrt(layer_input.shape[-1]) * weights["norm_weight"]


def gate_and_candidate(weights: dict, layer_input: torch.Tensor) -> torch.Tensor:
    """[k_t, candidate pre-activation] (..., 2H) from the normalised input: everything that does not read h."""
    v = rms_norm(weights, layer_input)
    return torch.cat([F.linear(v, weights["gate_weight"], weights["gate_bias"]),
                      F.linear(v, weights["candidate_weight"], weights["candidate_bias"])], dim=-1)


def block_output(weights: dict, layer_input: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """u_t + out_weight h_t + out_bias: what a layer passes up."""
    return layer_input + F.linear(hidden, weights["out_weight"], weights["out_bias"])


class MinGRU(nn.Module):
    """The training module: (inputs (T, B, H), h_0 (layers, B, H)) -> (outputs (T, B, H), h_T (layers, B, H))."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1):
        super().__init__()
        if input_size != hidden_size:
            raise ValueError(f"minGRU: input_size {input_size} must equal hidden_size {hidden_size} (residual blocks)")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        matrix, vector = (hidden_size, hidden_size), (hidden_size,)
        for layer in range(num_layers):  # torch's nn.Linear init, as MinGRUArch.initialise draws it
            self.register_parameter(f"norm_weight_l{layer}", nn.Parameter(torch.ones(vector)))
            uniform_parameters(self, {f"{name}_l{layer}": matrix if name.endswith("weight") else vector
                                      for name in PARAMETERS[1:]}, hidden_size)
        self.recurrence = None  # by device (the module docstring); a benchmark may set one

    def weights(self, layer: int) -> dict[str, torch.Tensor]:
        return layer_tensors(self, PARAMETERS, layer)

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor):
        layer_input, final = inputs, []
        for layer in range(self.num_layers):
            w = self.weights(layer)
            gate, candidate = gate_and_candidate(w, layer_input).chunk(2, dim=-1)
            recurrence = self.recurrence or (mingru_scan if gate.is_cuda else mingru_loop)
            states = recurrence(gate, candidate, hidden[layer])
            layer_input = block_output(w, layer_input, states)
            final.append(states[-1])
        return layer_input, torch.stack(final)


@register
class MinGRUArch(Arch):
    name, label, colour, linestyle, family = "mingru", "minGRU", "#88CCEE", "--", "remedy"  # Tol's cyan
    reference = ("Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, Were RNNs all we needed? (arXiv:2410.01201); "
                 "code: github.com/BorealisAI/minRNNs (the authors'), github.com/lucidrains/minGRU-pytorch")
    equation = ("h_t = (1 - z_t) * h_{t-1} + z_t * g(W_h v_t + b_h), z_t = sigmoid(W_z v_t + b_z), "
                "v_t = RMSNorm(u_t), out_t = u_t + W_o h_t + b_o")
    # dh_t/dh_{t-1} = diag(1 - z_t): ||.||_2 = max_i (1 - z_t,i) < 1 = gamma lambda_1 with the
    # identity as recurrent matrix (recurrent_weights) and the coefficient 1 - z_t <= gamma = 1.
    # The top layer's g(k) <= g(0), and every product of step Jacobians has norm <= 1.
    gamma = 1.0
    diagonal = True
    fixed = {"init": NOT_APPLICABLE, "init_scale": NOT_APPLICABLE}  # the authors' code's init (initialise)
    square_matrices, vectors = 3, 4  # gate, candidate and output weights; their biases and the norm's weight

    def recurrent(self, input_size, hidden_size, num_layers, options, steps):
        return MinGRU(input_size, hidden_size, num_layers)

    def initialise(self, model, generator, cell, task_run):
        """The authors' code: torch's nn.Linear init, weights and biases uniform in +-1/sqrt(H),
        RMSNorm's weight 1 (its gain 1 + gamma, gamma = 0); h_0 = 0. Drawn from `generator`."""
        rnn, bound = model.rnn, 1.0 / math.sqrt(model.hidden_size)
        for layer in range(model.num_layers):
            for name in PARAMETERS:
                parameter = getattr(rnn, f"{name}_l{layer}")
                if name == "norm_weight":
                    parameter.fill_(1.0)
                else:
                    parameter.copy_((torch.rand(parameter.shape, generator=generator) * 2 - 1) * bound)

    def recurrent_weights(self, rnn, num_layers):
        """The identity: h_{t-1} enters step t only as (1 - z_t) * h_{t-1}, no matrix, so lambda_1 =
        sigma_max = spectral radius = 1, and the input-dependent 1 - z_t < 1 is gamma's part."""
        weight = rnn.gate_weight_l0
        return [torch.eye(rnn.hidden_size, dtype=weight.dtype, device=weight.device) for _ in range(num_layers)]

    def layer_weights(self, rnn, layer):
        return rnn.weights(layer)

    def project_input(self, weights, layer_input):
        return gate_and_candidate(weights, layer_input)

    def recurrent_input(self, weights, h_prev):
        """e_t = h_{t-1}, the recurrent path's input (identity matrix): dL/de_t = (1 - z_t) dL/dh_t, and,
        `diagonal`, the contribution e-gradient * h_{t-1} is step t's part of dL/du at u = 1 for a
        per-unit recurrent gain u (h_t = (1 - z_t) u h_{t-1} + ...), like the IndRNN's u."""
        return h_prev

    def update(self, weights, x_proj, state, e, probe):
        gate, candidate = x_proj.chunk(2, dim=-1)
        return (torch.lerp(e, g(candidate), torch.sigmoid(gate)),)

    def layer_output(self, weights, layer_input, hidden):
        return block_output(weights, layer_input, hidden)

    def step_jacobian(self, weights, prev_states, x_proj):
        """diag(1 - z_t): the gates do not read h."""
        gate = x_proj.chunk(2, dim=-1)[0]
        return torch.diag_embed(1 - torch.sigmoid(gate))
