"""Grid-wide tables from the per-run files (rules collect_runs and collect_curves).

Apart from training/ and probe/, which are inputs of the training and probe jobs:
editing how tables are gathered reruns only the collection rules and what reads their
tables, never a training or probe job. No torch here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rnngrad.grid import cell_keys, run_columns
from rnngrad.io import write_csv


def _with_run_keys(frame: pd.DataFrame, summary: dict) -> pd.DataFrame:
    keys = run_columns(summary)
    return frame.assign(**keys)[[*keys, *frame.columns]]


def collect_runs(summaries, epochs, metrics) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The grid as tidy tables: (runs, epochs, training_steps).

    `summaries`, `epochs`, `metrics`: paths of each run's summary.json, epochs.csv and
    metrics.csv, in the same run order. Every row carries `run` and the cell keys (grid.cell_keys).
    """
    runs, epoch_frames, step_frames = [], [], []
    for summary_path, epochs_path, metrics_path in zip(summaries, epochs, metrics, strict=True):
        summary = json.loads(Path(summary_path).read_text())
        runs.append({key: json.dumps(value) if isinstance(value, (list, dict)) else value
                     for key, value in summary.items()})
        epoch_frames.append(_with_run_keys(pd.read_csv(epochs_path), summary))
        step_frames.append(_with_run_keys(pd.read_csv(metrics_path), summary))
    runs = pd.DataFrame(runs)
    first = ["run", *cell_keys(runs.columns)]
    runs = runs[first + [column for column in runs.columns if column not in first]]
    return runs, pd.concat(epoch_frames, ignore_index=True), pd.concat(step_frames, ignore_index=True)


def collect_evaluations(summaries, evaluations) -> pd.DataFrame:
    """Task runs' test metrics at every checkpoint (evaluations.csv), one table with the run keys."""
    frames = [_with_run_keys(pd.read_csv(path), json.loads(Path(summary).read_text()))
              for summary, path in zip(summaries, evaluations, strict=True)]
    return pd.concat(frames, ignore_index=True)


def write_run_tables(summaries, epochs, metrics, runs_path, epochs_path, steps_path, evaluations=None,
                     evaluations_path=None) -> None:
    """The rule's one call; `evaluations` (task runs): each run's evaluations.csv -> `evaluations_path`."""
    runs, epoch_table, steps = collect_runs(summaries, epochs, metrics)
    write_csv(runs_path, runs)
    write_csv(epochs_path, epoch_table)
    write_csv(steps_path, steps)
    if evaluations is not None:
        write_csv(evaluations_path, collect_evaluations(summaries, evaluations))
    print(f"{len(runs)} runs ({(runs['status'] == 'diverged').sum()} diverged), "
          f"{len(epoch_table)} epoch rows, {len(steps)} step rows")


def collect_curves(inputs: dict, outputs: dict) -> None:
    """Concatenate per-run probe CSVs into one table per name.

    inputs: table name ('curves', 'summary', ...) -> list of per-run paths;
    outputs: the same names -> table path.
    """
    if set(inputs) != set(outputs):
        raise ValueError(f"tables {sorted(inputs)} read but {sorted(outputs)} written")
    for name, paths in inputs.items():
        frames = []
        for path in paths:
            try:
                frames.append(pd.read_csv(path, keep_default_na=False, na_values=[""]))
            except pd.errors.EmptyDataError:  # a run whose every checkpoint diverged
                continue
        write_csv(outputs[name], pd.concat(frames, ignore_index=True) if frames else pd.DataFrame())
