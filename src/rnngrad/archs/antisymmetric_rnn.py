"""Antisymmetric RNN (Chang, Chen, Haber & Chi 2019): a forward-Euler step of a stable ODE.

    h_t = h_{t-1} + eps * tanh((W - W^T - gamma I) h_{t-1} + V x_t + b)

W - W^T is antisymmetric, so its eigenvalues lie on the imaginary axis: the ODE
h' = tanh((W - W^T) h + ...) neither explodes nor decays, and the diffusion gamma I moves
the eigenvalues slightly left so that the forward Euler step is stable. The step Jacobian
I + eps diag(tanh'(a_t)) (W - W^T - gamma I) stays within eps ||W - W^T - gamma I|| of
the identity: for small eps, norm close to 1 at every lag. Per layer: `weight_ih_l{k}` (V),
`bias_ih_l{k}` (b), `weight_hh_l{k}` (the free W; the recurrence reads W - W^T - gamma I),
`bias_hh_l{k}` (a second bias, as nn.RNN's layout). The ungated cell of the paper (its
eq. 5); the paper's W is Gaussian N(0, sigma^2 / H) with sigma = the grid's `init_scale`.
No official code was released; github.com/MartinuzziFrancesco/RecurrentLayers.jl and
torchrecurrent's AntisymmetricRNN implement the same cell.

At the paper's small gamma little in the cell forgets: built for sequences that start from
zero, on a corpus (whose language model carries its state from batch to batch) ||h_t||
drifts upward and it does not train; gamma = 1 damps the state, and it trains
(docs/architectures.md#learning-rates-on-the-corpus).
"""

import math

import torch
from torch import nn

from rnngrad.archs import register
from rnngrad.archs.base import NOT_APPLICABLE, WEIGHT_NAMES, Arch, layer_tensors, rnn_layer_parameters, time_loop


def recurrent_matrix(weight: torch.Tensor, gamma) -> torch.Tensor:
    """W - W^T - gamma I: antisymmetric, minus the diffusion."""
    return weight - weight.t() - gamma * torch.eye(weight.shape[0], dtype=weight.dtype)


class AntisymmetricRNN(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int, eps: float, gamma: float):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.eps, self.gamma = float(eps), float(gamma)
        rnn_layer_parameters(self, input_size, hidden_size, num_layers)

    def recurrent_matrix(self, layer: int) -> torch.Tensor:
        return recurrent_matrix(getattr(self, f"weight_hh_l{layer}"), self.gamma)

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor):
        layer_input, final = inputs, []
        for layer in range(self.num_layers):
            w_ih, _, b_ih, b_hh = layer_tensors(self, WEIGHT_NAMES, layer).values()
            projected = torch.addmm(b_ih + b_hh, layer_input.flatten(0, 1), w_ih.t()).view(*layer_input.shape[:2], -1)
            recurrent = self.recurrent_matrix(layer).t()
            layer_input, h = time_loop(projected, hidden[layer],
                                       lambda x_t, h: h + self.eps * torch.tanh(torch.addmm(x_t, h, recurrent)))
            final.append(h)
        return layer_input, torch.stack(final)


@register
class AntisymmetricRNNArch(Arch):
    name, label, colour, linestyle, family = "antisymmetric_rnn", "antisymmetric RNN", "#332288", "--", "remedy"
    reference = ("Chang, Chen, Haber & Chi 2019, AntisymmetricRNN: a dynamical system view on recurrent neural "
                 "networks (ICLR)")
    equation = "h_t = h_{t-1} + eps * tanh((W - W^T - gamma I) h_{t-1} + V x_t + b)"
    hyperparameters = {
        "antisymmetric_rnn_eps": {"type": "number", "exclusiveMinimum": 0, "default": 0.01, "label": "step eps",
                                  "description": "eps, the Euler step size of the antisymmetric RNN (the paper's "
                                                 "0.01 on pixel MNIST)"},
        "antisymmetric_rnn_gamma": {"type": "number", "minimum": 0, "default": 0.01, "label": "diffusion gamma",
                                    "description": "gamma, the diffusion subtracted from W - W^T so that the Euler "
                                                   "step is stable (the paper's 0.01)"},
    }
    fixed = {"init": NOT_APPLICABLE}  # the paper's Gaussian W; init_scale is its sigma
    square_matrices, vectors = 2, 2
    # Pascanu's gamma * lambda_1 does not bound this step: its Jacobian is I + eps diag(tanh') M, not diag(f') W.
    gamma = None

    def recurrent(self, input_size, hidden_size, num_layers, options, steps):
        return AntisymmetricRNN(input_size, hidden_size, num_layers, options["antisymmetric_rnn_eps"],
                                options["antisymmetric_rnn_gamma"])

    def initialise(self, model, generator, cell, task_run):
        """W ~ N(0, sigma^2 / H), sigma = init_scale (the paper's initialisation); V and the biases torch's default."""
        sigma, size = float(cell.get("init_scale", 1.0)), model.hidden_size
        for layer in range(model.num_layers):
            getattr(model.rnn, f"weight_hh_l{layer}").copy_(
                torch.randn(size, size, generator=generator) * (sigma / math.sqrt(size)))

    def recurrent_weights(self, rnn, num_layers):
        """I + eps (W - W^T - gamma I): the step Jacobian where tanh' = 1, whose largest singular value
        sqrt((1 - eps gamma)^2 + eps^2 mu_max^2) (mu: the moduli of W - W^T's eigenvalues) bounds every step's."""
        return [torch.eye(rnn.hidden_size) + rnn.eps * rnn.recurrent_matrix(layer) for layer in range(num_layers)]

    def layer_weights(self, rnn, layer):
        weights = super().layer_weights(rnn, layer)
        # float64 scalars: the probe's float64 step reads the same eps and gamma as the module's Python floats
        return {**weights, "eps": torch.tensor(rnn.eps, dtype=torch.float64),
                "gamma": torch.tensor(rnn.gamma, dtype=torch.float64)}

    def recurrent_input(self, weights, h_prev):
        return h_prev @ recurrent_matrix(weights["weight_hh"], weights["gamma"]).t()

    def update(self, weights, x_proj, state, e, probe):
        return (state[0] + weights["eps"] * torch.tanh(x_proj + (e + weights["bias_hh"])),)

    def step_jacobian(self, weights, prev_states, x_proj):
        """I + eps diag(tanh'(a_t)) (W - W^T - gamma I)."""
        matrix = recurrent_matrix(weights["weight_hh"], weights["gamma"])
        tanh = torch.tanh(x_proj + prev_states @ matrix.t() + weights["bias_hh"])
        identity = torch.eye(matrix.shape[0], dtype=matrix.dtype)
        return identity + weights["eps"] * (1 - tanh * tanh)[:, :, None] * matrix
