"""Report category "Long-range tasks" (task runs): can each architecture learn a dependency of length T?

Reads runs.csv (each task run's final test metrics against its task's baseline,
rnngrad.tasks), task_evaluations.csv (the test metrics at every checkpoint) and
gradient_summary.csv (g(k)/g(0) at the lag where the task's information lies).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from rnngrad.figures.registry import category
from rnngrad.figures.style import (
    ARCH_COLOURS,
    ARCH_LINESTYLES,
    COLUMN_WIDTH,
    NOT_IN_GRID,
    arch_handles,
    archs,
    footer,
    join_notes,
    log_ticks,
    new_figure,
    note,
    powers_of_ten,
    slice_note,
)
from rnngrad.selection import axis_values, diverged_runs, numeric, reference_runs, run_index, top_layer_state

figure = category("Long-range tasks", runs="task")

TASK_TITLES = {"adding": "Adding problem", "copy": "Copy memory", "selective_copy": "Selective copying"}
ADDING_SOLVED_RATIO = 0.01 / (1 / 6)  # test MSE < 0.01 over the baseline 1/6 (rnngrad.tasks)
TASK_MARKERS = {"adding": "o", "copy": "s", "selective_copy": "D"}


def _task_runs(runs: pd.DataFrame, reference: bool = True) -> pd.DataFrame:
    """runs.csv with cells parsed from the run paths and its metrics as numbers.

    With `reference`, every axis but task, T and seed is held at its reference value
    (selection.reference_runs), so each (task, T, arch) shows its seeds only; the slice is
    the attribute `chosen`.
    """
    runs = numeric(runs, ["test_ratio", "test_loss", "baseline", "first_solved_step"])
    index = run_index(runs)
    keep, chosen = list(index.index), {}
    if reference:
        keep = []
        for arch in archs(index):
            ids, chosen[arch] = reference_runs(index, arch, vary=("task", "T"))
            keep += ids
    frame = runs.drop(columns=[k for k in index.columns if k in runs]).join(index, on="run")
    frame = frame[frame["run"].isin(keep)].copy()
    frame["solved"] = frame["solved"].astype(str).str.lower().eq("true")
    frame.attrs["chosen"] = chosen
    return frame


def _ratio_ticks(ax) -> None:
    """Log y axis labels: style.log_ticks, with every 1..9 x 10^n labelled when the range is under a decade."""
    log_ticks(ax)
    low, high = ax.get_ylim()
    if low > 0 and high / low < 10:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=np.arange(1.0, 10.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _positive(values) -> np.ndarray:
    """Values for a log axis: a non-positive or missing one is NaN (not drawn)."""
    values = np.asarray(values, dtype=float)
    return np.where(values > 0, values, np.nan)


def _status_note(frame: pd.DataFrame) -> str:
    diverged = int(_is_diverged(frame).sum())
    return f"{diverged} run(s) diverged (x, drawn a decade above the other runs)" if diverged else ""


def _is_diverged(frame: pd.DataFrame) -> np.ndarray:
    return frame["run"].isin(diverged_runs(frame)).to_numpy()


def _shown_ratio(frame: pd.DataFrame) -> np.ndarray:
    """Final test loss / baseline for a log axis; a diverged run (its last finite weights' loss can
    be 1e20 and more) is drawn at a decade above every other run, so the axis keeps the others' scale."""
    ratio, diverged = _positive(frame["test_ratio"]), _is_diverged(frame)
    others = ratio[~diverged & np.isfinite(ratio)]
    top = 10 * max(others.max() if len(others) else 1.0, 1.0)
    return np.where(diverged, top, ratio)


