"""Which rows of the tidy tables make a grid cell, a stage, a reference slice; how a cell's values pool.

Shared by the figures (`rnngrad.figures`) and the paper tables (`rnngrad.tables`), so both
select the same runs and summarise them the same way:
- grid values are parsed from the run path (`run_index`, `with_cells`), so None (no
  clipping) and 'na' (no forget gate) survive the CSV round trip;
- a cell is a combination of the axes that vary (`varying_axes`, `cell_axes`), grouped
  on the values' text (`group_cells`) and ordered archs first, numbers numerically
  (`value_sort_key`, `axis_values`, `sorted_cells`);
- "init" is checkpoint step 0, "trained" the last checkpoint of a run that finished
  (`at_stage`); curves and fits come from each run's top recurrent layer (`top_layer`);
- a figure comparing archs holds every other axis at one reference value (`reference_runs`);
- a gradient horizon censored at the probe's max lag K is only known to be >= K: it
  is never averaged with finite horizons (`censored_median`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator

import numpy as np
import pandas as pd

from rnngrad import archs
from rnngrad.grid import TASK_KEYS, format_value, grid_keys, parse_run_path

STAGES = ("init", "trained")
# Reference value per axis when a figure compares archs only (closest value wins).
PREFERRED = {"init_scale": 1.0, "init": "orthogonal", "optimizer": "sgd"}


# ---------------------------------------------------------------------------- grid cells


def run_index(*frames: pd.DataFrame | None) -> pd.DataFrame:
    """One row per run of any of `frames`, its grid values parsed from the run path."""
    runs = sorted({run for frame in frames if frame is not None and "run" in frame for run in frame["run"]})
    # object dtype keeps None (no clipping) and 'na' (no forget gate) as they are
    index = pd.DataFrame([parse_run_path(run) for run in runs], index=pd.Index(runs, name="run"), dtype=object)
    return index if len(index) else pd.DataFrame(columns=list(grid_keys()), index=pd.Index([], name="run"))


def keys_of(index: pd.DataFrame) -> list[str]:
    """The cell keys an index has: task and T (task runs), then the grid keys."""
    return [k for k in TASK_KEYS + grid_keys() if k in index.columns]


def with_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its grid columns replaced by the values parsed from its run paths."""
    return frame.drop(columns=[k for k in TASK_KEYS + grid_keys() if k in frame]).join(run_index(frame), on="run")


def varying_axes(index: pd.DataFrame) -> list[str]:
    """Grid axes (not seed) with several values for some arch; 'arch' first when several archs.

    'na' (the forget bias of a non-LSTM) beside one LSTM value is not an axis.
    """
    if index.empty:
        return []
    keys = ["arch"] if index["arch"].nunique() > 1 else []
    present = keys_of(index)
    per_arch = index.assign(**{k: index[k].map(format_value) for k in present}).groupby("arch")
    return keys + [k for k in present if k not in ("arch", "seed") and per_arch[k].nunique().max() > 1]


def cell_axes(index: pd.DataFrame) -> list[str]:
    """The columns that tell a table's cells apart: arch, then every varying axis."""
    return ["arch"] + [k for k in varying_axes(index) if k != "arch"]


def group_cells(frame: pd.DataFrame, keys: list[str]) -> Iterator[tuple[dict, pd.DataFrame]]:
    """(values of `keys`, rows) per grid cell, in order of appearance; grouped on the values' text
    (groupby would drop None and NaN)."""
    if frame.empty:
        return
    labels = [frame[k].map(format_value).rename(f"_{k}") for k in keys]
    for _, group in frame.groupby(labels, sort=False):
        first = group.iloc[0]
        yield {k: first[k] for k in keys}, group


