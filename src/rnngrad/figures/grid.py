"""Report category "Grid": the whole grid at a glance, one summary number per cell (gradient_summary).

Each cell pools the finished runs that share its two axis values (seeds and every axis
not shown): the fitted slope as a mean (slopes are never censored), the gradient
horizon as a median in which a horizon censored at the probe's max lag counts as
"at least K" (`rnngrad.selection.censored_median`), printed with '≥' when the median
is only a lower bound.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import colors as mcolors

from rnngrad.figures.registry import category
from rnngrad.figures.style import (
    ARCH_LABELS,
    KEY_LABELS,
    NOT_IN_GRID,
    REGIME_CMAP,
    footer,
    new_figure,
    note,
    text_colour,
)
from rnngrad.grid import format_value
from rnngrad.selection import (
    at_stage,
    axis_values,
    censored_median,
    diverged_runs,
    is_censored,
    numeric,
    run_index,
    top_layer_state,
    varying_axes,
)

figure = category("Grid")


def heatmap_axes(index: pd.DataFrame) -> list[tuple[str, str | None]]:
    """Pairs of varying grid axes (arch against each other axis when arch varies), at most 3."""
    varying = varying_axes(index)
    if "arch" in varying:
        return [("arch", k) for k in varying if k != "arch"][:3] or [("arch", None)]
    pairs = [(a, b) for i, a in enumerate(varying) for b in varying[i + 1:]]
    return pairs[:3] or ([(varying[0], None)] if varying else [])


def cell_value(values: pd.DataFrame, metric: str) -> tuple[float, str]:
    """The number a heatmap cell shows for its finished runs' rows, and its text."""
    if metric == "slope":
        slope = values["slope"].dropna()
        return (slope.mean(), f"{slope.mean():.2f}") if len(slope) else (np.nan, "")
    horizon, lower_bound = censored_median(values["horizon"], is_censored(values["horizon_censored"]))
    if not np.isfinite(horizon):
        return np.nan, ""
    return horizon, ("≥" if lower_bound else "") + f"{horizon:g}"


def _heatmap(fig, ax, index, trained, diverged, a, b, metric, label):
    """One heatmap of `metric` over axes a (rows) x b (columns), annotated, diverged cells hatched."""
    rows_v = axis_values(index, a)[::-1] if a == "arch" else axis_values(index, a)  # imshow rows run top-down
    cols_v = axis_values(index, b) if b else [None]
    keys_a = index[a].map(format_value)
    keys_b = index[b].map(format_value) if b else None
    grid = np.full((len(rows_v), len(cols_v)), np.nan)
    text = [["" for _ in cols_v] for _ in rows_v]
    hatch = np.zeros(grid.shape, dtype=bool)
    for i, rv in enumerate(rows_v):
        for j, cv in enumerate(cols_v):
            mask = keys_a == format_value(rv)
            if b:
                mask &= keys_b == format_value(cv)
            members = index[mask].index
            if not len(members):
                text[i][j] = "–"
                continue
            n_div = sum(r in diverged for r in members)
            values = trained.loc[trained.index.intersection(members)]
            if len(values):
                grid[i, j], text[i][j] = cell_value(values, metric)
            if n_div:
                hatch[i, j] = True
                if not len(values):
                    text[i][j] = "div."
    finite = grid[np.isfinite(grid)]
    if metric == "slope" and finite.size and finite.min() < 0 < finite.max():
        norm = mcolors.TwoSlopeNorm(vmin=finite.min(), vcenter=0, vmax=finite.max())
        cmap = REGIME_CMAP
    else:
        norm = mcolors.Normalize(*((finite.min(), finite.max()) if finite.size else (0, 1)))
        cmap = plt.get_cmap("viridis" if metric == "horizon" else "cividis")
    cmap = cmap.with_extremes(bad="0.88")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
    for i in range(len(rows_v)):
        for j in range(len(cols_v)):
            if hatch[i, j]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="////",
                                           edgecolor="0.15", linewidth=0))
            value = grid[i, j]
            dark = np.isfinite(value) and sum(image.cmap(image.norm(value))[:3]) < 1.5
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=6, color="white" if dark else "black")
    ax.set_yticks(range(len(rows_v)))
    ax.set_yticklabels([ARCH_LABELS.get(v, format_value(v)) if a == "arch" else format_value(v) for v in rows_v])
    if a == "arch":
        for tick, v in zip(ax.get_yticklabels(), rows_v):
            tick.set_color(text_colour(v))
    ax.set_xticks(range(len(cols_v)))
    ax.set_xticklabels([format_value(v) for v in cols_v] if b else [""])
    ax.set_xlabel(KEY_LABELS[b] if b else "")
    ax.set_ylabel(KEY_LABELS[a])
    ax.grid(False)
    ax.spines[:].set_visible(False)
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.set_label(label, fontsize=6)
    bar.ax.tick_params(labelsize=6)


@figure(("gradient_summary", "runs"), "Heatmaps")
def grid_heatmaps(gradient_summary, runs):
    """Mean fitted slope and median gradient horizon after training over pairs of grid axes; diverged hatched."""
    summary = numeric(top_layer_state(gradient_summary, "h"), ["slope", "horizon"])
    diverged = diverged_runs(runs)
    index = run_index(runs, summary)
    pairs = heatmap_axes(index)
    n_archs = index["arch"].nunique() if len(index) else 1
    fig, axes = new_figure(2, max(len(pairs), 1), height=0.5 + 0.28 * max(n_archs, 3))
    if not pairs:
        for ax in axes.flat:
            note(ax, f"one grid cell only: no axis to map ({NOT_IN_GRID})")
        return fig
    trained = at_stage(summary, "trained", diverged).set_index("run")
    for row, (a, b) in enumerate(pairs):
        _heatmap(fig, axes[row, 0], index, trained, diverged, a, b, "slope", "mean fitted slope (decades / step)")
        _heatmap(fig, axes[row, 1], index, trained, diverged, a, b, "horizon", "median gradient horizon (steps)")
    axes[0, 0].set_title("fitted slope of log10 g(k) after training (mean)")
    axes[0, 1].set_title("gradient horizon after training (median)")
    footer(fig, "Last checkpoint, top layer, state h; each cell pools the seeds and every grid axis not shown. "
                "Slope: mean. Horizon: median, a horizon censored at the probe's max lag K counting as ≥ K; "
                "'≥': the median involves a censored horizon and is only a lower bound. "
                "Hatched: the cell has diverged runs (left out; 'div.': all diverged).")
    return fig
