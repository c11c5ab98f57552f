"""Report category "Gradient vs distance": g(k)/g(0) against the lag k, drawn from gradient_curves.

Every curve is the top recurrent layer's, normalised per window by its own lag 0 (the
`norm_*` columns). A line is the median over runs (seeds) of each run's median over
windows; a band runs from the lowest per-run 25th to the highest per-run 75th percentile
over windows (the envelope of the runs' interquartile ranges: window-to-window and
seed-to-seed spread together). Where one run's value is censored, the statistic over
runs is unknown and left out (a gap); a downward triangle marks a median that ends on
censored windows.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib.lines import Line2D

from rnngrad import archs as registry
from rnngrad.figures.registry import category
from rnngrad.figures.style import (
    ARCH_COLOURS,
    ARCH_LABELS,
    ARCH_LINESTYLES,
    CELL_STATE_COLOUR,
    KEY_LABELS,
    NOT_IN_GRID,
    REGIME_CMAP,
    STAGE_TITLES,
    arch_handles,
    archs,
    drop_unused,
    footer,
    join_notes,
    limits,
    new_figure,
    note,
    powers_of_ten,
    slice_note,
    text_colour,
)
from rnngrad.grid import format_value
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

figure = category("Gradient vs distance")
BAND = "band: lowest per-seed 25th to highest per-seed 75th percentile over windows"


def curves(gradient_curves: pd.DataFrame, state: str = "h") -> pd.DataFrame:
    """One state's rows of each run's top layer."""
    if gradient_curves is None or gradient_curves.empty:
        return pd.DataFrame(columns=["run", "arch", "step", "layer", "state", "lag"])
    return top_layer_state(gradient_curves, state)


def band(frame: pd.DataFrame, value: str = "norm_log10_median", low: str = "norm_log10_q25",
         high: str = "norm_log10_q75") -> pd.DataFrame:
    """Per lag over the runs in `frame`: median of the per-run `value`, min of `low`, max of `high`.

    A statistic over runs is NaN at a lag where any run's value is censored (NaN): it is
    unknown there, not the other runs' value. `censored`: share of windows censored.
    """
    frame = numeric(frame, [value, low, high, "n", "n_censored"])
    grouped = frame.groupby("lag")
    complete = {column: grouped[column].count() == grouped.size() for column in (value, low, high)}
    out = pd.DataFrame({
        "median": grouped[value].median().where(complete[value]),
        "low": grouped[low].min().where(complete[low]),
        "high": grouped[high].max().where(complete[high]),
    })
    if "n_censored" in frame:
        out["censored"] = grouped["n_censored"].sum() / grouped["n"].sum().clip(lower=1)
    return out.reset_index()


def draw_curve(ax, curve: pd.DataFrame, colour, label: str | None, linestyle: str = "-",
               fill: bool = True) -> None:
    """A median curve with its band; where windows underflowed, a marker says 'censored below'."""
    ax.plot(curve["lag"], curve["median"], color=colour, linestyle=linestyle, label=label)
    if fill:
        ax.fill_between(curve["lag"], curve["low"], curve["high"], color=colour, alpha=0.18, linewidth=0)
    finite = curve[curve["median"].notna()]
    if "censored" in curve and not finite.empty:
        after = curve[curve["lag"] > finite["lag"].max()]
        if not after.empty and (after["censored"] > 0).any():
            last = finite.iloc[-1]
            ax.plot(last["lag"], last["median"], marker="v", color=colour, markersize=4, linestyle="none")


@figure(("gradient_curves", "gradient_summary", "runs"), "All architectures")
def gradient_vs_distance(gradient_curves, gradient_summary, runs):
    """Median g(k)/g(0) against lag k per arch, at initialisation and after training, with Pascanu's bound."""
    rows_h = curves(gradient_curves)
    summary = top_layer_state(gradient_summary, "h")
    index = run_index(rows_h)
    diverged = diverged_runs(runs)
    fig, axes = new_figure(2, height=2.6, sharey=False)
    chosen_all = {}
    present = archs(index)
    for ax, stage in zip(axes[0], STAGES):
        title = STAGE_TITLES[stage]
        ax.set_title(title)
        drawn = []
        for arch in present:
            ids, chosen = reference_runs(index, arch)
            chosen_all[arch] = chosen
            rows = at_stage(rows_h[rows_h["run"].isin(ids)], stage, diverged)
            if rows.empty:
                continue
            curve = band(rows)
            draw_curve(ax, curve, ARCH_COLOURS[arch], ARCH_LABELS[arch], linestyle=ARCH_LINESTYLES[arch])
            drawn += [curve["median"], curve["low"], curve["high"]]
            if arch in registry.bounded():
                bound = at_stage(numeric(summary[summary["run"].isin(ids)], ["bound_rate"]), stage, diverged)
                rate = bound["bound_rate"].median()
                if np.isfinite(rate):
                    ax.plot(curve["lag"], rate * curve["lag"], color=ARCH_COLOURS[arch], linestyle="--",
                            linewidth=0.9)
        if not drawn:
            note(ax, f"no {title.lower()} curves {NOT_IN_GRID}")
            continue
        limits(ax, drawn)
        powers_of_ten(ax)
        ax.set_xlabel("lag k (time steps)")
        ax.set_ylabel("g(k) / g(0)")
        n_div = sum(r in diverged for a in present for r in reference_runs(index, a)[0])
        if stage == "trained" and n_div:
            note(ax, f"{n_div} diverged run(s) left out", where="corner")
    bound_handle = Line2D([], [], color="0.3", linestyle="--", linewidth=0.9, label=r"bound $(\gamma\lambda_1)^k$")
    handles = arch_handles(present, [bound_handle] if any(a in registry.bounded() for a in present) else [])
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 5))
    footer(fig, join_notes("line: median over seeds of the median over windows", BAND, slice_note(chosen_all)))
    return fig


