"""Load an rnngrad checkpoint into plain torch.nn modules, without importing rnngrad.

    python examples/load_checkpoint.py results/runs/arch~lstm/.../seed~0/checkpoints/step_00000143.pt

A checkpoint is a plain dict {state_dict, hparams, step, tokens_seen, ...}. Its parameter
names and shapes are those of torch.nn.RNN / nn.LSTM / nn.GRU under `rnn.`, plus
`embedding.*` and `decoder.*`. A long-range task run with real-valued inputs (the adding
problem) has nn.Linear(input_features, H) as `embedding`, and every task run's `decoder`
has `output_size` outputs. The sigmoid RNN has nn.RNN's names and shapes but no fused
torch module; the IndRNN and the LRU have no torch.nn module at all: their forward passes
are in examples/indrnn_lru_forward.py. (Inside this repository,
`rnngrad.model.load_checkpoint(path)` rebuilds any of them.)
"""

from __future__ import annotations

import sys

import torch
from torch import nn

# arch -> the torch.nn module whose state_dict a checkpoint's `rnn.*` tensors are.
TORCH_RECURRENT = {
    "rnn_tanh": lambda size, layers: nn.RNN(size, size, layers, nonlinearity="tanh"),
    "rnn_relu": lambda size, layers: nn.RNN(size, size, layers, nonlinearity="relu"),
    "irnn": lambda size, layers: nn.RNN(size, size, layers, nonlinearity="relu"),
    "orthogonal_rnn": lambda size, layers: nn.RNN(size, size, layers, nonlinearity="tanh"),  # W_hh materialised
    "lstm": lambda size, layers: nn.LSTM(size, size, layers),
    "gru": lambda size, layers: nn.GRU(size, size, layers),
}


def plain_modules(checkpoint: dict) -> nn.ModuleDict:
    """The checkpoint's model as nn.ModuleDict({embedding, rnn, decoder}), weights loaded by name."""
    h = checkpoint["hparams"]
    size, layers = h["hidden_size"], h["num_layers"]
    if h["arch"] not in TORCH_RECURRENT:
        raise ValueError(f"{h['arch']} has no torch.nn module; see examples/indrnn_lru_forward.py")
    if h.get("input_features"):  # a task with real-valued inputs (the adding problem)
        inputs = nn.Linear(h["input_features"], size)
    else:
        inputs = nn.Embedding(h["vocab_size"], size)
    net = nn.ModuleDict({"embedding": inputs, "rnn": TORCH_RECURRENT[h["arch"]](size, layers),
                         "decoder": nn.Linear(size, h.get("output_size") or h["vocab_size"])})
    net.load_state_dict(checkpoint["state_dict"])
    return net


def logits(net: nn.ModuleDict, inputs: torch.Tensor, hidden=None):
    """inputs (T, B) tokens, or (T, B, features) -> logits (T, B, outputs), final hidden state."""
    output, hidden = net["rnn"](net["embedding"](inputs), hidden)
    return net["decoder"](output), hidden


if __name__ == "__main__":
    checkpoint = torch.load(sys.argv[1], weights_only=True)
    net = plain_modules(checkpoint)
    print(f"step {checkpoint['step']}: {checkpoint['hparams']['arch']}")
    print(net)
