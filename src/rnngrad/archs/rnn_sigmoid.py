"""sigmoid RNN: h_t = sigmoid(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), laid out like nn.RNN.

torch has no fused sigmoid RNN: SigmoidRNN makes the input projection of all steps one
matmul and loops over time for the recurrence only. Its checkpoints hold nn.RNN's names
(they load into an nn.RNN, whose tanh would then be the wrong nonlinearity).
"""

import torch
from torch import nn

from rnngrad.archs import register
from rnngrad.archs.base import VanillaRNN, rnn_layer_parameters, time_loop


class SigmoidRNN(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        rnn_layer_parameters(self, input_size, hidden_size, num_layers)

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor):
        layer_input, final = inputs, []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = (
                getattr(self, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            projected = torch.addmm(b_ih + b_hh, layer_input.flatten(0, 1), w_ih.t()).view(
                *layer_input.shape[:2], -1
            )
            layer_input, h = time_loop(projected, hidden[layer],
                                       lambda x_t, h: torch.sigmoid(torch.addmm(x_t, h, w_hh.t())))
            final.append(h)
        return layer_input, torch.stack(final)


@register
class SigmoidRNNArch(VanillaRNN):
    name, label, colour = "rnn_sigmoid", "sigmoid RNN", "#CC79A7"  # reddish purple
    reference = "Bengio, Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013"
    equation = "h_t = sigmoid(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)"
    activation = staticmethod(torch.sigmoid)
    gamma = 0.25  # max sigmoid' = 1/4
    torch_module = None

    def recurrent(self, input_size, hidden_size, num_layers, options, steps):
        return SigmoidRNN(input_size, hidden_size, num_layers)
