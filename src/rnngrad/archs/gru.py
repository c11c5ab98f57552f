"""GRU (Cho et al. 2014); torch.nn.GRU: r, z, n stacked in W_hh in torch's order.

n_t = tanh(x_n + r_t * (W_hn h_{t-1} + b_hn)), h_t = (1 - z_t) * n_t + z_t * h_{t-1}.
"""

import torch
from torch import nn

from rnngrad.archs import register
from rnngrad.archs.base import Arch


@register
class GRU(Arch):
    name, label, colour, family = "gru", "GRU", "#009E73", "gated"  # bluish green
    reference = "Cho et al. 2014"
    equation = "torch's nn.GRU: h_t = (1 - z_t) * n_t + z_t * h_{t-1}"
    torch_module = "nn.GRU"
    gates = ("r", "z", "n")
    jacobian_cost, jacobian_tensors = 1.5, 6.5

    def recurrent(self, input_size, hidden_size, num_layers, options, steps):
        return nn.GRU(input_size, hidden_size, num_layers)

    def update(self, weights, x_proj, state, e, probe):
        x_r, x_z, x_n = x_proj.chunk(3, dim=-1)
        h_r, h_z, h_n = (e + weights["bias_hh"]).chunk(3, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return ((1 - z) * n + z * state[0],)

    def step_jacobian(self, weights, prev_states, x_proj):
        w_hh, hidden_size = weights["weight_hh"], weights["weight_hh"].shape[1]
        blocks = w_hh.view(-1, hidden_size, hidden_size)
        h = prev_states
        rows = lambda d, block: d[:, :, None] * blocks[block]  # noqa: E731 (diag(d) W_block)
        x_r, x_z, x_n = x_proj.chunk(3, dim=-1)
        h_r, h_z, h_n = (h @ w_hh.t() + weights["bias_hh"]).chunk(3, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        dr_dh, dz_dh = rows(r * (1 - r), 0), rows(z * (1 - z), 1)
        dn_dh = (1 - n * n)[:, :, None] * (rows(r, 2) + h_n[:, :, None] * dr_dh)
        return (1 - z)[:, :, None] * dn_dh + torch.diag_embed(z) + (h - n)[:, :, None] * dz_dh
