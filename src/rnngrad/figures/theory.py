"""Report category "Theory": the measurement beside Pascanu et al.'s (2013) analysis.

Pascanu's bound against the fitted slopes (gradient_summary) and the temporal
contributions to dL_T/dW_hh (their eq. 4-5; temporal_contributions).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from rnngrad import archs as registry
from rnngrad.figures.registry import category
from rnngrad.figures.style import (
    ARCH_COLOURS,
    ARCH_LABELS,
    ARCH_LINESTYLES,
    COLUMN_WIDTH,
    NOT_IN_GRID,
    STAGE_TITLES,
    arch_handles,
    archs,
    footer,
    join_notes,
    new_figure,
    note,
    slice_note,
)
from rnngrad.selection import (
    STAGES,
    at_stage,
    diverged_runs,
    numeric,
    reference_runs,
    run_index,
    top_layer,
    top_layer_state,
)

figure = category("Theory")
CONTRIBUTION_LAGS = (1, 5, 10, 20)


@figure(("gradient_summary", "runs"), "Bound against measurement")
def theory_vs_measurement(gradient_summary, runs):
    """Fitted slope of log10 g(k) against log10(gamma lambda_1): every run and checkpoint of the bound's archs."""
    summary = numeric(top_layer_state(gradient_summary, "h"), ["bound_rate", "slope", "slope_se"])
    diverged = diverged_runs(runs)
    fig, axes = new_figure(1, width=COLUMN_WIDTH, height=3.0)
    ax = axes[0, 0]
    points = summary[summary["arch"].isin(registry.bounded())].dropna(subset=["bound_rate", "slope"]) \
        if not summary.empty else summary
    if points.empty:
        note(ax, f"vanilla RNNs and remedies (the bound's archs) {NOT_IN_GRID}")
        return fig
    last = points.groupby("run")["step"].transform("max")
    kind = np.where(points["step"] == 0, "init", np.where(points["step"] == last, "trained", "mid"))
    markers = {"init": ("o", "none", 14), "mid": ("o", "fill", 6), "trained": ("s", "fill", 14)}
    for arch in archs(points):
        colour = ARCH_COLOURS[arch]
        for k, (marker, fill, size) in markers.items():
            sel = points[(points["arch"] == arch) & (kind == k) & ~points["run"].isin(diverged)]
            ax.scatter(sel["bound_rate"], sel["slope"], s=size, marker=marker, linewidths=0.8,
                       facecolors=colour if fill == "fill" else "none", edgecolors=colour, alpha=0.8)
        sel = points[(points["arch"] == arch) & points["run"].isin(diverged)]
        ax.scatter(sel["bound_rate"], sel["slope"], s=14, marker="x", color=colour, linewidths=0.8)
    low = min(points["bound_rate"].min(), points["slope"].min())
    high = max(points["bound_rate"].max(), points["slope"].max())
    pad = 0.05 * (high - low + 0.1)
    line = np.array([low - pad, high + pad])
    ax.plot(line, line, color="0.2", linestyle="--", linewidth=0.9)
    ax.fill_between(line, line, line.max() + 10, color="0.5", alpha=0.12, linewidth=0)
    ax.set_xlim(*line)
    ax.set_ylim(*line)
    ax.text(0.04, 0.96, "forbidden by the bound", transform=ax.transAxes, ha="left", va="top", fontsize=6, color="0.3")
    ax.set_xlabel(r"bound rate $\log_{10}(\gamma\lambda_1)$ (decades / step)")
    ax.set_ylabel(r"fitted slope of $\log_{10} g(k)$ (decades / step)")
    handles = arch_handles(archs(points), [
        Line2D([], [], marker="o", markerfacecolor="none", color="0.3", linestyle="none", label="initialisation"),
        Line2D([], [], marker="s", color="0.3", linestyle="none", label="after training"),
        Line2D([], [], marker="x", color="0.3", linestyle="none", label="diverged run"),
        Line2D([], [], color="0.2", linestyle="--", label="slope = bound rate")])
    ax.legend(handles=handles, loc="lower right", fontsize=6)
    gated = [ARCH_LABELS[a] for a in archs(summary) if a in registry.in_family("gated")]
    if gated:
        footer(fig, f"{', '.join(gated)}: no such bound (gated), not shown")
    return fig


def share_beyond(rows: pd.DataFrame, thresholds) -> pd.DataFrame | None:
    """One run's share of the contributions from lags > k, for each k in `thresholds`.

    The per-lag median shares summed over lags > k, over their sum over all lags. None
    when a lag's share is censored (NaN): the sums are then unknown.
    """
    shares = rows.set_index("lag")["share_median"]
    if shares.isna().any():
        return None
    total = shares.sum()
    return pd.DataFrame({"k": list(thresholds), "share": [shares[shares.index > k].sum() / total for k in thresholds]})


@figure(("temporal_contributions", "runs"), "Temporal contributions")
def temporal_contributions(temporal_contributions, runs):
    """Share of dL/dW_hh coming from lags beyond 1, 5, 10, 20 per arch, at initialisation and after training."""
    contributions = top_layer(numeric(temporal_contributions, ["share_median"]))
    index = run_index(contributions)
    diverged = diverged_runs(runs)
    fig, axes = new_figure(2, height=2.4, sharey=True)
    present = archs(index)
    max_lag = int(contributions["lag"].max()) if not contributions.empty else 0
    thresholds = [k for k in CONTRIBUTION_LAGS if k < max_lag]
    chosen_all, n_censored = {}, 0
    for ax, stage in zip(axes[0], STAGES):
        title = STAGE_TITLES[stage]
        ax.set_title(title)
        drawn = []
        for arch in present:
            ids, chosen = reference_runs(index, arch)
            chosen_all[arch] = chosen
            rows = at_stage(contributions[contributions["run"].isin(ids)], stage, diverged)
            if rows.empty or not thresholds:
                continue
            per_run = [share_beyond(group, thresholds) for _, group in rows.groupby("run")]
            n_censored += sum(frame is None for frame in per_run)
            per_run = [frame for frame in per_run if frame is not None]
            if not per_run:
                continue
            shares = pd.concat(per_run).groupby("k")["share"].agg(["median", "min", "max"]).reset_index()
            shares = shares.replace(0.0, np.nan)  # underflowed: not drawn as log(0)
            colour = ARCH_COLOURS[arch]
            ax.plot(shares["k"], shares["median"], marker="o", markersize=3, color=colour,
                    linestyle=ARCH_LINESTYLES[arch], label=ARCH_LABELS[arch])
            ax.fill_between(shares["k"], shares["min"], shares["max"], color=colour, alpha=0.15, linewidth=0)
            drawn.append(shares)
        if not drawn:
            note(ax, f"no temporal contributions {title.lower()} ({NOT_IN_GRID})")
            continue
        ax.set_yscale("log")
        ax.set_xticks(thresholds)
        ax.set_xlabel("lag threshold k (time steps)")
        if stage == "init":
            ax.set_ylabel(r"share of $\|\partial L/\partial W_{hh}\|$ from lags $> k$")
    fig.legend(handles=arch_handles(present), loc="outside upper center", ncol=min(max(len(present), 1), 5))
    missing = [k for k in CONTRIBUTION_LAGS if k not in thresholds]
    footer(fig, join_notes(
        "median over seeds, band: range over seeds", slice_note(chosen_all),
        f"{n_censored} checkpoint(s) with censored shares left out" if n_censored else "",
        f"lags beyond {missing} exceed the probe's max lag {max_lag}" if missing else ""))
    return fig
