"""ReLU RNN: h_t = relu(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh); torch.nn.RNN."""

import torch
from torch import nn

from rnngrad.archs import register
from rnngrad.archs.base import VanillaRNN


@register
class ReluRNN(VanillaRNN):
    name, label, colour = "rnn_relu", "ReLU RNN", "#E69F00"  # orange
    reference = "Pascanu, Mikolov & Bengio 2013"
    equation = "h_t = relu(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)"
    activation = staticmethod(torch.relu)
    gamma = 1.0  # relu' <= 1

    def recurrent(self, input_size, hidden_size, num_layers, options, steps):
        return nn.RNN(input_size, hidden_size, num_layers, nonlinearity="relu")
