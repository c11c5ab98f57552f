"""IRNN (Le, Jaitly & Hinton 2015): a ReLU RNN with W_hh = identity and zero biases at initialisation."""

from rnngrad.archs import register
from rnngrad.archs.rnn_relu import ReluRNN


@register
class IRNN(ReluRNN):
    name, label, colour = "irnn", "IRNN", "#000000"  # black
    reference = "Le, Jaitly & Hinton 2015, A simple way to initialize recurrent networks of rectified linear units"
    equation = "h_t = relu(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), W_hh = init_scale I and b = 0 at init"
    fixed = {"init": "identity"}  # identity-initialised by definition (init_scale scales it)

    def initialise_layer(self, rnn, layer, cell):
        getattr(rnn, f"bias_ih_l{layer}").zero_()
        getattr(rnn, f"bias_hh_l{layer}").zero_()
