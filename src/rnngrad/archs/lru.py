"""Linear Recurrent Unit (Orvieto et al. 2023): layers, each a residual block around one LRU.

Layer k, input u_t (H), state x_t (N = H complex units), parameters `<name>_l{k}`:
    v_t = LayerNorm(u_t)                                   norm_weight, norm_bias (pre-norm)
    lambda = exp(-exp(nu_log) + i exp(theta_log))          nu_log, theta_log (N)
    x_t = lambda * x_{t-1} + exp(gamma_log) * (B v_t)      gamma_log (N), B = B_re + i B_im (N, H)
    y_t = Re(C x_t) + D * v_t                              C = C_re + i C_im (H, N), D (H)
    z_t = GELU(y_t)                                        (erf form)
    out_t = u_t + (out1(z_t)) * sigmoid(out2(z_t))         out1/out2 weight (H, H), bias (H): the GLU
The recurrence is linear in x: training computes it with LinearRecurrence (linear_recurrence),
whose backward pass is the adjoint recurrence in closed form. The hidden state passed
between batches is x (num_layers, batch, N), complex. Reference code: the paper's
appendix (JAX) and github.com/NicolasZucchet/minimal-LRU.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from rnngrad.archs import register
from rnngrad.archs.base import NOT_APPLICABLE, Arch, layer_tensors

MAX_PHASE = 2 * math.pi  # the paper's default: initial phases uniform in [0, 2 pi)
PARAMETERS = ("norm_weight", "norm_bias", "nu_log", "theta_log", "gamma_log", "B_re", "B_im", "C_re", "C_im",
              "D", "out1_weight", "out1_bias", "out2_weight", "out2_bias")


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


def eigenvalues(weights: dict) -> torch.Tensor:
    """lambda = exp(-exp(nu_log) + i exp(theta_log)) of one layer's weights."""
    return torch.exp(torch.complex(-torch.exp(weights["nu_log"]), torch.exp(weights["theta_log"])))


def driven_input(weights: dict, v: torch.Tensor) -> torch.Tensor:
    """gamma * (B v_t), complex."""
    scale = torch.exp(weights["gamma_log"])[:, None]
    return torch.complex(v @ (weights["B_re"] * scale).t(), v @ (weights["B_im"] * scale).t())


def block_output(weights: dict, layer_input: torch.Tensor, v: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """u_t + GLU(GELU(Re(C x_t) + D v_t)): what a layer passes up."""
    z = F.gelu(states.real @ weights["C_re"].t() - states.imag @ weights["C_im"].t() + weights["D"] * v)
    gate = torch.sigmoid(F.linear(z, weights["out2_weight"], weights["out2_bias"]))
    return layer_input + F.linear(z, weights["out1_weight"], weights["out1_bias"]) * gate


def layer_norm(weights: dict, layer_input: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(layer_input, (layer_input.shape[-1],), weights["norm_weight"], weights["norm_bias"])


class LRU(nn.Module):
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
            for name in PARAMETERS:
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(tensors[name].clone()))
        self.recurrence = linear_recurrence

    def weights(self, layer: int) -> dict[str, torch.Tensor]:
        return layer_tensors(self, PARAMETERS, layer)

    def eigenvalues(self, layer: int) -> torch.Tensor:
        """lambda of one layer (N,), complex."""
        return eigenvalues(self.weights(layer))

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor):
        layer_input, final = inputs, []
        for layer in range(self.num_layers):
            w = self.weights(layer)
            v = F.layer_norm(layer_input, (self.hidden_size,), w["norm_weight"], w["norm_bias"])
            states = self.recurrence(self.eigenvalues(layer), driven_input(w, v), hidden[layer])
            layer_input = block_output(w, layer_input, v, states)
            final.append(states[-1])
        return layer_input, torch.stack(final)