@figure(("runs",), "Learnable dependency length")
def learnable_dependency_length(runs):
    """Per task: final test loss / baseline against T, one colour per arch, seeds as points."""
    frame = _task_runs(runs)
    tasks = [t for t in TASK_TITLES if t in set(frame["task"])]
    fig, axes = new_figure(max(len(tasks), 1), height=2.6)
    if not tasks:
        note(axes[0, 0], f"no task runs {NOT_IN_GRID}")
        return fig
    present = archs(frame)
    # side by side on log T, within +-0.1 decade of each T however many archs (0.035 decades apart at most)
    step = min(0.035, 0.2 / max(len(present) - 1, 1))
    factors = {arch: 10 ** ((i - (len(present) - 1) / 2) * step) for i, arch in enumerate(present)}
    for ax, task in zip(axes.flat, tasks):
        rows = frame[frame["task"] == task].copy()
        rows["shown"] = _shown_ratio(rows)  # per panel: a diverged run a decade above the panel's others
        values = axis_values(rows, "T")
        for arch in present:
            sel = rows[rows["arch"] == arch]
            if sel.empty:
                continue
            colour = ARCH_COLOURS[arch]
            x = sel["T"].astype(float).to_numpy() * factors[arch]
            y = sel["shown"].to_numpy()
            solved, diverged = sel["solved"].to_numpy(), _is_diverged(sel)
            ax.scatter(x[solved & ~diverged], y[solved & ~diverged], color=colour, s=18, zorder=3)
            ax.scatter(x[~solved & ~diverged], y[~solved & ~diverged], facecolors="white", edgecolors=colour, s=18,
                       zorder=3)
            ax.scatter(x[diverged], y[diverged], color=colour, marker="x", s=18, zorder=3)
            medians = sel[~diverged].groupby("T")["test_ratio"].median()
            ax.plot(medians.index.astype(float) * factors[arch], _positive(medians.to_numpy()), color=colour,
                    linewidth=1.0, alpha=0.8)
        ax.axhline(1.0, color="0.3", linestyle="--", linewidth=0.8)
        if task == "adding":
            ax.axhline(ADDING_SOLVED_RATIO, color="0.3", linestyle=":", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(np.asarray(values, dtype=float), [f"{v:g}" for v in values])
        ax.set_xlim(min(values) / 1.6, max(values) * 1.6)  # the arch offsets stay visibly around one T
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("dependency length T")
        _ratio_ticks(ax)
        ax.set_title(TASK_TITLES[task])
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("final test loss / baseline")
    extra = [Line2D([], [], color="0.3", linestyle="--", label="baseline"),
             Line2D([], [], color="0.3", linestyle=":", label="adding solved (MSE 0.01)"),
             Line2D([], [], color="0.3", marker="o", linestyle="none", label="solved"),
             Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle="none", label="not solved")]
    # outside the panels: a dozen archs' entries would cover the points of the last one
    fig.legend(handles=arch_handles(present, extra), loc="outside right upper", fontsize=6)
    footer(fig, join_notes("Each point one seed (final checkpoint), line through the median over seeds; filled: "
                           "solved (adding: test MSE < 0.01; copy, selective copying: >= 99% of the recalled "
                           "symbols right)",
                           _status_note(frame), slice_note(frame.attrs["chosen"])))
    return fig


@figure(("task_evaluations", "runs"), "Learning curves against the baseline")
def task_learning_curves(task_evaluations, runs):
    """Test loss at every checkpoint against training step, one panel per (task, T), baseline dashed."""
    frame = _task_runs(runs)
    evaluations = numeric(task_evaluations, ["test_loss", "baseline", "step"])
    evaluations = evaluations[evaluations["run"].isin(set(frame["run"]))]
    cells = [(task, T) for task in TASK_TITLES if task in set(frame["task"])
             for T in axis_values(frame[frame["task"] == task], "T")]
    ncols = max(1, len({T for _, T in cells}))
    tasks = list(dict.fromkeys(task for task, _ in cells))
    fig, axes = new_figure(ncols, max(len(tasks), 1), height=2.0)
    if not cells:
        note(axes[0, 0], f"no task evaluations {NOT_IN_GRID}")
        return fig
    present = archs(frame)
    info = frame.set_index("run")
    for row, task in enumerate(tasks):
        values = axis_values(frame[frame["task"] == task], "T")
        for col in range(ncols):
            ax = axes[row, col]
            if col >= len(values):
                ax.set_axis_off()
                continue
            T = values[col]
            ids = set(frame[(frame["task"] == task) & (frame["T"] == T)]["run"])
            rows = evaluations[evaluations["run"].isin(ids)]
            for run, group in rows.groupby("run"):
                arch = info.loc[run, "arch"]
                group = group.sort_values("step")
                ax.plot(group["step"], _positive(group["test_loss"]), color=ARCH_COLOURS[arch], linewidth=1.0,
                        linestyle=ARCH_LINESTYLES[arch], alpha=0.85)
            if not rows.empty:
                ax.axhline(rows["baseline"].iloc[0], color="0.3", linestyle="--", linewidth=0.8)
            if task == "adding":
                ax.axhline(0.01, color="0.3", linestyle=":", linewidth=0.8)
            ax.set_yscale("log")
            _ratio_ticks(ax)
            ax.set_title(f"{TASK_TITLES[task]}, T = {T:g}", fontsize=7)
            if row == len(tasks) - 1:
                ax.set_xlabel("training step")
            if col == 0:
                ax.set_ylabel("test MSE" if task == "adding" else "test cross-entropy / step")
    fig.legend(handles=arch_handles(present, [Line2D([], [], color="0.3", linestyle="--", label="baseline")]),
               loc="outside right upper", fontsize=6)
    footer(fig, join_notes("One line per seed: test loss on the fixed test set at every checkpoint; dashed: the "
                           "memoryless baseline; dotted (adding): the solved threshold, MSE 0.01",
                           slice_note(frame.attrs["chosen"])))
    return fig