def value_sort_key(value):
    """Numbers (numpy's too: a DataFrame row holds np.int64) numerically before text (None, 'na',
    'orthogonal'), text alphabetically."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return (0, float(value), "")
    return (1, 0.0, format_value(value))


def axis_values(index: pd.DataFrame, key: str) -> list:
    """The distinct values of one axis in display order (archs in the registry's order)."""
    values = list(dict.fromkeys(index[key]))
    if key == "arch":
        return [a for a in archs.names() if a in values]
    return sorted(values, key=value_sort_key)


def sorted_cells(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows in arch order (vanilla first), then by each grid axis, numbers numerically."""
    if table.empty:
        return table
    order = {arch: i for i, arch in enumerate(archs.names())}

    def row_key(i):
        row = table.iloc[i]
        return tuple(order.get(row[k], len(order)) if k == "arch" else value_sort_key(row[k]) for k in keys)

    return table.iloc[sorted(range(len(table)), key=row_key)].reset_index(drop=True)


# ---------------------------------------------------------------------------- rows


def numeric(frame: pd.DataFrame, columns) -> pd.DataFrame:
    """`frame` with `columns` (those present) as floats, +-inf as NaN (missing, never drawn)."""
    frame = frame.copy()
    for column in columns:
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").replace([np.inf, -np.inf], np.nan)
    return frame


def diverged_runs(runs: pd.DataFrame | None) -> set[str]:
    """Runs whose status in runs.csv is 'diverged'."""
    if runs is None or "status" not in runs:
        return set()
    return set(runs.loc[runs["status"] == "diverged", "run"])


def top_layer(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of each run's top recurrent layer (where Pascanu's bound holds)."""
    if frame.empty or "layer" not in frame:
        return frame
    top = frame.groupby("run")["layer"].transform("max")
    return frame[frame["layer"] == top]


def top_layer_state(frame: pd.DataFrame, state: str = "h") -> pd.DataFrame:
    """The rows of one state (h, c, x, jacobian) of each run's top layer."""
    if frame.empty:
        return frame
    return top_layer(frame[frame["state"] == state])


def at_stage(frame: pd.DataFrame, stage: str, diverged: set[str]) -> pd.DataFrame:
    """Rows at initialisation (step 0) or at the last checkpoint (step > 0) of runs that finished."""
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r} is not one of {STAGES}")
    if frame.empty:
        return frame
    if stage == "init":
        return frame[frame["step"] == 0]
    last = frame.groupby("run")["step"].transform("max")
    return frame[(frame["step"] == last) & (frame["step"] > 0) & ~frame["run"].isin(diverged)]


# ---------------------------------------------------------------------------- reference slice


def _distance(value, preferred) -> float:
    if isinstance(preferred, str):
        return 0.0 if value == preferred else 1.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.inf
    if isinstance(preferred, float) and preferred > 0 and number > 0:
        return abs(math.log(number / preferred))
    return abs(number - preferred)


def _choose(values: pd.Series, key: str):
    """The reference value of one axis among `values` (all runs still in the slice)."""
    counts = values.map(format_value).value_counts()
    distinct = list(dict.fromkeys(values))
    if len(distinct) == 1:
        return distinct[0]
    preferred = {**PREFERRED, **archs.reference_values()}
    if key in preferred:
        return min(distinct, key=lambda v: (_distance(v, preferred[key]), format_value(v)))
    if key == "clip":  # prefer clipping on, the usual setting
        clipped = [v for v in distinct if v is not None]
        distinct = clipped or distinct
    if key in ("hidden_size", "epochs"):
        return max(distinct)
    return max(distinct, key=lambda v: (counts[format_value(v)], -distinct.index(v)))


def reference_runs(index: pd.DataFrame, arch: str, vary: tuple[str, ...] = ()) -> tuple[list[str], dict]:
    """Runs of `arch` at the reference value of every axis except seed and `vary`.

    Returns the run ids and the chosen values of the axes that had a choice.
    """
    chosen = {}
    sub = index[index["arch"] == arch]
    for key in keys_of(index):
        if key in ("arch", "seed") or key in vary or sub.empty:
            continue
        if sub[key].map(format_value).nunique() > 1:
            value = _choose(sub[key], key)
            chosen[key] = value
            sub = sub[sub[key].map(format_value) == format_value(value)]
    return list(sub.index), chosen


# ---------------------------------------------------------------------------- censored horizons


def is_censored(column: pd.Series) -> pd.Series:
    """A `horizon_censored` column as booleans (bools in memory, 'True'/'False' text in a CSV)."""
    return column.astype(str).str.lower().eq("true")


def censored_median(values, censored) -> tuple[float, bool]:
    """Median of horizons of which the censored ones are only known to be >= the value given.

    Returns (median, lower_bound). Every censored value enters at its lower bound, so the
    result never exceeds the true median; it is exact (lower_bound False) when no censored
    value sorts at or below the middle, else only a lower bound (shown as '≥'). NaN values
    (no measurement) are left out; none left: (NaN, False).
    """
    values = np.asarray(values, dtype=float)
    censored = np.asarray(censored, dtype=bool)
    if values.shape != censored.shape:
        raise ValueError(f"censored_median: {values.shape[0]} values but {censored.shape[0]} censoring flags")
    keep = ~np.isnan(values)
    values, censored = values[keep], censored[keep]
    if not values.size:
        return math.nan, False
    order = np.lexsort((censored, values))  # by value; on a tie the exact value first
    values, censored = values[order], censored[order]
    n = values.size
    middle = [(n - 1) // 2, n // 2]
    # Raising a censored value at or below the upper middle can move the median; above it cannot.
    return float(values[middle].mean()), bool(censored[: n // 2 + 1].any())
