"""Plain-PyTorch forward passes of the IndRNN and the LRU from a checkpoint's state_dict.

    sd = torch.load("results/runs/arch~lru/.../checkpoints/step_00000143.pt", weights_only=True)["state_dict"]
    logits, h = lru_lm(sd, tokens, torch.zeros(layers, batch, hidden, dtype=torch.complex64))

Parameter names, layer k, H = hidden_size (docs/architectures.md lists them all):
IndRNN `rnn.weight_ih_l{k}` (H, H), `rnn.bias_ih_l{k}` (H), `rnn.weight_hh_l{k}` (H: the
vector u, already projected onto |u| <= indrnn_bound^(1/steps)). LRU `rnn.norm_weight_l{k}`,
`rnn.norm_bias_l{k}` (LayerNorm), `rnn.nu_log_l{k}`, `rnn.theta_log_l{k}`, `rnn.gamma_log_l{k}`,
`rnn.B_re_l{k}`, `rnn.B_im_l{k}`, `rnn.C_re_l{k}`, `rnn.C_im_l{k}`, `rnn.D_l{k}` and the GLU's
`rnn.out1_weight_l{k}`, `rnn.out1_bias_l{k}`, `rnn.out2_weight_l{k}`, `rnn.out2_bias_l{k}`.
Both also have `embedding.weight`, `decoder.weight`, `decoder.bias`. These functions give
the model's logits and final state (tests/test_remedies.py checks them against it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def indrnn_lm(sd, tokens, h):
    """IndRNN language model from a checkpoint's state_dict: tokens (T, B), h (layers, B, H) -> logits, h."""
    x, finals = sd["embedding.weight"][tokens], []
    for k in range(len(h)):
        a = x @ sd[f"rnn.weight_ih_l{k}"].T + sd[f"rnn.bias_ih_l{k}"]  # W x_t + b, every step
        u, state, out = sd[f"rnn.weight_hh_l{k}"], h[k], []
        for a_t in a:
            state = torch.relu(a_t + u * state)
            out.append(state)
        x = torch.stack(out)
        finals.append(state)
    return x @ sd["decoder.weight"].T + sd["decoder.bias"], torch.stack(finals)


def lru_lm(sd, tokens, h):
    """LRU language model from a checkpoint's state_dict: h (layers, B, H) complex -> logits, h."""
    u, finals = sd["embedding.weight"][tokens], []
    for k in range(len(h)):
        def p(name):
            return sd[f"rnn.{name}_l{k}"]

        v = F.layer_norm(u, u.shape[-1:], p("norm_weight"), p("norm_bias"))  # eps 1e-5
        lam = torch.exp(torch.complex(-torch.exp(p("nu_log")), torch.exp(p("theta_log"))))
        b = torch.complex(p("B_re"), p("B_im")) * torch.exp(p("gamma_log"))[:, None]
        c = torch.complex(p("C_re"), p("C_im"))
        state, states = h[k], []
        for v_t in v:
            state = lam * state + v_t.to(b.dtype) @ b.T
            states.append(state)
        z = F.gelu((torch.stack(states) @ c.T).real + p("D") * v)
        gate = torch.sigmoid(F.linear(z, p("out2_weight"), p("out2_bias")))
        u = u + F.linear(z, p("out1_weight"), p("out1_bias")) * gate  # residual block around the GLU
        finals.append(state)
    return u @ sd["decoder.weight"].T + sd["decoder.bias"], torch.stack(finals)
