"""Recurrent language models: embedding -> recurrent layers -> linear decoder.

Parameter names and shapes are those of `torch.nn.RNN` / `nn.LSTM` / `nn.GRU`
(`rnn.weight_ih_l0`, `rnn.weight_hh_l0`, `rnn.bias_ih_l0`, `rnn.bias_hh_l0`, ...)
plus `embedding.weight`, `decoder.weight`, `decoder.bias`, so every checkpoint
loads into plain torch.nn modules (the orthogonal RNN's checkpoints too: they hold its
materialised W_hh). The IndRNN and the LRU have no torch.nn module; their parameter
names are in their classes and docs/architectures.md. Tensors are sequence-first: (time, batch).
A task with real-valued inputs (the adding problem) reads them with a linear layer
instead of the embedding, under the same name (`embedding.weight` (H, features),
`embedding.bias`); its head `decoder` is nn.Linear(H, output_size).
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import orthogonal

from rnngrad.grid import GATES
from rnngrad.io import atomic_path

# Bound on the activation's derivative: the gamma of Pascanu et al. (2013). The LRU's
# state recurrence x_t = lambda x_{t-1} + ... has no activation: gamma = 1.
ACTIVATION_DERIVATIVE_BOUND = {"rnn_tanh": 1.0, "rnn_sigmoid": 0.25, "rnn_relu": 1.0, "irnn": 1.0,
                               "orthogonal_rnn": 1.0, "indrnn": 1.0, "lru": 1.0}
INITS = ("orthogonal", "identity", "uniform", "default")
# The schema's defaults, for models built outside a grid cell.
DEFAULT_INDRNN_BOUND, DEFAULT_BPTT = 2.0, 35
INDRNN_INPUT_STD = 0.001  # Li et al.'s adding.py: W_in_to_hid = lasagne.init.Normal(0.001), a standard deviation
LRU_MAX_PHASE = 2 * math.pi  # the paper's default: initial phases uniform in [0, 2 pi)


class SigmoidRNN(nn.Module):
    """h_t = sigmoid(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), laid out like nn.RNN.

    torch has no fused sigmoid RNN; the input projection of all steps is one matmul,
    only the recurrence loops over time.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        bound = 1.0 / math.sqrt(hidden_size)
        for layer in range(num_layers):
            fan_in = input_size if layer == 0 else hidden_size
            for name, shape in (
                (f"weight_ih_l{layer}", (hidden_size, fan_in)),
                (f"weight_hh_l{layer}", (hidden_size, hidden_size)),
                (f"bias_ih_l{layer}", (hidden_size,)),
                (f"bias_hh_l{layer}", (hidden_size,)),
            ):
                self.register_parameter(name, nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor):
        layer_input, final = inputs, []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = (
                getattr(self, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            projected = torch.addmm(b_ih + b_hh, layer_input.flatten(0, 1), w_ih.t()).view(
                *layer_input.shape[:2], -1
            )
            h, outputs = hidden[layer], []
            for t in range(projected.shape[0]):
                h = torch.sigmoid(torch.addmm(projected[t], h, w_hh.t()))
                outputs.append(h)
            layer_input = torch.stack(outputs)
            final.append(h)
        return layer_input, torch.stack(final)


class IndRNN(nn.Module):
    """Independently recurrent network (Li et al. 2018): h_t = relu(W_ih x_t + b_ih + u * h_{t-1}).

    Per layer: `weight_ih_l{k}` (H, in), `bias_ih_l{k}` (H), `weight_hh_l{k}` (H): the
    recurrent vector u. As in the paper, |u| is kept below `recurrent_max` =
    bound^(1/bptt), so that no unit's |u|^bptt exceeds `bound`: every forward pass first
    projects u onto [-recurrent_max, recurrent_max] (projected gradient descent: the
    optimizer's update, then the projection before the update is used), and the
    state_dict holds the projected u, so a checkpoint is the model that ran.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, recurrent_max: float = 1.0):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.recurrent_max = float(recurrent_max)
        bound = 1.0 / math.sqrt(hidden_size)
        for layer in range(num_layers):
            fan_in = input_size if layer == 0 else hidden_size
            for name, shape in ((f"weight_ih_l{layer}", (hidden_size, fan_in)), (f"bias_ih_l{layer}", (hidden_size,)),
                                (f"weight_hh_l{layer}", (hidden_size,))):
                self.register_parameter(name, nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))
        self.register_state_dict_post_hook(_project_saved_indrnn)

    def recurrent_vector(self, layer: int) -> torch.Tensor:
        """u of one layer, projected onto |u| <= recurrent_max."""
        return getattr(self, f"weight_hh_l{layer}").clamp(-self.recurrent_max, self.recurrent_max)

    def project(self) -> None:
        with torch.no_grad():
            for layer in range(self.num_layers):
                getattr(self, f"weight_hh_l{layer}").clamp_(-self.recurrent_max, self.recurrent_max)

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor):
        self.project()
        layer_input, final = inputs, []
        for layer in range(self.num_layers):
            w_ih, b_ih, u = (getattr(self, f"{name}_l{layer}") for name in ("weight_ih", "bias_ih", "weight_hh"))
            projected = torch.addmm(b_ih, layer_input.flatten(0, 1), w_ih.t()).view(*layer_input.shape[:2], -1)
            h, outputs = hidden[layer], []
            for t in range(projected.shape[0]):
                h = torch.relu(torch.addcmul(projected[t], u, h))
                outputs.append(h)
            layer_input = torch.stack(outputs)
            final.append(h)
        return layer_input, torch.stack(final)


def _project_saved_indrnn(module: IndRNN, state_dict: dict, prefix: str, local_metadata) -> None:
    for layer in range(module.num_layers):
        key = f"{prefix}weight_hh_l{layer}"
        state_dict[key] = state_dict[key].clamp(-module.recurrent_max, module.recurrent_max)


class LinearRecurrence(torch.autograd.Function):
    """x_t = lam * x_{t-1} + inputs_t (t = 0..T-1, x_{-1} = h0), with its backward pass in closed form.

    The forward loop records no autograd graph (one fused multiply-add per step); the
    backward pass is the adjoint recurrence delta_t = g_t + conj(lam) delta_{t+1}, and
    dL/dlam = sum_t delta_t conj(x_{t-1}) is accumulated elementwise and reduced once.
    lam (N,), inputs (T, ..., N), h0 (..., N); complex or real.
    """

    @staticmethod
    def forward(ctx, lam, inputs, h0):
        out = torch.empty_like(inputs)
        state = h0
        for t in range(inputs.shape[0]):
            state = torch.addcmul(inputs[t], lam, state, out=out[t])
        ctx.save_for_backward(lam, h0, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        lam, h0, out = ctx.saved_tensors
        lam_conj, delta = lam.conj(), torch.empty_like(grad)
        carried, products = torch.zeros_like(grad[0]), torch.zeros_like(grad[0])
        for t in range(grad.shape[0] - 1, -1, -1):
            carried = torch.addcmul(grad[t], lam_conj, carried, out=delta[t])
            # dL/dlam's terms, summed step by step while they are in the cache
            products.addcmul_(carried, (out[t - 1] if t else h0).conj())
        grad_lam = products.reshape(-1, products.shape[-1]).sum(0) if ctx.needs_input_grad[0] else None
        grad_h0 = lam_conj * delta[0] if ctx.needs_input_grad[2] else None
        return grad_lam, delta, grad_h0


def linear_recurrence(lam: torch.Tensor, inputs: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """x_t = lam * x_{t-1} + inputs_t for every step, as training computes it (LinearRecurrence).

    Faster than autograd through a step loop (`python benchmarks/training_speed.py
    --remedies`). A Hillis-Steele parallel scan (log2 T passes over all steps) does
    T log T work: on the CPU it was 3x (T = 35) to 8x (T = 1000) slower than the loop.
    """
    return LinearRecurrence.apply(lam, inputs, h0)


def linear_loop(lam: torch.Tensor, inputs: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The same recurrence one step at a time through autograd: what linear_recurrence is tested and timed against."""
    x, outputs = h0, []
    for step in inputs:
        x = lam * x + step
        outputs.append(x)
    return torch.stack(outputs)


LRU_PARAMETERS = ("norm_weight", "norm_bias", "nu_log", "theta_log", "gamma_log", "B_re", "B_im", "C_re", "C_im",
                  "D", "out1_weight", "out1_bias", "out2_weight", "out2_bias")


class LRU(nn.Module):
    """Linear Recurrent Unit layers (Orvieto et al. 2023), each a residual block around one LRU.

    Layer k, input u_t (H), state x_t (N = H complex units), parameters `<name>_l{k}`:
        v_t = LayerNorm(u_t)                                   norm_weight, norm_bias (pre-norm)
        lambda = exp(-exp(nu_log) + i exp(theta_log))          nu_log, theta_log (N)
        x_t = lambda * x_{t-1} + exp(gamma_log) * (B v_t)      gamma_log (N), B = B_re + i B_im (N, H)
        y_t = Re(C x_t) + D * v_t                              C = C_re + i C_im (H, N), D (H)
        z_t = GELU(y_t)                                        (erf form)
        out_t = u_t + (out1(z_t)) * sigmoid(out2(z_t))         out1/out2 weight (H, H), bias (H): the GLU
    The recurrence is linear in x: training computes it with LinearRecurrence (linear_recurrence),
    whose backward pass is the adjoint recurrence in closed form.
    The hidden state passed between batches is x (num_layers, batch, N), complex.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1):
        super().__init__()
        if input_size != hidden_size:
            raise ValueError(f"LRU: input_size {input_size} must equal hidden_size {hidden_size} (residual blocks)")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        size = hidden_size
        for layer in range(num_layers):
            glu = (nn.Linear(size, size), nn.Linear(size, size))  # torch's default Linear init
            tensors = {
                "norm_weight": torch.ones(size), "norm_bias": torch.zeros(size),
                "nu_log": torch.zeros(size), "theta_log": torch.zeros(size), "gamma_log": torch.zeros(size),
                "B_re": torch.randn(size, size) / math.sqrt(2 * size),
                "B_im": torch.randn(size, size) / math.sqrt(2 * size),
                "C_re": torch.randn(size, size) / math.sqrt(size), "C_im": torch.randn(size, size) / math.sqrt(size),
                "D": torch.randn(size),
                "out1_weight": glu[0].weight.detach(), "out1_bias": glu[0].bias.detach(),
                "out2_weight": glu[1].weight.detach(), "out2_bias": glu[1].bias.detach(),
            }
            for name in LRU_PARAMETERS:
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(tensors[name].clone()))
        self.recurrence = linear_recurrence

    def weights(self, layer: int) -> dict[str, torch.Tensor]:
        return {name: getattr(self, f"{name}_l{layer}") for name in LRU_PARAMETERS}

    def eigenvalues(self, layer: int) -> torch.Tensor:
        """lambda of one layer (N,), complex."""
        w = self.weights(layer)
        return torch.exp(torch.complex(-torch.exp(w["nu_log"]), torch.exp(w["theta_log"])))

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor):
        layer_input, final = inputs, []
        for layer in range(self.num_layers):
            w = self.weights(layer)
            v = F.layer_norm(layer_input, (self.hidden_size,), w["norm_weight"], w["norm_bias"])
            scale = torch.exp(w["gamma_log"])[:, None]
            driven = torch.complex(v @ (w["B_re"] * scale).t(), v @ (w["B_im"] * scale).t())
            states = self.recurrence(self.eigenvalues(layer), driven, hidden[layer])
            y = states.real @ w["C_re"].t() - states.imag @ w["C_im"].t() + w["D"] * v
            z = F.gelu(y)
            layer_input = layer_input + F.linear(z, w["out1_weight"], w["out1_bias"]) * torch.sigmoid(
                F.linear(z, w["out2_weight"], w["out2_bias"]))
            final.append(states[-1])
        return layer_input, torch.stack(final)


def orthogonal_rnn(input_size: int, hidden_size: int, num_layers: int) -> nn.RNN:
    """A tanh nn.RNN whose every W_hh is exactly orthogonal during training.

    torch's orthogonal parametrization: W_hh = B expm(A - A^T), the optimizer moves A, and B
    is the initial (Haar) draw, never re-based during training: the *static* trivialisation
    of Lezcano-Casado & Martinez-Rubio 2019 (their dynamic one, expRNN's dtriv, re-bases B
    every K steps; static is its K = infinity). `rnn.weight_hh_l{k}` reads the materialised matrix.
    """
    rnn = nn.RNN(input_size, hidden_size, num_layers, nonlinearity="tanh")
    for layer in range(num_layers):
        orthogonal(rnn, f"weight_hh_l{layer}")
    return rnn


def make_recurrent(arch: str, input_size: int, hidden_size: int, num_layers: int,
                   indrnn_max: float = 1.0) -> nn.Module:
    if arch in ("rnn_tanh", "rnn_relu", "irnn"):
        nonlinearity = "tanh" if arch == "rnn_tanh" else "relu"
        return nn.RNN(input_size, hidden_size, num_layers, nonlinearity=nonlinearity)
    if arch == "rnn_sigmoid":
        return SigmoidRNN(input_size, hidden_size, num_layers)
    if arch == "lstm":
        return nn.LSTM(input_size, hidden_size, num_layers)
    if arch == "gru":
        return nn.GRU(input_size, hidden_size, num_layers)
    if arch == "orthogonal_rnn":
        return orthogonal_rnn(input_size, hidden_size, num_layers)
    if arch == "indrnn":
        return IndRNN(input_size, hidden_size, num_layers, indrnn_max)
    if arch == "lru":
        return LRU(input_size, hidden_size, num_layers)
    raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(GATES)}")


def indrnn_max(bound: float, steps: int) -> float:
    """The IndRNN's largest |u|: bound^(1/steps), so |u|^steps <= bound (Li et al. 2018)."""
    return float(bound) ** (1.0 / int(steps))


class RNNModel(nn.Module):
    """A word- or character-level language model around one recurrent stack.

    For the long-range tasks (rnngrad.tasks): `input_features` real inputs per step are read
    by nn.Linear(input_features, H) instead of nn.Embedding(vocab_size, H), and the head
    has `output_size` outputs instead of vocab_size. `indrnn_bound` and `bptt` (the steps
    backpropagation unrolls) fix the IndRNN's constraint |u| <= indrnn_bound^(1/bptt)
    (other archs ignore them).
    """

    def __init__(self, arch: str, vocab_size: int | None, hidden_size: int, num_layers: int = 1,
                 input_features: int | None = None, output_size: int | None = None,
                 indrnn_bound: float = DEFAULT_INDRNN_BOUND, bptt: int = DEFAULT_BPTT):
        super().__init__()
        self.arch, self.hidden_size, self.num_layers = arch, hidden_size, num_layers
        if input_features is None:
            self.embedding = nn.Embedding(vocab_size, hidden_size)
        else:
            self.embedding = nn.Linear(input_features, hidden_size)
        limit = indrnn_max(indrnn_bound, bptt) if arch == "indrnn" else 1.0
        self.rnn = make_recurrent(arch, hidden_size, hidden_size, num_layers, limit)
        self.decoder = nn.Linear(hidden_size, output_size or vocab_size)

    def init_hidden(self, batch_size: int):
        weight = self.decoder.weight
        zeros = weight.new_zeros(self.num_layers, batch_size, self.hidden_size)
        if self.arch == "lru":  # the complex state x of every layer
            return torch.complex(zeros, zeros.clone())
        return (zeros, zeros.clone()) if self.arch == "lstm" else zeros

    def forward(self, tokens: torch.Tensor, hidden):
        """tokens (T, B) (or real inputs (T, B, features)) -> logits (T, B, outputs), next hidden state."""
        output, hidden = self.rnn(self.embedding(tokens), hidden)
        return self.decoder(output), hidden

    def recurrent_weights(self) -> list[torch.Tensor]:
        """Each layer's recurrent matrix, whose largest singular value is Pascanu's lambda_1.

        W_hh (gate blocks stacked, as torch stores them) for the RNNs, LSTM and GRU; the
        materialised, exactly orthogonal W_hh for the orthogonal RNN (lambda_1 = 1);
        diag(u) with the projected u for the IndRNN (lambda_1 = max |u_i|); diag(lambda),
        complex, for the LRU (lambda_1 = max |lambda_i|, the state-to-state Jacobian's norm).
        """
        if self.arch == "indrnn":
            return [torch.diag(self.rnn.recurrent_vector(layer)) for layer in range(self.num_layers)]
        if self.arch == "lru":
            return [torch.diag(self.rnn.eigenvalues(layer)) for layer in range(self.num_layers)]
        return [getattr(self.rnn, f"weight_hh_l{layer}") for layer in range(self.num_layers)]

    def plain_state_dict(self) -> dict:
        """The state_dict a checkpoint keeps: the orthogonal RNN's W_hh materialised under
        nn.RNN's names (`rnn.weight_hh_l{k}`), so it loads into a plain nn.RNN; the others as is.

        (Resuming a run uses state_dict(), which keeps the parametrization's own tensors, so
        a resumed run continues bitwise as if never stopped.)
        """
        state = self.state_dict()
        if self.arch != "orthogonal_rnn":
            return state
        plain = {key: value for key, value in state.items() if ".parametrizations." not in key}
        for layer in range(self.num_layers):
            plain[f"rnn.weight_hh_l{layer}"] = getattr(self.rnn, f"weight_hh_l{layer}").detach().clone()
        # nn.RNN's own order inside `rnn.`; every other tensor (a task run's input layer has a bias) as is.
        rnn_order = [f"rnn.{name}" for name in nn.RNN(1, 1, self.num_layers).state_dict()]
        inputs = [key for key in plain if key.startswith("embedding.")]
        rest = [key for key in plain if key not in inputs and key not in rnn_order]
        return {key: plain[key] for key in [*inputs, *rnn_order, *rest]}

    def load_plain_state_dict(self, state: dict) -> None:
        """Inverse of plain_state_dict: the orthogonal RNN's materialised W_hh becomes the base
        of its parametrization (kept as is when orthogonal to float precision)."""
        if self.arch != "orthogonal_rnn":
            self.load_state_dict(state)
            return
        state = dict(state)
        matrices = {layer: state.pop(f"rnn.weight_hh_l{layer}") for layer in range(self.num_layers)}
        missing, unexpected = self.load_state_dict(state, strict=False)
        if unexpected or any(".parametrizations." not in key for key in missing):
            raise KeyError(f"orthogonal_rnn checkpoint: unexpected keys {unexpected}, missing {missing}")
        with torch.no_grad():
            for layer, matrix in matrices.items():
                setattr(self.rnn, f"weight_hh_l{layer}", matrix)


def _scaled_orthogonal(size: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    """A random orthogonal matrix times `scale`: all singular values and eigenvalue moduli equal scale."""
    q, r = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float() * scale


def recurrent_block(init: str, scale: float, size: int, generator: torch.Generator) -> torch.Tensor | None:
    """One H x H block of W_hh as `init` prescribes (None: keep torch's default)."""
    if init == "orthogonal":
        return _scaled_orthogonal(size, scale, generator)
    if init == "identity":
        return torch.eye(size) * scale
    if init == "uniform":
        return (torch.rand(size, size, generator=generator) * 2 - 1) * scale
    if init == "default":
        return None
    raise ValueError(f"unknown init {init!r}; expected one of {list(INITS)}")


def build_model(
    arch: str,
    vocab_size: int,
    hidden_size: int,
    num_layers: int = 1,
    init: str = "orthogonal",
    init_scale: float = 1.0,
    forget_bias: float | str = 1.0,
    init_range: float | None = None,
    seed: int = 0,
    indrnn_bound: float | str = DEFAULT_INDRNN_BOUND,
    lru_r_min: float | str = 0.0,
    lru_r_max: float | str = 0.99,
    bptt: int | str = DEFAULT_BPTT,
    input_features: int | None = None,
    output_size: int | None = None,
    unroll_steps: int | None = None,
    **_ignored,
) -> RNNModel:
    """Build and initialise a model; the same arguments and seed give the same weights.

    W_hh: every gate block H x H per `init` (`orthogonal` has spectral radius
    `init_scale`). Other weights: torch's defaults, or uniform in +-`init_range` when
    given (Zaremba et al. 2014). IRNN: identity W_hh and zero biases. LSTM: the forget
    gate's bias (b_ih + b_hh) starts at `forget_bias`. Orthogonal RNN: a random
    orthogonal W_hh. IndRNN and LRU: their papers' recurrent inits (_init_remedy).
    Extra keys (a whole grid cell may be passed) are ignored.
    """
    torch.manual_seed(seed)
    model = RNNModel(arch, vocab_size, hidden_size, num_layers, input_features, output_size,
                     **_arch_options(arch, indrnn_bound, unroll_steps or bptt))
    generator = torch.Generator().manual_seed(seed + 1)
    if init_range is not None:
        for param in model.parameters():
            nn.init.uniform_(param, -init_range, init_range)
    if arch in ("orthogonal_rnn", "indrnn", "lru"):
        with torch.no_grad():
            _init_remedy(model, generator, float(indrnn_bound) if arch == "indrnn" else None,
                         (float(lru_r_min), float(lru_r_max)) if arch == "lru" else None,
                         task_run=unroll_steps is not None)
        return model
    init = "identity" if arch == "irnn" else init
    with torch.no_grad():
        for layer, weight in enumerate(model.recurrent_weights()):
            for block in range(len(GATES[arch])):
                values = recurrent_block(init, init_scale, hidden_size, generator)
                if values is not None:
                    weight[block * hidden_size:(block + 1) * hidden_size] = values
            if arch == "irnn":
                getattr(model.rnn, f"bias_ih_l{layer}").zero_()
                getattr(model.rnn, f"bias_hh_l{layer}").zero_()
            if arch == "lstm":
                forget = slice(hidden_size, 2 * hidden_size)
                getattr(model.rnn, f"bias_ih_l{layer}")[forget] = float(forget_bias)
                getattr(model.rnn, f"bias_hh_l{layer}")[forget] = 0.0
    return model


def _arch_options(arch: str, indrnn_bound, steps) -> dict:
    """RNNModel's constructor options from hyperparameters ('na' where an arch ignores them);
    `steps`: what backpropagation unrolls (bptt, or a task's whole sequence)."""
    return {"indrnn_bound": float(indrnn_bound), "bptt": int(steps)} if arch == "indrnn" else {}


def _init_remedy(model: RNNModel, generator: torch.Generator, indrnn_bound: float | None,
                 lru_ring: tuple[float, float] | None, task_run: bool = False) -> None:
    """The recurrent init of the orthogonal RNN, IndRNN and LRU (under no_grad).

    Orthogonal RNN: W_hh a random orthogonal matrix (Haar), assigned through the
    parametrization. IndRNN (Li et al. 2018, their code): on a long-range task run (the
    whole sequence unrolled) input weights N(0, 0.001^2) as their adding problem's
    `--in2hidW`; on a corpus torch's default uniform +-1/sqrt(H), since that recipe starves a
    language model of its input (docs/architectures.md); biases 0, u uniform in
    [0, recurrent_max], the top layer's in [(1/bound)^(1/bptt), recurrent_max] when the
    bound exceeds 1, so that it keeps long memories. LRU (Orvieto et al. 2023): |lambda|
    uniform on the ring r_min <= |lambda| <= r_max (by area), phase uniform in
    [0, 2 pi), gamma = sqrt(1 - |lambda|^2).
    """
    rnn, size = model.rnn, model.hidden_size
    for layer in range(model.num_layers):
        if model.arch == "orthogonal_rnn":
            setattr(rnn, f"weight_hh_l{layer}", _scaled_orthogonal(size, 1.0, generator))
        elif model.arch == "indrnn":
            if task_run:
                getattr(rnn, f"weight_ih_l{layer}").normal_(0.0, INDRNN_INPUT_STD, generator=generator)
            getattr(rnn, f"bias_ih_l{layer}").zero_()
            high = rnn.recurrent_max
            low = 1.0 / high if layer == model.num_layers - 1 and indrnn_bound > 1 else 0.0  # (1/bound)^(1/bptt)
            getattr(rnn, f"weight_hh_l{layer}").copy_(low + (high - low) * torch.rand(size, generator=generator))
        else:
            r_min, r_max = lru_ring
            area = torch.rand(size, generator=generator, dtype=torch.float64)
            nu_log = torch.log(-0.5 * torch.log(area * (r_max ** 2 - r_min ** 2) + r_min ** 2))
            theta_log = torch.log(LRU_MAX_PHASE * torch.rand(size, generator=generator, dtype=torch.float64))
            modulus = torch.exp(-torch.exp(nu_log))
            getattr(rnn, f"nu_log_l{layer}").copy_(nu_log)
            getattr(rnn, f"theta_log_l{layer}").copy_(theta_log)
            getattr(rnn, f"gamma_log_l{layer}").copy_(torch.log(torch.sqrt(1 - modulus ** 2)))


def spectral_stats(weight_hh: torch.Tensor, arch: str) -> dict:
    """Largest singular value and spectral radius of W_hh (of recurrent_weights()).

    For gated archs W_hh stacks one H x H block per gate; both numbers are the
    largest over the blocks. Complex matrices (the LRU's diag(lambda)) stay complex.
    """
    dtype = torch.complex128 if weight_hh.is_complex() else torch.float64
    blocks = weight_hh.detach().to(dtype).view(len(GATES[arch]), weight_hh.shape[1], weight_hh.shape[1])
    sigma_max = torch.linalg.matrix_norm(blocks, ord=2).max().item()
    radius = torch.linalg.eigvals(blocks).abs().max().item()
    return {"sigma_max": sigma_max, "spectral_radius": radius}


def save_checkpoint(path, model: RNNModel, hparams: dict, step: int, tokens_seen: int, **extra) -> None:
    """Save a plain dict (state_dict + hyperparameters + progress), written atomically."""
    with atomic_path(path) as tmp:
        torch.save(
            {"state_dict": model.plain_state_dict(), "hparams": dict(hparams), "step": step,
             "tokens_seen": tokens_seen, **extra},
            tmp,
        )


class DamagedCheckpointError(RuntimeError):
    """A checkpoint file that exists but cannot be read (truncated or corrupt on disk)."""


def load_checkpoint(path, map_location="cpu") -> tuple[RNNModel, dict]:
    """Rebuild the model of a checkpoint; returns (model, checkpoint dict).

    A file that cannot be read raises DamagedCheckpointError saying how to recreate it.
    """
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise  # not damage: the message of the OSError says what is wrong
    # Truncation shows up as EOFError (empty), RuntimeError (zip reader) or OSError (bad seek).
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:
        raise DamagedCheckpointError(damaged_checkpoint_message(path, error)) from error
    hparams = checkpoint["hparams"]
    options = _arch_options(hparams["arch"], hparams.get("indrnn_bound"),
                            hparams.get("unroll_steps") or hparams.get("bptt"))
    model = RNNModel(hparams["arch"], hparams["vocab_size"], hparams["hidden_size"], hparams["num_layers"],
                     hparams.get("input_features"), hparams.get("output_size"), **options)
    model.load_plain_state_dict(checkpoint["state_dict"])
    return model, checkpoint


def damaged_checkpoint_message(path, error: BaseException) -> str:
    path = Path(path)
    reason = f"{type(error).__name__}: {str(error).split('. ')[0]}".rstrip(": ")
    message = f"checkpoint {path} is damaged (truncated or corrupt on disk) and cannot be read ({reason})."
    if path.parent.name != "checkpoints":
        return f"{message} Delete it and rerun the job that wrote it."
    run_dir = path.parent.parent
    return (f"{message} Retrain its run, which is deterministic and writes the same checkpoints again: "
            f"add `--forcerun {run_dir / 'summary.json'}` to your snakemake command, "
            f"or delete {run_dir} and rerun snakemake.")