@figure(("gradient_curves", "runs"), "LSTM cell state")
def lstm_cell_state(gradient_curves, runs):
    """The first arch in the grid with a cell state c (the LSTM): ||dL_T/dh_{T-k}|| and ||dL_T/dc_{T-k}||,
    each over its own lag 0, per value of its own first hyperparameter (the LSTM's forget-gate bias)."""
    with_cell = registry.with_state("c")
    present = [a for a in with_cell if not gradient_curves.empty and a in set(gradient_curves["arch"])]
    arch = (present or with_cell)[0]  # the LSTM is built in: with_cell is never empty
    spec, label = registry.get(arch), ARCH_LABELS[arch]
    lstm = gradient_curves[(gradient_curves["arch"] == arch) & gradient_curves["state"].isin(["h", "c"])] \
        if not gradient_curves.empty else gradient_curves
    lstm = top_layer(lstm)
    index = run_index(lstm)
    diverged = diverged_runs(runs)
    fig, axes = new_figure(2, height=2.6)
    if index.empty:
        for ax, stage in zip(axes[0], STAGES):
            ax.set_title(STAGE_TITLES[stage])
            note(ax, f"{label} {NOT_IN_GRID}")
        return fig
    varied = next(iter(spec.hyperparameters), None)
    ids, chosen = reference_runs(index, arch, vary=(varied,) if varied else ())
    biases = sorted(index.loc[ids, varied].unique(), key=float) if varied else [None]
    styles = ["-", "--", ":", "-."]
    for ax, stage in zip(axes[0], STAGES):
        title = STAGE_TITLES[stage]
        ax.set_title(title)
        drawn = []
        for i, bias in enumerate(biases):
            bias_ids = [r for r in ids if varied is None or index.loc[r, varied] == bias]
            for state, colour in (("h", ARCH_COLOURS[arch]), ("c", CELL_STATE_COLOUR)):
                rows = at_stage(lstm[lstm["run"].isin(bias_ids) & (lstm["state"] == state)], stage, diverged)
                if rows.empty:
                    continue
                curve = band(rows)
                draw_curve(ax, curve, colour, None, linestyle=styles[i % len(styles)], fill=len(biases) == 1)
                drawn += [curve["median"]] + ([curve["low"], curve["high"]] if len(biases) == 1 else [])
        if not drawn:
            note(ax, f"no {label} curves {title.lower()}")
            continue
        limits(ax, drawn)
        powers_of_ten(ax)
        ax.set_xlabel("lag k (time steps)")
        ax.set_ylabel("norm at lag k / norm at lag 0")
    ratio = r"$\|\partial L_T/\partial {0}_{{T-k}}\| \,/\, \|\partial L_T/\partial {0}_T\|$"
    handles = [Line2D([], [], color=ARCH_COLOURS[arch], label="hidden state: " + ratio.format("h")),
               Line2D([], [], color=CELL_STATE_COLOUR, label="cell state (total derivative): " + ratio.format("c"))]
    handles += [Line2D([], [], color="0.3", linestyle=styles[i % len(styles)],
                       label=f"{KEY_LABELS[varied]} {format_value(b)}") for i, b in enumerate(biases) if varied]
    fig.legend(handles=handles, loc="outside upper center", ncol=2 if len(handles) > 3 else len(handles))
    single = (f"one {KEY_LABELS[varied]} ({format_value(biases[0])}) in this grid; {BAND}" if varied else BAND) \
        if len(biases) == 1 else ""
    footer(fig, join_notes("lines: median over seeds of the median over windows", single,
                           slice_note({arch: chosen})))
    return fig