@register
class LRUArch(Arch):
    name, label, colour, family = "lru", "LRU", "#F0E442", "remedy"  # yellow
    reference = "Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De 2023, Resurrecting recurrent neural networks"
    equation = ("x_t = lambda * x_{t-1} + gamma * (B LayerNorm(u_t)), "
                "out_t = u_t + GLU(GELU(Re(C x_t) + D * v_t))")
    gamma = 1.0  # no activation on x_t = lambda x_{t-1} + ...; lambda_1 = max |lambda_i|
    diagonal, complex_state = True, True
    hyperparameters = {
        "lru_r_min": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.0, "label": "LRU r_min",
                      "description": "smaller radius of the ring the eigenvalues start on (below lru_r_max)"},
        "lru_r_max": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.99,
                      "label": "LRU r_max",
                      "description": "larger radius of the initial ring, below 1 (a stable recurrence)"},
    }
    fixed = {"init": NOT_APPLICABLE, "init_scale": NOT_APPLICABLE}  # the paper's ring init
    square_matrices, vectors = 6, 8  # B and C (Re, Im), the GLU's two; LayerNorm (2), nu, theta, gamma, D, GLU biases

    def validate(self, cell):
        if not cell["lru_r_min"] < cell["lru_r_max"]:
            return (f"config key grid.lru_r_min: {cell['lru_r_min']} is not below grid.lru_r_max "
                    f"{cell['lru_r_max']}; the LRU's eigenvalues start on the ring lru_r_min <= |lambda| <= "
                    "lru_r_max (exclude such pairs with `exclude:`)")
        return None

    def recurrent(self, input_size, hidden_size, num_layers, options, steps):
        return LRU(input_size, hidden_size, num_layers)

    def init_hidden(self, zeros):
        return torch.complex(zeros, zeros.clone())

    def initialise(self, model, generator, cell, task_run):
        """|lambda| uniform on the ring r_min <= |lambda| <= r_max (by area), phase uniform in
        [0, 2 pi), gamma = sqrt(1 - |lambda|^2)."""
        options = self.options(cell)
        r_min, r_max = float(options["lru_r_min"]), float(options["lru_r_max"])
        rnn, size = model.rnn, model.hidden_size
        for layer in range(model.num_layers):
            area = torch.rand(size, generator=generator, dtype=torch.float64)
            nu_log = torch.log(-0.5 * torch.log(area * (r_max ** 2 - r_min ** 2) + r_min ** 2))
            theta_log = torch.log(MAX_PHASE * torch.rand(size, generator=generator, dtype=torch.float64))
            modulus = torch.exp(-torch.exp(nu_log))
            getattr(rnn, f"nu_log_l{layer}").copy_(nu_log)
            getattr(rnn, f"theta_log_l{layer}").copy_(theta_log)
            getattr(rnn, f"gamma_log_l{layer}").copy_(torch.log(torch.sqrt(1 - modulus ** 2)))

    def recurrent_weights(self, rnn, num_layers):
        """diag(lambda), complex: lambda_1 = max |lambda_i|, the state-to-state Jacobian's norm."""
        return [torch.diag(rnn.eigenvalues(layer)) for layer in range(num_layers)]

    def layer_weights(self, rnn, layer):
        return rnn.weights(layer)

    def project_input(self, weights, layer_input):
        return driven_input(weights, layer_norm(weights, layer_input))

    def recurrent_input(self, weights, h_prev):
        return eigenvalues(weights) * h_prev

    def update(self, weights, x_proj, state, e, probe):
        return (e + x_proj,)

    def layer_output(self, weights, layer_input, hidden):
        return block_output(weights, layer_input, layer_norm(weights, layer_input), hidden)

    def step_jacobian(self, weights, prev_states, x_proj):
        """The state (Re x, Im x): [[diag Re lambda, -diag Im lambda], [diag Im lambda, diag Re lambda]]."""
        lam = eigenvalues(weights)
        re, im = torch.diag(lam.real), torch.diag(lam.imag)
        single = torch.cat([torch.cat([re, -im], dim=1), torch.cat([im, re], dim=1)])
        return single.expand(len(prev_states), *single.shape).clone()
