"""Recurrent language models: embedding -> recurrent layers -> linear decoder.

Parameter names and shapes are those of `torch.nn.RNN` / `nn.LSTM` / `nn.GRU`
(`rnn.weight_ih_l0`, `rnn.weight_hh_l0`, `rnn.bias_ih_l0`, `rnn.bias_hh_l0`, ...)
plus `embedding.weight`, `decoder.weight`, `decoder.bias`, so every checkpoint
loads into plain torch.nn modules. Tensors are sequence-first: (time, batch).
A task with real-valued inputs (the adding problem) reads them with a linear layer
instead of the embedding, under the same name (`embedding.weight` (H, features),
`embedding.bias`); its head `decoder` is nn.Linear(H, output_size).
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import torch
from torch import nn

from rnngrad.grid import GATES
from rnngrad.io import atomic_path

# Bound on the activation's derivative: the gamma of Pascanu et al. (2013).
ACTIVATION_DERIVATIVE_BOUND = {"rnn_tanh": 1.0, "rnn_sigmoid": 0.25, "rnn_relu": 1.0, "irnn": 1.0}
INITS = ("orthogonal", "identity", "uniform", "default")


class SigmoidRNN(nn.Module):
    """h_t = sigmoid(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), laid out like nn.RNN.

    torch has no fused sigmoid RNN; the input projection of all steps is one matmul,
    only the recurrence loops over time.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        bound = 1.0 / math.sqrt(hidden_size)
        for layer in range(num_layers):
            fan_in = input_size if layer == 0 else hidden_size
            for name, shape in (
                (f"weight_ih_l{layer}", (hidden_size, fan_in)),
                (f"weight_hh_l{layer}", (hidden_size, hidden_size)),
                (f"bias_ih_l{layer}", (hidden_size,)),
                (f"bias_hh_l{layer}", (hidden_size,)),
            ):
                self.register_parameter(name, nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor):
        layer_input, final = inputs, []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = (
                getattr(self, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            projected = torch.addmm(b_ih + b_hh, layer_input.flatten(0, 1), w_ih.t()).view(
                *layer_input.shape[:2], -1
            )
            h, outputs = hidden[layer], []
            for t in range(projected.shape[0]):
                h = torch.sigmoid(torch.addmm(projected[t], h, w_hh.t()))
                outputs.append(h)
            layer_input = torch.stack(outputs)
            final.append(h)
        return layer_input, torch.stack(final)


def make_recurrent(arch: str, input_size: int, hidden_size: int, num_layers: int) -> nn.Module:
    if arch in ("rnn_tanh", "rnn_relu", "irnn"):
        nonlinearity = "tanh" if arch == "rnn_tanh" else "relu"
        return nn.RNN(input_size, hidden_size, num_layers, nonlinearity=nonlinearity)
    if arch == "rnn_sigmoid":
        return SigmoidRNN(input_size, hidden_size, num_layers)
    if arch == "lstm":
        return nn.LSTM(input_size, hidden_size, num_layers)
    if arch == "gru":
        return nn.GRU(input_size, hidden_size, num_layers)
    raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(GATES)}")


class RNNModel(nn.Module):
    """A word- or character-level language model around one recurrent stack.

    For the long-range tasks (rnngrad.tasks): `input_features` real inputs per step are read
    by nn.Linear(input_features, H) instead of nn.Embedding(vocab_size, H), and the head
    has `output_size` outputs instead of vocab_size.
    """

    def __init__(self, arch: str, vocab_size: int | None, hidden_size: int, num_layers: int = 1,
                 input_features: int | None = None, output_size: int | None = None):
        super().__init__()
        self.arch, self.hidden_size, self.num_layers = arch, hidden_size, num_layers
        if input_features is None:
            self.embedding = nn.Embedding(vocab_size, hidden_size)
        else:
            self.embedding = nn.Linear(input_features, hidden_size)
        self.rnn = make_recurrent(arch, hidden_size, hidden_size, num_layers)
        self.decoder = nn.Linear(hidden_size, output_size or vocab_size)

    def init_hidden(self, batch_size: int):
        weight = self.decoder.weight
        zeros = weight.new_zeros(self.num_layers, batch_size, self.hidden_size)
        return (zeros, zeros.clone()) if self.arch == "lstm" else zeros

    def forward(self, tokens: torch.Tensor, hidden):
        """tokens (T, B) (or real inputs (T, B, features)) -> logits (T, B, outputs), next hidden state."""
        output, hidden = self.rnn(self.embedding(tokens), hidden)
        return self.decoder(output), hidden

    def recurrent_weights(self) -> list[torch.Tensor]:
        """W_hh of each layer (gate blocks stacked, as torch stores them)."""
        return [getattr(self.rnn, f"weight_hh_l{layer}") for layer in range(self.num_layers)]


def _scaled_orthogonal(size: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    """A random orthogonal matrix times `scale`: all singular values and eigenvalue moduli equal scale."""
    q, r = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float() * scale


def recurrent_block(init: str, scale: float, size: int, generator: torch.Generator) -> torch.Tensor | None:
    """One H x H block of W_hh as `init` prescribes (None: keep torch's default)."""
    if init == "orthogonal":
        return _scaled_orthogonal(size, scale, generator)
    if init == "identity":
        return torch.eye(size) * scale
    if init == "uniform":
        return (torch.rand(size, size, generator=generator) * 2 - 1) * scale
    if init == "default":
        return None
    raise ValueError(f"unknown init {init!r}; expected one of {list(INITS)}")


def build_model(
    arch: str,
    vocab_size: int,
    hidden_size: int,
    num_layers: int = 1,
    init: str = "orthogonal",
    init_scale: float = 1.0,
    forget_bias: float | str = 1.0,
    init_range: float | None = None,
    seed: int = 0,
    input_features: int | None = None,
    output_size: int | None = None,
    **_ignored,
) -> RNNModel:
    """Build and initialise a model; the same arguments and seed give the same weights.

    W_hh: every gate block H x H per `init` (`orthogonal` has spectral radius
    `init_scale`). Other weights: torch's defaults, or uniform in +-`init_range` when
    given (Zaremba et al. 2014). IRNN: identity W_hh and zero biases. LSTM: the forget
    gate's bias (b_ih + b_hh) starts at `forget_bias`. Extra keys (a whole grid cell
    may be passed) are ignored.
    """
    torch.manual_seed(seed)
    model = RNNModel(arch, vocab_size, hidden_size, num_layers, input_features, output_size)
    generator = torch.Generator().manual_seed(seed + 1)
    if init_range is not None:
        for param in model.parameters():
            nn.init.uniform_(param, -init_range, init_range)
    init = "identity" if arch == "irnn" else init
    with torch.no_grad():
        for layer, weight in enumerate(model.recurrent_weights()):
            for block in range(len(GATES[arch])):
                values = recurrent_block(init, init_scale, hidden_size, generator)
                if values is not None:
                    weight[block * hidden_size:(block + 1) * hidden_size] = values
            if arch == "irnn":
                getattr(model.rnn, f"bias_ih_l{layer}").zero_()
                getattr(model.rnn, f"bias_hh_l{layer}").zero_()
            if arch == "lstm":
                forget = slice(hidden_size, 2 * hidden_size)
                getattr(model.rnn, f"bias_ih_l{layer}")[forget] = float(forget_bias)
                getattr(model.rnn, f"bias_hh_l{layer}")[forget] = 0.0
    return model


def spectral_stats(weight_hh: torch.Tensor, arch: str) -> dict:
    """Largest singular value and spectral radius of W_hh.

    For gated archs W_hh stacks one H x H block per gate; both numbers are the
    largest over the blocks.
    """
    blocks = weight_hh.detach().double().view(len(GATES[arch]), weight_hh.shape[1], weight_hh.shape[1])
    sigma_max = torch.linalg.matrix_norm(blocks, ord=2).max().item()
    radius = torch.linalg.eigvals(blocks).abs().max().item()
    return {"sigma_max": sigma_max, "spectral_radius": radius}


def save_checkpoint(path, model: RNNModel, hparams: dict, step: int, tokens_seen: int, **extra) -> None:
    """Save a plain dict (state_dict + hyperparameters + progress), written atomically."""
    with atomic_path(path) as tmp:
        torch.save(
            {"state_dict": model.state_dict(), "hparams": dict(hparams), "step": step,
             "tokens_seen": tokens_seen, **extra},
            tmp,
        )


class DamagedCheckpointError(RuntimeError):
    """A checkpoint file that exists but cannot be read (truncated or corrupt on disk)."""


def load_checkpoint(path, map_location="cpu") -> tuple[RNNModel, dict]:
    """Rebuild the model of a checkpoint; returns (model, checkpoint dict).

    A file that cannot be read raises DamagedCheckpointError saying how to recreate it.
    """
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise  # not damage: the message of the OSError says what is wrong
    # Truncation shows up as EOFError (empty), RuntimeError (zip reader) or OSError (bad seek).
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:
        raise DamagedCheckpointError(damaged_checkpoint_message(path, error)) from error
    hparams = checkpoint["hparams"]
    model = RNNModel(hparams["arch"], hparams["vocab_size"], hparams["hidden_size"], hparams["num_layers"],
                     hparams.get("input_features"), hparams.get("output_size"))
    model.load_state_dict(checkpoint["state_dict"])
    return model, checkpoint


def damaged_checkpoint_message(path, error: BaseException) -> str:
    path = Path(path)
    reason = f"{type(error).__name__}: {str(error).split('. ')[0]}".rstrip(": ")
    message = f"checkpoint {path} is damaged (truncated or corrupt on disk) and cannot be read ({reason})."
    if path.parent.name != "checkpoints":
        return f"{message} Delete it and rerun the job that wrote it."
    run_dir = path.parent.parent
    return (f"{message} Retrain its run, which is deterministic and writes the same checkpoints again: "
            f"add `--forcerun {run_dir / 'summary.json'}` to your snakemake command, "
            f"or delete {run_dir} and rerun snakemake.")
