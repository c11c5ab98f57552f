"""The hyperparameter grid: config lists -> one cell (dict) per training run.

A cell's run path is readable, one `key~value` directory per hyperparameter
(`arch~lstm/hidden_size~128/.../seed~0`), in the order of grid_keys(). It names only the
keys that apply to the run: an arch's own hyperparameters (rnngrad.archs) only for that
arch, and only where they differ from their default, so that adding an arch, or a new
hyperparameter to one (whose default is the arch as it was), renames and retrains no
existing run; no key whose value is `na` (not applicable). A task run (the config has a
`task:` section, rnngrad.tasks) is a cell with two more keys, TASK_KEYS, first in its path
(`task~adding/T~100/arch~lstm/...`); its `bptt` and `epochs` are `na` (full backpropagation
through the whole sequence, fresh sequences every step).
"""

from __future__ import annotations

import itertools

from rnngrad import archs
from rnngrad.archs.base import NOT_APPLICABLE

# The keys every arch reads, in run-path order; each arch's own (archs.Arch.hyperparameters)
# come after init_scale (grid_keys).
SHARED_KEYS = ("arch", "hidden_size", "num_layers", "init", "init_scale", "lr", "optimizer", "clip", "bptt",
               "batch_size", "epochs", "seed")
# The keys a task run's cell adds, before the grid keys: which task, its dependency length.
TASK_KEYS = ("task", "T")
# Grid keys that only language-model runs have (a task run reads whole sequences, drawn fresh).
CORPUS_ONLY_GRID_KEYS = ("bptt", "epochs")


def arch_keys() -> tuple[str, ...]:
    """Every registered arch's own hyperparameters, in the registry's order."""
    keys = tuple(archs.hyperparameter_owners())
    shared = sorted(set(keys) & set(SHARED_KEYS + TASK_KEYS))
    if shared:
        raise archs.ArchError(f"arch(s) {[archs.hyperparameter_owners()[k] for k in shared]} declare hyperparameter(s) "
                              f"{shared}, which are grid keys of every arch")
    return keys


def grid_keys() -> tuple[str, ...]:
    """The keys of a cell, in run-path and table order."""
    split = SHARED_KEYS.index("init_scale") + 1
    return SHARED_KEYS[:split] + arch_keys() + SHARED_KEYS[split:]


def normalise_cell(cell: dict) -> dict:
    """Fix hyperparameters an arch ignores, so equivalent cells coincide.

    Another arch's own hyperparameters are `na`; the arch's own take their default where the
    cell lacks them; the shared keys the arch fixes (archs.Arch.fixed: the IRNN's identity
    init, the orthogonal RNN's unscaled W_hh, the IndRNN's and LRU's own recurrent inits)
    take its values.
    """
    cell = dict(cell)
    arch = archs.get(cell["arch"])
    for key, owner in archs.hyperparameter_owners().items():
        if owner != arch.name:
            cell[key] = NOT_APPLICABLE
    cell.update(arch.options(cell))
    cell.update(arch.fixed)
    return cell


def _matches(cell: dict, pattern: dict) -> bool:
    return all(cell.get(key) == value for key, value in pattern.items())


def cell_keys(values: dict) -> tuple[str, ...]:
    """The keys of a cell (or a row that carries one): TASK_KEYS first for a task run."""
    return TASK_KEYS + grid_keys() if "task" in values else grid_keys()