@figure(("gradient_summary", "runs"), "The bridge: gradient at initialisation against learning")
def gradient_bridge(gradient_summary, runs):
    """g(k_dep)/g(0) at initialisation (top layer, h, median over test sequences, each read at its own
    dependency lag) against final loss / baseline."""
    frame = _task_runs(runs, reference=False)  # every cell of the grid
    summary = numeric(top_layer_state(gradient_summary, "h"), ["dep_norm_log10_median", "dep_n_underflow", "step"])
    fig, axes = new_figure(1, width=COLUMN_WIDTH + 0.6, height=2.8)
    ax = axes[0, 0]
    if frame.empty or summary.empty or "dependency" not in summary:
        note(ax, f"no task runs with gradient curves {NOT_IN_GRID}")
        return fig
    init = summary[summary["step"] == 0].set_index("run")
    frame = frame[frame["run"].isin(init.index)].copy()
    frame["x"] = init.loc[frame["run"], "dep_norm_log10_median"].to_numpy()
    # A median that falls on underflowed windows is only known to be below float64's range.
    below = init.loc[frame["run"], "dep_n_underflow"].to_numpy() > 0
    frame["censored"] = ~np.isfinite(frame["x"]) & below
    frame["shown"] = _shown_ratio(frame)
    finite_x = frame.loc[np.isfinite(frame["x"]), "x"]
    left = (finite_x.min() if len(finite_x) else -10.0) - 1.0
    present = archs(frame)
    for (task, arch), sel in frame.groupby(["task", "arch"]):
        colour = ARCH_COLOURS[arch]
        x = np.where(sel["censored"], left, sel["x"])
        y = sel["shown"].to_numpy()
        diverged = _is_diverged(sel)
        solved = sel["solved"].to_numpy() & ~diverged
        marker = TASK_MARKERS[task]
        # Later archs smaller and on top: runs that coincide show as concentric markers.
        rank = present.index(arch)
        size, order = 14 + 5 * (len(present) - 1 - rank), 3 + 0.01 * rank
        ax.scatter(x[solved], y[solved], color=colour, marker=marker, s=size, zorder=order)
        ax.scatter(x[~solved & ~diverged], y[~solved & ~diverged], facecolors="white", edgecolors=colour, marker=marker,
                   s=size, zorder=order)
        ax.scatter(x[diverged], y[diverged], color=colour, marker="x", s=size, zorder=order)
    if frame["censored"].any():
        ax.axvline(left, color="0.6", linewidth=0.6)
        ax.annotate("< 1e-308", (left, ax.get_ylim()[1]), fontsize=6, color="0.35", ha="left", va="top")
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=0.8)
    ax.axhline(ADDING_SOLVED_RATIO, color="0.3", linestyle=":", linewidth=0.8)
    ax.set_yscale("log")
    _ratio_ticks(ax)
    powers_of_ten(ax, "x")
    ax.set_xlabel("g(k_dep) / g(0) at initialisation")
    ax.set_ylabel("final test loss / baseline")
    tasks = [t for t in TASK_TITLES if t in set(frame["task"])]
    extra = [Line2D([], [], color="0.3", marker=TASK_MARKERS[t], linestyle="none", label=TASK_TITLES[t])
             for t in tasks]
    ax.legend(handles=arch_handles(present, extra), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=6)
    missing = int((~np.isfinite(frame["x"]) & ~frame["censored"]).sum())
    footer(fig, join_notes("Every run of the grid: x, median over the probed test sequences of g(k)/g(0), the gradient "
                           "of one output step's loss, at each sequence's own lag k_dep of the information (adding: "
                           "the first marker, from the squared error; copy: the last symbol, T + copy_length, from "
                           "the last recall step's cross-entropy; selective copying: the last symbol, wherever it "
                           "was shown), top layer, at initialisation; y, final test "
                           "loss over the baseline (dashed; dotted: adding solved); "
                           "filled: solved; runs that coincide show as concentric markers",
                           f"{missing} run(s) without a finite value left out" if missing else "",
                           _status_note(frame)))
    return fig