@figure(("gradient_curves", "runs"), "During training")
def training_evolution(gradient_curves, runs):
    """g(k)/g(0) at every checkpoint of one run per arch, coloured by training progress."""
    rows_h = curves(gradient_curves)
    index = run_index(rows_h)
    present = archs(index)
    diverged = diverged_runs(runs)
    status = runs.set_index("run") if runs is not None and "run" in runs else pd.DataFrame()
    ncols = min(3, max(len(present), 1))
    nrows = max(1, math.ceil(len(present) / ncols))
    fig, axes = new_figure(ncols, nrows, height=2.2)
    # viridis without its palest yellow, which vanishes on white
    cmap = mcolors.ListedColormap(plt.get_cmap("viridis")(np.linspace(0, 0.9, 256)))
    chosen_all = {}
    for ax, arch in zip(axes.flat, present):
        ids, chosen = reference_runs(index, arch)
        chosen_all[arch] = chosen
        run = sorted(ids, key=lambda r: index.loc[r, "seed"])[0]
        rows = rows_h[rows_h["run"] == run]
        title = f"{ARCH_LABELS[arch]} (seed {index.loc[run, 'seed']})"
        if run in diverged and "diverged_step" in status:
            title += f", diverged at step {int(status.loc[run, 'diverged_step'])}"
        ax.set_title(title, color=text_colour(arch))
        drawn = []
        for _, group in rows.groupby("step"):
            progress = float(group["progress"].iloc[0]) if "progress" in group else 0.0
            curve = band(group)
            draw_curve(ax, curve, cmap(progress), None, fill=False)
            drawn.append(curve["median"])
        if len(rows["step"].unique()) < 2:
            note(ax, "one checkpoint only", where="corner")
        limits(ax, drawn)
        powers_of_ten(ax)
        ax.set_xlabel("lag k (time steps)")
        ax.set_ylabel("g(k) / g(0)")
    drop_unused(fig, axes, len(present), f"no gradient curves {NOT_IN_GRID}")
    if present:
        mappable = plt.cm.ScalarMappable(norm=mcolors.Normalize(0, 1), cmap=cmap)
        bar = fig.colorbar(mappable, ax=axes.ravel().tolist(), fraction=0.025, pad=0.02)
        bar.set_label("training progress (fraction of steps)")
        bar.set_ticks([0, 0.25, 0.5, 0.75, 1.0])
    footer(fig, join_notes("median over windows of one run", slice_note(chosen_all)))
    return fig