def expand_grid(grid: dict, exclude: list[dict] = (), task: dict | None = None,
                arch_grid: dict | None = None) -> list[dict]:
    """Cartesian product of the grid lists, normalised, deduplicated, minus exclusions.

    With `task` (the config's task section), every cell also takes each task name and
    T of `task['name']` x `task['T']`, and `bptt` and `epochs` are `na`. `arch_grid`
    ({arch: {key: values}}, the config's) replaces the grid's lists of those keys for that
    arch only (the LRU's own learning rates), in the same cell order as the grid's product.
    Raises ValueError when nothing is left to train.
    """
    arch_grid = arch_grid or {}
    axes = {key: [spec["default"]] for arch in archs.all_archs() for key, spec in arch.hyperparameters.items()}
    axes.update(grid)
    if task is not None:
        axes.update({"task": task["name"], "T": task["T"]}, **{key: [NOT_APPLICABLE] for key in CORPUS_ONLY_GRID_KEYS})
    keys = TASK_KEYS + grid_keys() if task is not None else grid_keys()
    missing = [key for key in keys if key not in axes]
    if missing:
        raise ValueError(f"grid is missing keys {missing}")
    # Each axis holds every value any arch takes; a cell keeps only its own arch's values.
    union = {key: list(dict.fromkeys(axes[key] + [value for own in arch_grid.values() for value in own.get(key, [])]))
             for key in keys}
    cells, seen = [], set()
    for values in itertools.product(*(union[key] for key in keys)):
        raw = dict(zip(keys, values))
        own = {**axes, **arch_grid.get(raw["arch"], {})}
        if any(raw[key] not in own[key] for key in keys):
            continue
        cell = normalise_cell(raw)
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
    """`run` and every cell key's value (cell_keys): the leading columns of every per-run table row.
    An arch's hyperparameter that `values` lacks (added after the run) takes its default."""
    cell = normalise_cell({key: values[key] for key in cell_keys(values) if key in values})
    return {"run": run_path(cell), **{key: cell[key] for key in cell_keys(cell)}}


def format_value(value) -> str:
    """Path-safe, stable text for a hyperparameter value (1.0 -> '1', None -> 'none')."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def path_keys(cell: dict) -> list[str]:
    """The keys a cell's run path names: not `na`, and an arch's own only where not at its default."""
    own = archs.get(cell["arch"]).hyperparameters
    return [key for key in cell_keys(cell) if cell.get(key, NOT_APPLICABLE) != NOT_APPLICABLE
            and not (key in own and cell[key] == own[key]["default"])]


def run_path(cell: dict) -> str:
    return "/".join(f"{key}~{format_value(cell[key])}" for key in path_keys(cell))


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
    """`arch~lstm/.../seed~0` -> the cell {'arch': 'lstm', ..., 'seed': 0} (and task, T for a task run):
    the keys the path leaves out are the arch's defaults and `na` (path_keys)."""
    keys, parsed = TASK_KEYS + grid_keys(), {}
    for part in path.strip("/").split("/"):
        key, sep, text = part.partition("~")
        if sep and key in keys:
            parsed[key] = parse_value(text)
    try:
        return complete_cell(parsed)
    except ValueError as error:
        raise ValueError(f"run path {path!r} {error}") from None


def path_cell(cell: dict) -> dict:
    """The keys of a cell that its run path names (path_keys), with their values: what defines the
    run. A rule's params hold this, so that a new arch or a new hyperparameter of one (keys that
    are `na` or at their default in every existing cell) changes no existing job's params."""
    return {key: cell[key] for key in path_keys(cell)}


def complete_cell(values: dict) -> dict:
    """Inverse of path_cell: the whole cell, with the keys a run path leaves out (an arch's own at
    their default, `na` elsewhere); ValueError naming a missing key that has no such value."""
    if "arch" not in values:
        raise ValueError("lacks ['arch']")
    arch = archs.get(values["arch"])
    optional = set(arch_keys()) | set(arch.fixed) | (set(CORPUS_ONLY_GRID_KEYS) if "task" in values else set())
    missing = [key for key in cell_keys(values) if key not in values and key not in optional]
    if missing:
        raise ValueError(f"lacks {missing}")
    cell = normalise_cell({key: values.get(key, NOT_APPLICABLE) for key in cell_keys(values)
                           if key in values or key not in arch.hyperparameters})
    return {key: cell[key] for key in cell_keys(cell)}
