"""What a run needs to continue after a crash or SIGKILL (Progress, RNG states), saved atomically in
`<run>/.partial/` and read back only when its fingerprint is this run's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch

from rnngrad.grid import cell_keys, path_cell
from rnngrad.io import atomic_path

PARTIAL_DIR = ".partial"


STATE_FILE = "state.pt"


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def fingerprint(hparams: dict) -> str:
    """Identifies what a partial run was computing, so a stale one is never resumed. Its cell counts
    by the keys its run path names (grid.path_cell): registering an arch, or a hyperparameter at
    its default, does not orphan a partial run."""
    cell = {key: hparams[key] for key in cell_keys(hparams) if key in hparams}
    defining = {**{key: value for key, value in hparams.items() if key not in cell}, **path_cell(cell)}
    return hashlib.sha256(json.dumps(defining, sort_keys=True, default=str).encode()).hexdigest()


def save_state(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path, expected_fingerprint: str) -> dict | None:
    """The saved progress of this exact run, or None (missing, unreadable or stale)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a torn file cannot happen (atomic rename), but never trust it
        print(f"ignoring unreadable resume state {path}: {error}")
        return None
    if state.get("fingerprint") != expected_fingerprint:
        print(f"ignoring resume state {path}: it belongs to other hyperparameters")
        return None
    return state


@dataclasses.dataclass
class Progress:
    """Where a run stands: with the weights, optimizer, hidden state and RNG states, all a resume needs.

    Saved and restored as one record (`asdict`), so a field added here is resumed too.
    """

    lr: float
    epoch: int = 1  # 1-based, the epoch being trained
    batch: int = 0  # windows of this epoch done
    step: int = 0
    tokens: int = 0
    epoch_loss: float = 0.0  # sum of this epoch's step losses
    epoch_steps: int = 0
    best_valid_loss: float | None = None
    last_valid_loss: float | None = None
    last_train_loss: float | None = None
    clipped_steps: int = 0
    metrics: list[dict] = dataclasses.field(default_factory=list)  # one row per step (metrics.csv)
    epochs: list[dict] = dataclasses.field(default_factory=list)  # one row per epoch (epochs.csv)
    train_s: float = 0.0
    wall_s: float = 0.0
    status: str = "ok"
    diverged_step: int | None = None
    done: bool = False
    evaluations: list[dict] = dataclasses.field(default_factory=list)  # task runs: one row per checkpoint
