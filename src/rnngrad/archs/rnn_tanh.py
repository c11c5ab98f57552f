"""tanh RNN (Elman 1990): h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh); torch.nn.RNN."""

from torch import nn

from rnngrad.archs import register
from rnngrad.archs.base import VanillaRNN


@register
class TanhRNN(VanillaRNN):
    name, label, colour = "rnn_tanh", "tanh RNN", "#D55E00"  # vermillion
    reference = "Elman 1990; Pascanu, Mikolov & Bengio 2013 (the bound)"
    equation = "h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)"
    gamma = 1.0  # max tanh' = 1

    def recurrent(self, input_size, hidden_size, num_layers, options, steps):
        return nn.RNN(input_size, hidden_size, num_layers, nonlinearity="tanh")
