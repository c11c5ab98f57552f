"""What the probe reads: token windows of a corpus split, or a task run's test sequences with
their per-window dependency lags (rnngrad.probe, point 1 of its definition)."""

from __future__ import annotations

import numpy as np

from rnngrad import tasks


def make_windows(tokens: np.ndarray, n_windows: int, burn_in: int, max_lag: int, seed: int) -> np.ndarray:
    """(n_windows, burn_in + max_lag + 2) token windows at seeded random positions.

    The positions depend only on (len(tokens), n_windows, window length, seed), so every
    run probed on the same split sees the same text.
    """
    length = burn_in + max_lag + 2
    if len(tokens) < length:
        raise ValueError(f"split has {len(tokens)} tokens, fewer than one probe window ({length})")
    starts = np.random.default_rng(seed).integers(0, len(tokens) - length + 1, size=n_windows)
    return np.stack([np.asarray(tokens[s:s + length], dtype=np.int64) for s in starts])


def task_windows(hparams: dict, windows: int) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """A task run's probe input: (the first `windows` sequences of its test set, their targets,
    probe_model's `task`, their dependency lags), rebuilt from a checkpoint's hparams."""
    shape = {key: hparams[key] for key in ("copy_length", "copy_symbols") if key in hparams}
    inputs, targets = tasks.eval_set(hparams["task"], hparams["T"], "test", hparams["test_size"], hparams["data_seed"],
                                     **shape)
    inputs, targets = inputs[:windows], targets[:windows]
    return inputs, targets, {"name": hparams["task"], **shape}, tasks.dependency_lags(hparams["task"], inputs,
                                                                                      hparams["T"], **shape)
