"""IRNN (Le, Jaitly & Hinton 2015): a ReLU RNN with W_hh = identity and zero biases at initialisation."""

import torch
from torch import nn

from rnngrad.archs import register
from rnngrad.archs.base import VanillaRNN


@register
class IRNN(VanillaRNN):
    name, label, colour = "irnn", "IRNN", "#000000"  # black
    reference = "Le, Jaitly & Hinton 2015, A simple way to initialize recurrent networks of rectified linear units"
    equation = "h_t = relu(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), W_hh = init_scale I and b = 0 at init"
    activation = staticmethod(torch.relu)
    gamma = 1.0
    fixed = {"init": "identity"}  # identity-initialised by definition (init_scale scales it)

    def recurrent(self, input_size, hidden_size, num_layers, options, steps):
        return nn.RNN(input_size, hidden_size, num_layers, nonlinearity="relu")

    def initialise_layer(self, rnn, layer, cell):
        getattr(rnn, f"bias_ih_l{layer}").zero_()
        getattr(rnn, f"bias_hh_l{layer}").zero_()
