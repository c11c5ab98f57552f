"""The optimizer, the learning-rate schedules and the steps at which checkpoints are saved.
"""

from __future__ import annotations

import torch


def checkpoint_steps(fractions, planned_steps: int) -> list[int]:
    """Steps at the configured fractions of training; initialisation and the end always included."""
    steps = {round(f * planned_steps) for f in fractions} | {0, planned_steps}
    return sorted(steps)


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; expected 'sgd' or 'adam'")


def next_lr(schedule: str, lr: float, epoch: int, improved: bool, decay: float, start_epoch: int) -> float:
    """Learning rate for epoch `epoch + 1`, given the one used in `epoch` (1-based).

    plateau: divide by `decay` when the validation loss did not improve;
    step (Zaremba et al. 2014): multiply by `decay` from epoch `start_epoch` on;
    constant: unchanged.
    """
    if schedule == "plateau":
        return lr if improved else lr / decay
    if schedule == "step":
        return lr * decay if epoch + 1 >= start_epoch else lr
    if schedule == "constant":
        return lr
    raise ValueError(f"unknown lr_schedule {schedule!r}")
