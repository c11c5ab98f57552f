"""The hyperparameter grid: config lists -> one cell (dict) per training run.

A cell's run path is readable, one `key~value` directory per hyperparameter
(`arch~lstm/hidden_size~128/.../seed~0`), in the order of GRID_KEYS. A task run (the
config has a `task:` section, rnngrad.tasks) is a cell with two more keys, TASK_KEYS,
first in its path (`task~adding/T~100/arch~lstm/...`); its `bptt` and `epochs` are `na`
(full backpropagation through the whole sequence, fresh sequences every step).
"""

from __future__ import annotations

import itertools

# Order of the keys in run paths and tables.
GRID_KEYS = (
    "arch", "hidden_size", "num_layers", "init", "init_scale", "forget_bias",
    "indrnn_bound", "lru_r_min", "lru_r_max", "lr", "optimizer", "clip", "bptt", "batch_size", "epochs", "seed",
)
GATED_ARCHS = ("lstm", "gru")
VANILLA_ARCHS = ("rnn_tanh", "rnn_sigmoid", "rnn_relu", "irnn")
# Recurrences whose Jacobian cannot vanish or explode by construction (docs/architectures.md).
REMEDY_ARCHS = ("orthogonal_rnn", "indrnn", "lru")
ALL_ARCHS = VANILLA_ARCHS + GATED_ARCHS + REMEDY_ARCHS
# Archs whose top layer obeys Pascanu's bound g(k) <= g(0) (gamma lambda_1)^k (model.recurrent_weights).
BOUNDED_ARCHS = VANILLA_ARCHS + REMEDY_ARCHS
# Hyperparameters that only one arch reads: {key: arch}.
ARCH_KEYS = {"forget_bias": "lstm", "indrnn_bound": "indrnn", "lru_r_min": "lru", "lru_r_max": "lru"}
NOT_APPLICABLE = "na"
# The keys a task run's cell adds, before the GRID_KEYS: which task, its dependency length.
TASK_KEYS = ("task", "T")
# Grid keys that only language-model runs have (a task run reads whole sequences, drawn fresh).
CORPUS_ONLY_GRID_KEYS = ("bptt", "epochs")
# Gate blocks stacked in each layer's weight_hh, in torch's order (here, not in model.py,
# so that sizing jobs from the grid does not import torch).
GATES = {
    "rnn_tanh": ("h",), "rnn_sigmoid": ("h",), "rnn_relu": ("h",), "irnn": ("h",),
    "lstm": ("i", "f", "g", "o"),
    "gru": ("r", "z", "n"),
    # One recurrent block each: orthogonal W_hh, diag(u), diag(lambda) (model.py).
    "orthogonal_rnn": ("h",), "indrnn": ("h",), "lru": ("h",),
}


def normalise_cell(cell: dict) -> dict:
    """Fix hyperparameters an arch ignores, so equivalent cells coincide.

    The forget-gate bias only exists in the LSTM, the IndRNN bound and the LRU ring radii
    only in their archs (ARCH_KEYS); the IRNN is by definition identity-initialised, the
    orthogonal RNN's W_hh is orthogonal at every step (no scale), and the IndRNN and LRU
    initialise their diagonal recurrences by their papers' recipes (no W_hh init).
    """
    cell = dict(cell)
    for key, arch in ARCH_KEYS.items():
        if cell["arch"] != arch:
            cell[key] = NOT_APPLICABLE
    if cell["arch"] == "irnn":
        cell["init"] = "identity"
    if cell["arch"] == "orthogonal_rnn":
        cell["init"], cell["init_scale"] = "orthogonal", NOT_APPLICABLE
    if cell["arch"] in ("indrnn", "lru"):
        cell["init"] = cell["init_scale"] = NOT_APPLICABLE
    return cell


def _matches(cell: dict, pattern: dict) -> bool:
    return all(cell.get(key) == value for key, value in pattern.items())


def cell_keys(values: dict) -> tuple[str, ...]:
    """The keys of a cell (or a row that carries one): TASK_KEYS first for a task run."""
    return TASK_KEYS + GRID_KEYS if "task" in values else GRID_KEYS


def expand_grid(grid: dict, exclude: list[dict] = (), task: dict | None = None) -> list[dict]:
    """Cartesian product of the grid lists, normalised, deduplicated, minus exclusions.

    With `task` (the config's task section), every cell also takes each task name and
    T of `task['name']` x `task['T']`, and `bptt` and `epochs` are `na`.
    Raises ValueError when nothing is left to train.
    """
    axes = dict(grid)
    if task is not None:
        axes.update({"task": task["name"], "T": task["T"]}, **{key: [NOT_APPLICABLE] for key in CORPUS_ONLY_GRID_KEYS})
    keys = TASK_KEYS + GRID_KEYS if task is not None else GRID_KEYS
    missing = [key for key in keys if key not in axes]
    if missing:
        raise ValueError(f"grid is missing keys {missing}")
    cells, seen = [], set()
    for values in itertools.product(*(axes[key] for key in keys)):
        cell = normalise_cell(dict(zip(keys, values)))
        if any(_matches(cell, pattern) for pattern in exclude):
            continue
        path = run_path(cell)
        if path not in seen:
            seen.add(path)
            cells.append(cell)
    if not cells:
        raise ValueError(
            f"config key exclude: every cell of the grid matches one of {list(exclude)}; "
            "nothing is left to train (each entry excludes the cells equal to all its keys)"
        )
    return cells


def run_columns(values: dict) -> dict:
    """`run` and every cell key's value (cell_keys): the leading columns of every per-run table row."""
    cell = {key: values[key] for key in cell_keys(values)}
    return {"run": run_path(cell), **cell}


def format_value(value) -> str:
    """Path-safe, stable text for a hyperparameter value (1.0 -> '1', None -> 'none')."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def run_path(cell: dict) -> str:
    return "/".join(f"{key}~{format_value(cell[key])}" for key in cell_keys(cell))


def parse_value(text: str):
    """Inverse of format_value for the types a grid holds."""
    if text == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_run_path(path: str) -> dict:
    """`arch~lstm/.../seed~0` -> {'arch': 'lstm', ..., 'seed': 0} (and task, T for a task run)."""
    cell = {}
    for part in path.strip("/").split("/"):
        key, sep, text = part.partition("~")
        if sep and key in TASK_KEYS + GRID_KEYS:
            cell[key] = parse_value(text)
    missing = [key for key in cell_keys(cell) if key not in cell]
    if missing:
        raise ValueError(f"run path {path!r} lacks {missing}")
    return cell
