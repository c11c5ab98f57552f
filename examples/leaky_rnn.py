"""A recurrence of your own, from your own file: the leaky tanh RNN.

    h_t = (1 - a) h_{t-1} + a tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   0 < a <= 1

(a = 1 is the tanh RNN; a small a keeps a running average, whose step Jacobian
(1 - a) I + a diag(tanh') W_hh stays near the identity.) Name this file in a config,

    arch_files: [examples/leaky_rnn.py]
    grid:
      arch: [rnn_tanh, leaky_rnn]
      leaky_rnn_rate: [0.5]

and the pipeline trains, probes, draws and reports it beside the built-in archs
(config/test_user_arch.yaml does; docs/adding-an-architecture.md explains each part).
It declares no closed-form Jacobian, so the probe takes torch.func's, and no colour, so it
gets the palette's next free one.
"""

import torch
from torch import nn

from rnngrad.archs import register
from rnngrad.archs.base import Arch, uniform_parameters


class LeakyRNN(nn.Module):
    """The training module: nn.RNN's parameter names, one loop over time per layer."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, rate: float):
        super().__init__()
        self.hidden_size, self.num_layers, self.rate = hidden_size, num_layers, float(rate)
        for layer in range(num_layers):
            fan_in = input_size if layer == 0 else hidden_size
            uniform_parameters(self, {f"weight_ih_l{layer}": (hidden_size, fan_in),
                                      f"weight_hh_l{layer}": (hidden_size, hidden_size),
                                      f"bias_ih_l{layer}": (hidden_size,), f"bias_hh_l{layer}": (hidden_size,)},
                               hidden_size)

    def forward(self, inputs, hidden):
        layer_input, final = inputs, []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = (getattr(self, f"{name}_l{layer}")
                                      for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            projected = layer_input @ w_ih.t() + (b_ih + b_hh)
            h, outputs = hidden[layer], []
            for step in projected:
                h = (1 - self.rate) * h + self.rate * torch.tanh(step + h @ w_hh.t())
                outputs.append(h)
            layer_input = torch.stack(outputs)
            final.append(h)
        return layer_input, torch.stack(final)


@register
class LeakyTanhRNN(Arch):
    name, label = "leaky_rnn", "leaky tanh RNN"
    reference = "Jaeger, Lukosevicius, Popovici & Siewert 2007 (leaky-integrator units)"
    hyperparameters = {
        "leaky_rnn_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.5,
                           "label": "leak rate", "description": "a, the weight of the new tanh update in each step"},
    }

    def recurrent(self, input_size, hidden_size, num_layers, options, steps):
        return LeakyRNN(input_size, hidden_size, num_layers, options["leaky_rnn_rate"])

    def layer_weights(self, rnn, layer):
        # the rate rides along with the weights, so the step function reads it
        return {**super().layer_weights(rnn, layer), "rate": torch.tensor(rnn.rate)}

    def update(self, weights, x_proj, state, e, probe):
        rate = weights["rate"]
        return ((1 - rate) * state[0] + rate * torch.tanh(x_proj + (e + weights["bias_hh"])),)
