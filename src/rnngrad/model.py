"""Recurrent language models: embedding -> recurrent layers -> linear decoder.

Parameter names and shapes are those of `torch.nn.RNN` / `nn.LSTM` / `nn.GRU`
(`rnn.weight_ih_l0`, `rnn.weight_hh_l0`, `rnn.bias_ih_l0`, `rnn.bias_hh_l0`, ...)
plus `embedding.weight`, `decoder.weight`, `decoder.bias`, so every checkpoint
loads into plain torch.nn modules (the orthogonal RNN's checkpoints too: they hold its
materialised W_hh). The IndRNN and the LRU have no torch.nn module; their parameter
names are in their classes and docs/architectures.md. Tensors are sequence-first: (time, batch).
A task with real-valued inputs (the adding problem) reads them with a linear layer
instead of the embedding, under the same name (`embedding.weight` (H, features),
`embedding.bias`); its head `decoder` is nn.Linear(H, output_size).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from rnngrad import archs
from rnngrad.io import atomic_path

DEFAULT_BPTT = 35  # the schema's, for models built outside a grid cell


class RNNModel(nn.Module):
    """A word- or character-level language model around one recurrent stack of arch `arch` (rnngrad.archs).

    For the long-range tasks (rnngrad.tasks): `input_features` real inputs per step are read
    by nn.Linear(input_features, H) instead of nn.Embedding(vocab_size, H), and the head
    has `output_size` outputs instead of vocab_size. `steps` (what backpropagation unrolls:
    bptt, or a task's whole sequence) and `options` (the arch's own hyperparameters,
    defaults where absent) go to the arch's training module (the IndRNN's constraint
    |u| <= indrnn_bound^(1/steps)).
    """

    def __init__(self, arch: str, vocab_size: int | None, hidden_size: int, num_layers: int = 1,
                 input_features: int | None = None, output_size: int | None = None, steps: int = DEFAULT_BPTT,
                 **options):
        super().__init__()
        self.arch, self.hidden_size, self.num_layers = arch, hidden_size, num_layers
        self.spec = archs.get(arch)
        self.state_width = self.spec.state_width(hidden_size, self.spec.options(options))  # H, the S6's H x N
        if input_features is None:
            self.embedding = nn.Embedding(vocab_size, hidden_size)
        else:
            self.embedding = nn.Linear(input_features, hidden_size)
        self.rnn = self.spec.recurrent(hidden_size, hidden_size, num_layers, self.spec.options(options), steps)
        self.decoder = nn.Linear(hidden_size, output_size or vocab_size)

    def init_hidden(self, batch_size: int):
        weight = self.decoder.weight
        return self.spec.init_hidden(weight.new_zeros(self.num_layers, batch_size, self.state_width))

    def forward(self, tokens: torch.Tensor, hidden):
        """tokens (T, B) (or real inputs (T, B, features)) -> logits (T, B, outputs), next hidden state."""
        output, hidden = self.rnn(self.embedding(tokens), hidden)
        return self.decoder(output), hidden

    def recurrent_weights(self) -> list[torch.Tensor]:
        """Each layer's recurrent matrix, whose largest singular value is Pascanu's lambda_1 (the arch's
        recurrent_weights: W_hh with its gate blocks stacked, diag(u) for the IndRNN, diag(lambda) for the LRU)."""
        return self.spec.recurrent_weights(self.rnn, self.num_layers)

    def plain_state_dict(self) -> dict:
        """The state_dict a checkpoint keeps: loads into the arch's torch.nn module where it has one
        (the orthogonal RNN's W_hh materialised under nn.RNN's names)."""
        return self.spec.plain_state_dict(self)

    def load_plain_state_dict(self, state: dict) -> None:
        """Inverse of plain_state_dict."""
        self.spec.load_plain_state_dict(self, state)


def build_model(arch: str, vocab_size: int, hidden_size: int, num_layers: int = 1, init: str = "orthogonal",
                init_scale: float = 1.0, init_range: float | None = None, seed: int = 0,
                bptt: int | str = DEFAULT_BPTT, input_features: int | None = None, output_size: int | None = None,
                unroll_steps: int | None = None, **cell) -> RNNModel:
    """Build and initialise a model; the same arguments and seed give the same weights.

    Weights start as torch's defaults, or uniform in +-`init_range` when given (Zaremba et
    al. 2014); then the arch initialises its recurrence (archs.Arch.initialise: W_hh's gate
    blocks per `init`, `orthogonal` with spectral radius `init_scale`, or its paper's own
    recipe), reading its own hyperparameters from `cell` (defaults where absent). Other keys
    (a whole grid cell may be passed) are ignored. A task run (`unroll_steps`, the whole
    sequence) unrolls that many steps; a language model `bptt`.
    """
    spec = archs.get(arch)
    options = spec.options(cell)
    torch.manual_seed(seed)
    model = RNNModel(arch, vocab_size, hidden_size, num_layers, input_features, output_size,
                     steps=unroll_steps or bptt, **options)
    generator = torch.Generator().manual_seed(seed + 1)
    if init_range is not None:
        for param in model.parameters():
            nn.init.uniform_(param, -init_range, init_range)
    with torch.no_grad():
        spec.initialise(model, generator, {"init": init, "init_scale": init_scale, **options, **spec.fixed},
                        task_run=unroll_steps is not None)
    return model


def spectral_stats(weight_hh: torch.Tensor, arch: str) -> dict:
    """Largest singular value and spectral radius of W_hh (of recurrent_weights()).

    For gated archs W_hh stacks one H x H block per gate; both numbers are the
    largest over the blocks. Complex matrices (the LRU's diag(lambda)) stay complex.
    """
    dtype = torch.complex128 if weight_hh.is_complex() else torch.float64
    blocks = weight_hh.detach().to(dtype).view(len(archs.get(arch).gates), weight_hh.shape[1], weight_hh.shape[1])
    sigma_max = torch.linalg.matrix_norm(blocks, ord=2).max().item()
    radius = torch.linalg.eigvals(blocks).abs().max().item()
    return {"sigma_max": sigma_max, "spectral_radius": radius}


def save_checkpoint(path, model: RNNModel, hparams: dict, step: int, tokens_seen: int, **extra) -> None:
    """Save a plain dict (state_dict + hyperparameters + progress), written atomically."""
    with atomic_path(path) as tmp:
        torch.save(
            {"state_dict": model.plain_state_dict(), "hparams": dict(hparams), "step": step,
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
    options = archs.get(hparams["arch"]).options(hparams)
    model = RNNModel(hparams["arch"], hparams["vocab_size"], hparams["hidden_size"], hparams["num_layers"],
                     hparams.get("input_features"), hparams.get("output_size"),
                     steps=hparams.get("unroll_steps") or hparams.get("bptt") or DEFAULT_BPTT, **options)
    model.load_plain_state_dict(checkpoint["state_dict"])
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
