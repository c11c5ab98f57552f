"""LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000); torch.nn.LSTM.

c_t = f_t * c_{t-1} + i_t * g_t, h_t = o_t * tanh(c_t), the gates i, f, g, o stacked in
W_hh in torch's order. The probe reports h and the cell state c (the total derivative:
c_t is perturbed before h_t is computed from it).
"""

import torch
from torch import nn

from rnngrad.archs import register
from rnngrad.archs.base import Arch


@register
class LSTM(Arch):
    name, label, colour, family = "lstm", "LSTM", "#0072B2", "gated"  # blue
    reference = "Hochreiter & Schmidhuber 1997; Gers, Schmidhuber & Cummins 2000"
    equation = "torch's nn.LSTM: c_t = f_t * c_{t-1} + i_t * g_t, h_t = o_t * tanh(c_t)"
    torch_module = "nn.LSTM"
    gates = ("i", "f", "g", "o")
    states = ("h", "c")
    hyperparameters = {
        "forget_bias": {"type": "number", "default": 1.0, "reference": 1.0, "label": "forget bias",
                        "description": "LSTM forget-gate bias (b_ih + b_hh) at initialisation"},
    }
    jacobian_cost, jacobian_tensors = 1.2, 3.5

    def recurrent(self, input_size, hidden_size, num_layers, options, steps):
        return nn.LSTM(input_size, hidden_size, num_layers)

    def init_hidden(self, zeros):
        return zeros, zeros.clone()

    def initialise_layer(self, rnn, layer, cell):
        forget = slice(rnn.hidden_size, 2 * rnn.hidden_size)
        getattr(rnn, f"bias_ih_l{layer}")[forget] = float(self.options(cell)["forget_bias"])
        getattr(rnn, f"bias_hh_l{layer}")[forget] = 0.0

    def update(self, weights, x_proj, state, e, probe):
        i, f, g, o = (x_proj + (e + weights["bias_hh"])).chunk(4, dim=-1)
        c = probe("c", torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g))
        return torch.sigmoid(o) * torch.tanh(c), c

    def step_jacobian(self, weights, prev_states, x_proj):
        """d(h_t, c_t)/d(h_{t-1}, c_{t-1}) (N, 2H, 2H), from the gates' derivatives."""
        w_hh, hidden_size = weights["weight_hh"], weights["weight_hh"].shape[1]
        blocks = w_hh.view(-1, hidden_size, hidden_size)
        h, c = prev_states[:, :hidden_size], prev_states[:, hidden_size:]
        pre = x_proj + h @ w_hh.t() + weights["bias_hh"]
        rows = lambda d, block: d[:, :, None] * blocks[block]  # noqa: E731 (diag(d) W_block)
        a_i, a_f, a_g, a_o = pre.chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
        tanh_c = torch.tanh(f * c + i * g)
        dc_dh = rows(c * f * (1 - f), 1) + rows(g * i * (1 - i), 0) + rows(i * (1 - g * g), 2)
        dh_dc_new = o * (1 - tanh_c * tanh_c)
        dh_dh = rows(tanh_c * o * (1 - o), 3) + dh_dc_new[:, :, None] * dc_dh
        top = torch.cat([dh_dh, torch.diag_embed(dh_dc_new * f)], dim=2)
        bottom = torch.cat([dc_dh, torch.diag_embed(f)], dim=2)
        return torch.cat([top, bottom], dim=1)
