"""The optimizer, the learning-rate schedules and the steps at which checkpoints are saved.
"""

from __future__ import annotations

import torch


def checkpoint_steps(fractions, planned_steps: int) -> list[int]:
    """Steps at the configured fractions of training; initialisation and the end always included."""
    steps = {round(f * planned_steps) for f in fractions} | {0, planned_steps}
    return sorted(steps)


def make_optimizer(name: str, groups: list[dict], lr: float) -> torch.optim.Optimizer:
    """`groups`: parameter groups (archs.Arch.parameter_groups); one with `lr_scale` trains at
    lr * lr_scale (group_lr) and keeps the scale, so that set_lr and a resume apply it again."""
    groups = [{**group, "lr": group_lr(group, lr)} for group in groups]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; expected 'sgd' or 'adam'")


def group_lr(group: dict, lr: float) -> float:
    """The learning rate of one parameter group when the run's is `lr`: lr * its `lr_scale` (default 1)."""
    return lr * group.get("lr_scale", 1.0)


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