@figure(("gradient_curves", "gradient_summary", "runs"), "Recurrent weight scale")
def init_scale_effect(gradient_curves, gradient_summary, runs):
    """Vanilla RNNs for every init_scale, coloured by log10(gamma lambda_1): vanishing below 0, exploding above."""
    rows_h = curves(gradient_curves)
    summary = numeric(top_layer_state(gradient_summary, "h"), ["bound_rate"])
    index = run_index(rows_h)
    # the vanilla RNNs whose W_hh init_scale scales (not the IRNN's fixed identity)
    vanilla = [a for a in registry.in_family("vanilla") if "init" not in registry.get(a).fixed
               and a in set(index.get("arch", []))]
    diverged = diverged_runs(runs)
    fig, axes = new_figure(max(len(vanilla), 1), 2, height=2.1, sharex=True)
    if not vanilla:
        for ax in axes.flat:
            note(ax, f"tanh / sigmoid / ReLU RNN {NOT_IN_GRID}")
        return fig
    rates = summary[summary["arch"].isin(vanilla)]["bound_rate"].dropna()
    extent = max(float(rates.abs().max()) if len(rates) else 0.5, 0.05)
    norm = mcolors.TwoSlopeNorm(vmin=-extent, vcenter=0.0, vmax=extent)
    cmap = REGIME_CMAP
    chosen_all, single = {}, []
    for col, arch in enumerate(vanilla):
        ids, chosen = reference_runs(index, arch, vary=("init_scale",))
        chosen_all[arch] = chosen
        scales = sorted(index.loc[ids, "init_scale"].unique())
        if len(scales) < 2:
            single.append(ARCH_LABELS[arch])
        for row, stage in enumerate(STAGES):
            ax = axes[row, col]
            title = STAGE_TITLES[stage]
            ax.set_title(f"{ARCH_LABELS[arch]}, {title.lower()}", color=text_colour(arch))
            ax.axhspan(0, 1e3, color="#E69F00", alpha=0.06, linewidth=0)
            ax.axhline(0, color="0.4", linewidth=0.7)
            drawn = []
            for scale in scales:
                scale_ids = [r for r in ids if index.loc[r, "init_scale"] == scale]
                rows = at_stage(rows_h[rows_h["run"].isin(scale_ids)], stage, diverged)
                if rows.empty:
                    continue
                rate = at_stage(summary[summary["run"].isin(scale_ids)], stage, diverged)["bound_rate"].median()
                colour = cmap(norm(rate)) if np.isfinite(rate) else "0.5"
                curve = band(rows)
                draw_curve(ax, curve, colour, f"{format_value(scale)}", fill=False)
                drawn.append(curve["median"])
                end = curve.dropna(subset=["median"]).tail(1)
                if len(end):  # label each curve at its end: colours alone can coincide after training
                    ax.annotate(format_value(scale), (end["lag"].iloc[0], end["median"].iloc[0]),
                                xytext=(2, 0), textcoords="offset points", fontsize=6, color=colour,
                                va="center", ha="left")
            n_div = sum(r in diverged for r in ids)
            if stage == "trained" and n_div:
                note(ax, f"{n_div} diverged run(s) left out", where="corner")
            if not drawn:
                note(ax, f"no curves {title.lower()}")
                continue
            limits(ax, drawn)
            powers_of_ten(ax)
            ax.text(0.98, 0.97, r"growing: $\gamma\lambda_1>1$ possible", transform=ax.transAxes,
                    ha="right", va="top", fontsize=6, color="0.4")
            if row == 1:
                ax.set_xlabel("lag k (time steps)")
            if col == 0:
                ax.set_ylabel("g(k) / g(0)")
            ax.legend(title="init scale", loc="lower left", fontsize=6, title_fontsize=6, ncol=2)
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes.ravel().tolist(), fraction=0.025, pad=0.02)
    bar.set_label(r"$\log_{10}\gamma\lambda_1$ at the checkpoint (0: $\gamma\lambda_1 = 1$)")
    footer(fig, join_notes("median over seeds of the median over windows", slice_note(chosen_all),
                           f"one init_scale only for {', '.join(single)}" if single else ""))
    return fig
