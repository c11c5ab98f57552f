"""Selective state space model S6 (Gu & Dao 2023, Mamba): layers, each a residual block around one selective SSM.

Layer k, input u_t (H), SSM state s_t (H x N, N = s6_state_size), parameters `<name>_l{k}`:
    v_t = LayerNorm(u_t)                                  norm_weight, norm_bias (pre-norm)
    (x_t, z_t) = W_in v_t,  x_t <- SiLU(x_t)              in_proj_weight (2H, H), no bias
    Delta_t = softplus(W_dt (W_r x_t) + b_dt)             x_proj_weight[:R] = W_r (R, H), dt_proj_weight (H, R),
                                                          dt_proj_bias (H); R = dt_rank = ceil(H / 16)
    B_t = W_B x_t,  C_t = W_C x_t                         x_proj_weight[R:R+N], x_proj_weight[R+N:] (N, H)
    A = -exp(A_log)                                       A_log (H, N), diagonal: one row of N per channel
    Abar_t = exp(Delta_t A),  Bbar_t = (Delta_t A)^-1 (exp(Delta_t A) - 1) Delta_t B_t    (zero-order hold)
    s_t = Abar_t * s_{t-1} + Bbar_t * x_t                 elementwise per (h, n): x_{t,h} drives row h
    y_t = C_t s_t + D * x_t                               (C_t s_t)_h = sum_n C_{t,n} s_{t,hn}; D (H)
    out_t = u_t + W_out (y_t * SiLU(z_t))                 out_proj_weight (H, H), no bias
The discretisation is the paper's eq. 4 exactly (with A diagonal, Bbar_{hn} = expm1(Delta_h A_hn) / A_hn B_n);
the reference code's selective_scan_ref simplifies Bbar to Delta B (Euler), which agrees to first
order in Delta A. Delta, B and C depend on the input only, so d s_t / d s_{t-1} = diag(Abar_t)
exactly, every entry in (0, 1): the recurrence can decay at a rate the input selects (Delta -> 0:
the step keeps its state and ignores its input; a large Delta resets it to the input) but never grow.

Left out of the Mamba block: the short causal conv1d before the SiLU (it would add a second,
non-SSM state, the last d_conv - 1 inputs, and what is measured here is the selective SSM),
and the expansion: d_inner = H (Mamba's expand = 2), so the state is H x N. The hidden state
passed between batches is s flattened h-major, (num_layers, batch, H * N) (Arch.state_width),
as is the probe's state `h`. Training runs the SSM with SelectiveScan (selective_scan): one pure
PyTorch loop over steps with discretisation and read-out fused in, its backward pass in closed form.

Init (the reference code's): A_log = log(1..N) per channel (S4D-real), D = 1, Delta's bias the
inverse softplus of dt log-uniform in [0.001, 0.1], dt_proj_weight uniform in +-R^-1/2,
in_proj, x_proj and out_proj torch's default Linear init (out_proj divided by sqrt(layers), the
reference language model's rescaling of the residual branches). Reference code:
github.com/state-spaces/mamba, mamba_ssm/modules/mamba_simple.py and
mamba_ssm/ops/selective_scan_interface.py (selective_scan_ref).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from rnngrad.archs import register
from rnngrad.archs.base import NOT_APPLICABLE, Arch, layer_tensors

DEFAULT_STATE_SIZE = 16  # the paper's N
DT_MIN, DT_MAX, DT_FLOOR = 0.001, 0.1, 1e-4  # the paper's initial step sizes (dt_init_floor: the code's)
PARAMETERS = ("norm_weight", "norm_bias", "in_proj_weight", "x_proj_weight", "dt_proj_weight", "dt_proj_bias",
              "A_log", "D", "out_proj_weight")


def dt_rank(hidden_size: int) -> int:
    """R, the rank of Delta's input projection: Mamba's ceil(H / 16)."""
    return math.ceil(hidden_size / 16)


def zero_order_hold(a: torch.Tensor, delta: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> tuple:
    """Abar = exp(Delta A) and the drive Bbar x = (exp(Delta A) - 1) / A * B * x, both (..., H, N), from
    A (H, N), Delta and x (..., H), B (..., N): eq. 4 of the paper with A diagonal (expm1: exact as Delta -> 0)."""
    delta_a = delta[..., :, None] * a
    return torch.exp(delta_a), torch.expm1(delta_a) / a * b[..., None, :] * x[..., :, None]


class SelectiveScan(torch.autograd.Function):
    """The selective SSM over all steps, discretisation and read-out fused in, with its backward pass
    in closed form (what Mamba's selective_scan_fn does in CUDA, here one PyTorch loop per pass):

        s_t = exp(Delta_t A) * s_{t-1} + (exp(Delta_t A) - 1) / A * B_t x_t,   y_t = C_t s_t  (s_{-1} = h0).

    Only the states (T, ..., H, N) are kept for the backward pass; Abar_t and the drive are
    formed one step at a time (materialising them for all steps costs several times the
    memory and, on the CPU, most of the time). The backward pass runs the adjoint
    lambda_t = dL/ds_t = C_t dL/dy_t + Abar_{t+1} lambda_{t+1} and takes every input's gradient
    from it step by step; A's is summed over the batch once.
    """

    @staticmethod
    def forward(ctx, delta, a, b, c, x, h0):
        states = delta.new_empty(delta.shape[0], *h0.shape)
        y = torch.empty_like(x)
        state = h0
        for t in range(delta.shape[0]):
            decay, drive = zero_order_hold(a, delta[t], b[t], x[t])
            state = torch.addcmul(drive, decay, state, out=states[t])
            y[t] = torch.matmul(state, c[t][..., :, None])[..., 0]
        ctx.save_for_backward(delta, a, b, c, x, h0, states)
        return y, states[-1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y, grad_final):
        delta, a, b, c, x, h0, states = ctx.saved_tensors
        grad_delta, grad_b, grad_c, grad_x = (torch.empty_like(value) for value in (delta, b, c, x))
        grad_a = torch.zeros_like(h0)  # per batch element, summed at the end
        adjoint = grad_final.clone()  # autograd passes zeros for an output the loss does not read
        for t in range(delta.shape[0] - 1, -1, -1):
            previous = states[t - 1] if t else h0
            g_y = grad_y[t]
            adjoint += g_y[..., :, None] * c[t][..., None, :]  # dL/ds_t
            grad_c[t] = torch.matmul(g_y[..., None, :], states[t])[..., 0, :]
            delta_a = delta[t][..., :, None] * a
            decay = torch.exp(delta_a)
            hold = torch.expm1(delta_a) / a  # Bbar / B
            adjoint_hold = adjoint * hold
            grad_b[t] = torch.matmul(x[t][..., None, :], adjoint_hold)[..., 0, :]
            grad_x[t] = torch.matmul(adjoint_hold, b[t][..., :, None])[..., 0]
            grad_hold = adjoint * (b[t][..., None, :] * x[t][..., :, None])
            grad_delta_a = decay * (adjoint * previous + grad_hold / a)  # through Abar and through expm1
            grad_delta[t] = (grad_delta_a * a).sum(-1)
            grad_a += delta[t][..., :, None] * grad_delta_a - grad_hold * hold / a  # and through hold's 1 / A
            adjoint *= decay  # dL/ds_{t-1} through this step
        return grad_delta, grad_a.reshape(-1, *a.shape).sum(0), grad_b, grad_c, grad_x, adjoint


def selective_scan(delta: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, x: torch.Tensor,
                   h0: torch.Tensor) -> tuple:
    """(y (T, ..., H), s_T (..., H, N)) of the selective SSM from Delta, x (T, ..., H), A (H, N), B, C (T, ..., N)
    and h0 (..., H, N): what training computes (SelectiveScan)."""
    return SelectiveScan.apply(delta, a, b, c, x, h0)


def selective_scan_loop(delta: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, x: torch.Tensor,
                        h0: torch.Tensor) -> tuple:
    """selective_scan by a plain step loop that autograd differentiates (its reference, and the benchmark's).
    unbind, not delta[t]: indexing would make every step's backward write zeros the size of all steps."""
    outputs, state = [], h0
    for step_delta, step_b, step_c, step_x in zip(delta.unbind(0), b.unbind(0), c.unbind(0), x.unbind(0)):
        decay, drive = zero_order_hold(a, step_delta, step_b, step_x)
        state = decay * state + drive
        outputs.append((state * step_c[..., None, :]).sum(-1))
    return torch.stack(outputs), state


def layer_norm(weights: dict, layer_input: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(layer_input, (layer_input.shape[-1],), weights["norm_weight"], weights["norm_bias"])


def ssm_inputs(weights: dict, layer_input: torch.Tensor) -> tuple:
    """(x, z, Delta, B, C) of every step from the layer's input u (..., H): x, z, Delta (..., H); B, C (..., N)."""
    x, z = F.linear(layer_norm(weights, layer_input), weights["in_proj_weight"]).chunk(2, dim=-1)
    x = F.silu(x)
    rank, state_size = weights["dt_proj_weight"].shape[1], weights["A_log"].shape[1]
    dt_low, b, c = F.linear(x, weights["x_proj_weight"]).split([rank, state_size, state_size], dim=-1)
    delta = F.softplus(F.linear(dt_low, weights["dt_proj_weight"], weights["dt_proj_bias"]))
    return x, z, delta, b, c


def state_matrix(weights: dict) -> torch.Tensor:
    """A = -exp(A_log) (H, N): every entry negative, so exp(Delta A) < 1."""
    return -torch.exp(weights["A_log"])


def block_output(weights: dict, layer_input: torch.Tensor, x: torch.Tensor, z: torch.Tensor,
                 readout: torch.Tensor) -> torch.Tensor:
    """u_t + W_out((C_t s_t + D x_t) * SiLU(z_t)) from the read-out C_t s_t (..., H): what a layer passes up."""
    return layer_input + F.linear((readout + weights["D"] * x) * F.silu(z), weights["out_proj_weight"])


def paper_ssm_init(hidden_size: int, state_size: int, generator: torch.Generator | None = None) -> dict:
    """The reference code's SSM parameters: A_log = log(1..N) (S4D-real), D = 1, dt_proj_weight uniform in
    +-R^-1/2, dt_proj_bias = softplus^-1(dt) with dt log-uniform in [DT_MIN, DT_MAX] (at least DT_FLOOR)."""
    rank = dt_rank(hidden_size)
    bound = rank ** -0.5
    dt = torch.exp(torch.rand(hidden_size, generator=generator, dtype=torch.float64)
                   * (math.log(DT_MAX) - math.log(DT_MIN)) + math.log(DT_MIN)).clamp(min=DT_FLOOR)
    return {
        "A_log": torch.log(torch.arange(1, state_size + 1, dtype=torch.float64)).expand(hidden_size, state_size),
        "D": torch.ones(hidden_size),
        "dt_proj_weight": (torch.rand(hidden_size, rank, generator=generator) * 2 - 1) * bound,
        "dt_proj_bias": dt + torch.log(-torch.expm1(-dt)),  # softplus(bias) = dt
    }


class S6(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, state_size: int = DEFAULT_STATE_SIZE):
        super().__init__()
        if input_size != hidden_size:
            raise ValueError(f"S6: input_size {input_size} must equal hidden_size {hidden_size} (residual blocks)")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.state_size = int(state_size)
        size, rank, bound = hidden_size, dt_rank(hidden_size), 1.0 / math.sqrt(hidden_size)

        def linear(rows, scale=1.0):  # torch's default Linear init: uniform in +-1/sqrt(fan_in)
            return (torch.rand(rows, size) * 2 - 1) * bound * scale

        for layer in range(num_layers):
            tensors = {"norm_weight": torch.ones(size), "norm_bias": torch.zeros(size),
                       "in_proj_weight": linear(2 * size), "x_proj_weight": linear(rank + 2 * self.state_size),
                       "out_proj_weight": linear(size, 1 / math.sqrt(num_layers)),
                       **paper_ssm_init(size, self.state_size)}
            for name in PARAMETERS:
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(tensors[name].float().clone()))
        self.scan = selective_scan

    def weights(self, layer: int) -> dict[str, torch.Tensor]:
        return layer_tensors(self, PARAMETERS, layer)

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor):
        layer_input, final = inputs, []
        for layer in range(self.num_layers):
            w = self.weights(layer)
            x, z, delta, b, c = ssm_inputs(w, layer_input)
            h0 = hidden[layer].unflatten(-1, (self.hidden_size, self.state_size))
            readout, state = self.scan(delta, state_matrix(w), b, c, x, h0)
            layer_input = block_output(w, layer_input, x, z, readout)
            final.append(state.flatten(-2))
        return layer_input, torch.stack(final)


@register
class S6Arch(Arch):
    name, label, colour, linestyle, family = "s6", "S6 (Mamba)", "#882255", "--", "remedy"  # Tol's wine, dashed
    reference = ("Gu & Dao 2023, Mamba: linear-time sequence modeling with selective state spaces "
                 "(arXiv:2312.00752); code github.com/state-spaces/mamba (mamba_simple.py, selective_scan_ref)")
    equation = ("s_t = exp(Delta_t A) * s_{t-1} + (Delta_t A)^-1 (exp(Delta_t A) - 1) Delta_t B_t x_t, "
                "Delta_t, B_t, C_t from x_t; out_t = u_t + W_out((C_t s_t + D x_t) * SiLU(z_t))")
    # Pascanu's bound with lambda_1 = 1: each step's Jacobian diag(exp(Delta_t A)) has norm < 1 whatever
    # the input, and its supremum over Delta > 0 is 1 (Delta -> 0). So g(k) <= g(0) on the top layer.
    gamma = 1.0
    diagonal = True  # e_t = s_{t-1}, multiplied by Abar_t unit by unit
    hyperparameters = {
        "s6_state_size": {"type": "integer", "minimum": 1, "default": DEFAULT_STATE_SIZE, "label": "S6 state size N",
                          "description": "N, the SSM state's size per channel (the state is H x N); the paper's "
                                         "16. The probe's state, its memory and time grow with H x N"},
    }
    fixed = {"init": NOT_APPLICABLE, "init_scale": NOT_APPLICABLE}  # the paper's own init
    # in_proj (2) and out_proj; norm (2), D, dt bias, A_log (N), x_proj's B and C rows (2N), Delta's rank-R
    # factors (2R): exact at the default N and R = 1 (H <= 16), a few vectors short beyond
    square_matrices, vectors = 3, 4 + 3 * DEFAULT_STATE_SIZE + 2
    jacobian_cost = jacobian_tensors = 0.0  # diagonal step Jacobians (N, S): negligible beside the unroll

    def state_width(self, hidden_size, options):
        return hidden_size * int(options["s6_state_size"])

    def recurrent(self, input_size, hidden_size, num_layers, options, steps):
        return S6(input_size, hidden_size, num_layers, options["s6_state_size"])

    def initialise(self, model, generator, cell, task_run):
        """The paper's SSM init (paper_ssm_init) from `generator`; the projections keep the module's."""
        for layer in range(model.num_layers):
            for name, value in paper_ssm_init(model.hidden_size, model.rnn.state_size, generator).items():
                getattr(model.rnn, f"{name}_l{layer}").copy_(value)

    def recurrent_weights(self, rnn, num_layers):
        """lambda_1 = sup over Delta > 0 of ||diag(exp(Delta A))||_2 = 1 (Delta -> 0), whatever A: the
        identity (H x H: its singular values and eigenvalues are those of diag(exp(0 A)), at no cost)."""
        return [torch.eye(rnn.hidden_size) for _ in range(num_layers)]

    def layer_weights(self, rnn, layer):
        return rnn.weights(layer)

    def project_input(self, weights, layer_input):
        """(Delta_t, B_t, x_t) side by side (..., 2H + N): all a step needs of its input."""
        x, _, delta, b, _ = ssm_inputs(weights, layer_input)
        return torch.cat([delta, b, x], dim=-1)

    def recurrent_input(self, weights, h_prev):
        """e_t = s_{t-1} itself: the transition exp(Delta_t A) depends on the input, which this does not see.
        So the probe's contribution ||dL/de_t * s_{t-1}|| is ||dL/d(Delta_t A)||, step t's part of the
        gradient with respect to the log of its transition (dL/dA's part is Delta_t times it, per unit)."""
        return h_prev

    def update(self, weights, x_proj, state, e, probe):
        decay, drive = self._discretised(weights, x_proj)
        return (decay.flatten(-2) * e + drive.flatten(-2),)

    def layer_output(self, weights, layer_input, hidden):
        x, z, _, _, c = ssm_inputs(weights, layer_input)
        readout = (hidden.unflatten(-1, weights["A_log"].shape) * c[..., None, :]).sum(-1)
        return block_output(weights, layer_input, x, z, readout)

    def step_jacobian(self, weights, prev_states, x_proj):
        """diag(exp(Delta_t A)), as its diagonal (N, H * N): the transition does not depend on the state."""
        return self._discretised(weights, x_proj)[0].flatten(-2)

    @staticmethod
    def _discretised(weights, x_proj):
        size, state_size = weights["A_log"].shape
        delta, b, x = x_proj.split([size, state_size, size], dim=-1)
        return zero_order_hold(state_matrix(weights), delta, b, x)
