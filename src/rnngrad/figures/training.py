"""Report category "Training": how the runs trained (training_steps, epochs), no probe involved."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.ticker import FixedLocator, MaxNLocator

from rnngrad.figures.registry import category
from rnngrad.figures.style import (
    ARCH_COLOURS,
    ARCH_LABELS,
    ARCH_LINESTYLES,
    COLUMN_WIDTH,
    NOT_IN_GRID,
    archs,
    drop_unused,
    footer,
    join_notes,
    log_ticks,
    new_figure,
    note,
    plain_log,
    slice_note,
    text_colour,
)
from rnngrad.selection import diverged_runs, numeric, reference_runs, run_index

figure = category("Training")


@figure(("training_steps", "runs"), "Gradient norms")
def training_dynamics(training_steps, runs):
    """Global gradient norm per step per run, the clip threshold, the share of clipped steps, divergences."""
    steps = numeric(training_steps, ["grad_norm"])
    index = run_index(runs, steps)
    present = archs(index)
    diverged = diverged_runs(runs)
    info = runs.set_index("run") if runs is not None and "run" in runs else pd.DataFrame()
    ncols = min(3, max(len(present), 1))
    nrows = max(1, math.ceil(len(present) / ncols))
    fig, axes = new_figure(ncols, nrows, height=2.0, sharey=True)
    for ax, arch in zip(axes.flat, present):
        ids = list(index[index["arch"] == arch].index)
        ax.set_title(ARCH_LABELS[arch], color=text_colour(arch))
        rows = steps[steps["run"].isin(ids)] if not steps.empty else steps
        if rows.empty:
            note(ax, f"no training steps {NOT_IN_GRID}")
            continue
        alpha = max(0.15, min(0.8, 3 / len(ids)))
        for run, group in rows.groupby("run"):
            stride = max(1, len(group) // 1500)
            group = group.iloc[::stride]
            ax.plot(group["step"], group["grad_norm"], color=ARCH_COLOURS[arch], linewidth=0.5, alpha=alpha,
                    rasterized=True)
            if run in diverged:
                last = group.dropna(subset=["grad_norm"]).tail(1)
                step = info.loc[run, "diverged_step"] if "diverged_step" in info else np.nan
                x = float(step) if pd.notna(step) else (float(last["step"].iloc[0]) if len(last) else np.nan)
                y = float(last["grad_norm"].iloc[0]) if len(last) else np.nan
                ax.plot(x, y, marker="X", color="black", markersize=5, linestyle="none")
        clips = sorted({v for v in index.loc[ids, "clip"] if v is not None})
        for clip in clips:
            ax.axhline(clip, color="0.2", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("gradient norm (before clipping)")
        parts = []
        clipped_runs = [r for r in ids if index.loc[r, "clip"] is not None]
        if clipped_runs and "clipped" in rows:
            share = rows[rows["run"].isin(clipped_runs)]["clipped"].astype(float).mean()  # 0/1, empty at step 0
            parts.append(f"clipped: {100 * share:.0f}% of steps")
        n_div = sum(r in diverged for r in ids)
        if n_div:
            parts.append(f"diverged: {n_div}/{len(ids)} runs (X)")
        if parts:  # under the title, where no curve or threshold line runs
            ax.set_title(ARCH_LABELS[arch] + "\n" + ", ".join(parts), color=text_colour(arch), fontsize=7)
    if present:
        log_ticks(axes.flat[0])  # shared y: one locator for every panel, set once all data are in
    drop_unused(fig, axes, len(present), f"no runs {NOT_IN_GRID}")
    footer(fig, "Every run of each arch (all grid cells and seeds); dashed: clip threshold(s); "
                "X: divergence (NaN/Inf).")
    return fig


@figure(("epochs", "runs"), "Learning curves")
def learning_curves(epochs, runs):
    """Validation perplexity per epoch per arch: mean and sd over seeds at the reference slice."""
    epochs = numeric(epochs, ["valid_ppl"])
    index = run_index(runs, epochs)
    diverged = diverged_runs(runs)
    fig, axes = new_figure(1, width=COLUMN_WIDTH, height=2.6)
    ax = axes[0, 0]
    chosen_all, drawn, n_div = {}, False, 0
    for arch in archs(index):
        ids, chosen = reference_runs(index, arch)
        chosen_all[arch] = chosen
        n_div += sum(r in diverged for r in ids)
        rows = epochs[epochs["run"].isin(ids) & ~epochs["run"].isin(diverged)] if not epochs.empty else epochs
        if rows.empty:
            continue
        stats = rows.groupby("epoch")["valid_ppl"].agg(["mean", "std", "count"]).reset_index()
        colour = ARCH_COLOURS[arch]
        ax.errorbar(stats["epoch"], stats["mean"], yerr=stats["std"].fillna(0), color=colour, marker="o",
                    linestyle=ARCH_LINESTYLES[arch], markersize=3, capsize=2, linewidth=1.2,
                    label=f"{ARCH_LABELS[arch]} (n={stats['count'].max()})")
        drawn = True
    if not drawn:
        note(ax, f"no validation perplexities {NOT_IN_GRID}")
        return fig
    plain_log(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation perplexity")
    n_epochs = int(epochs["epoch"].max())
    ax.xaxis.set_major_locator(FixedLocator(range(1, n_epochs + 1)) if n_epochs <= 15
                               else MaxNLocator(integer=True))
    ax.set_xlim(0.5, n_epochs + 0.5)
    ax.legend(loc="upper right")
    footer(fig, join_notes(slice_note(chosen_all), f"{n_div} diverged run(s) left out" if n_div else "",
                           "one epoch in this grid" if epochs["epoch"].nunique() == 1 else ""))
    return fig
