"""The paper's figures, each drawn by one function from the tidy tables only.

Every figure function takes pandas DataFrames named after the tables of
`results/tables/` (`runs`, `epochs`, `training_steps`, `gradient_curves`,
`gradient_summary`, `temporal_contributions`, `jacobian_steps`) and returns a
matplotlib Figure. `FIGURES` maps a figure's name to its function and the tables it
reads, so the workflow generates one rule job per figure and a figure reruns only
when its tables or this module change.

Conventions shared by all figures:
- one colour per arch everywhere (Okabe-Ito, colour-blind safe), in `ARCH_COLOURS`;
- gradient curves are log10 values drawn on a linear axis labelled in powers of ten,
  so a censored value (underflow, NaN in the tables) is a gap, never log(0);
- "at initialisation" is checkpoint step 0, "after training" the last checkpoint of
  a run that finished with status `ok`; diverged runs are drawn as such or counted
  in a note, never silently mixed in;
- curves come from the top recurrent layer, where Pascanu's bound holds exactly;
- when a grid holds several values of an axis a figure does not compare, the figure
  uses one reference value per axis (`reference_runs`) and says which.
A figure that lacks the data for a panel writes "not in this grid" there.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colors as mcolors  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from rnngrad.grid import ALL_ARCHS, GATED_ARCHS, GRID_KEYS, VANILLA_ARCHS, format_value, parse_run_path  # noqa: E402

TABLES = ("runs", "epochs", "training_steps", "gradient_curves", "gradient_summary",
          "temporal_contributions", "jacobian_steps")

# Okabe & Ito (2008): warm colours for the vanilla RNNs, cool ones for the gated.
ARCH_COLOURS = {
    "rnn_tanh": "#D55E00",     # vermillion
    "rnn_sigmoid": "#CC79A7",  # reddish purple
    "rnn_relu": "#E69F00",     # orange
    "irnn": "#000000",         # black
    "lstm": "#0072B2",         # blue
    "gru": "#009E73",          # bluish green
}
CELL_STATE_COLOUR = "#56B4E9"  # sky blue: the LSTM's cell state c beside its h (blue)
ARCH_LABELS = {"rnn_tanh": "tanh RNN", "rnn_sigmoid": "sigmoid RNN", "rnn_relu": "ReLU RNN",
               "irnn": "IRNN", "lstm": "LSTM", "gru": "GRU"}
KEY_LABELS = {"arch": "arch", "hidden_size": "hidden size", "num_layers": "layers", "init": "W_hh init",
              "init_scale": "init scale", "forget_bias": "forget bias", "lr": "lr",
              "optimizer": "optimizer", "clip": "clip", "bptt": "bptt", "batch_size": "batch",
              "epochs": "epochs", "seed": "seed"}
# Reference value per axis when a figure compares archs only (closest value wins).
PREFERRED = {"init_scale": 1.0, "forget_bias": 1.0, "init": "orthogonal", "optimizer": "sgd"}
COLUMN_WIDTH = 3.4  # inches: one column of a two-column paper
FULL_WIDTH = 7.0    # inches: both columns
RC = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "legend.fontsize": 7, "legend.frameon": False, "lines.linewidth": 1.3,
    "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 100, "savefig.dpi": 200,
    "pdf.fonttype": 42, "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.5,
}
NOT_IN_GRID = "not in this grid"
# Purple (vanishing) to orange (exploding) through grey, so no curve fades into the
# white page at gamma lambda_1 = 1 (PuOr's ends, colour-blind safe).
REGIME_CMAP = mcolors.LinearSegmentedColormap.from_list(
    "regime", ["#2d004b", "#8073ac", "#808080", "#e08214", "#7f3b08"])


@dataclass(frozen=True)
class FigureSpec:
    function: Callable[..., plt.Figure]
    tables: tuple[str, ...]
    category: str
    subcategory: str


FIGURES: dict[str, FigureSpec] = {}


def register(tables: tuple[str, ...], category: str, subcategory: str):
    """Add a figure function to FIGURES under its own name; its parameters are table names."""
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown tables {sorted(unknown)}")

    def decorate(function):
        FIGURES[function.__name__] = FigureSpec(function, tuple(tables), category, subcategory)
        return function

    return decorate


# ---------------------------------------------------------------------------- helpers


def _archs(frame: pd.DataFrame) -> list[str]:
    present = set(frame["arch"]) if "arch" in frame else set()
    return [arch for arch in ALL_ARCHS if arch in present]


def run_index(*frames: pd.DataFrame) -> pd.DataFrame:
    """One row per run, its grid values parsed from the run path (types as in the config)."""
    runs = sorted({run for frame in frames if frame is not None and "run" in frame for run in frame["run"]})
    # object dtype keeps None (no clipping) and 'na' (no forget gate) as they are
    index = pd.DataFrame([parse_run_path(run) for run in runs], index=pd.Index(runs, name="run"), dtype=object)
    return index if len(index) else pd.DataFrame(columns=list(GRID_KEYS), index=pd.Index([], name="run"))


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
    if key in PREFERRED:
        return min(distinct, key=lambda v: (_distance(v, PREFERRED[key]), format_value(v)))
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
    for key in GRID_KEYS:
        if key in ("arch", "seed") or key in vary or sub.empty:
            continue
        if sub[key].map(format_value).nunique() > 1:
            value = _choose(sub[key], key)
            chosen[key] = value
            sub = sub[sub[key].map(format_value) == format_value(value)]
    return list(sub.index), chosen


def _slice_note(chosen_per_arch: dict[str, dict]) -> str:
    """'Fixed: init scale 1, clip 5' for the axes a figure held at a reference value."""
    merged: dict[str, set] = {}
    for chosen in chosen_per_arch.values():
        for key, value in chosen.items():
            merged.setdefault(key, set()).add(format_value(value))
    if not merged:
        return ""
    parts = [f"{KEY_LABELS[key]} {'/'.join(sorted(values))}" for key, values in merged.items()]
    return "Reference slice: " + ", ".join(parts)


def _diverged(runs: pd.DataFrame | None) -> set[str]:
    if runs is None or "status" not in runs:
        return set()
    return set(runs.loc[runs["status"] == "diverged", "run"])


def _finite(frame: pd.DataFrame, columns) -> pd.DataFrame:
    frame = frame.copy()
    for column in columns:
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").replace([np.inf, -np.inf], np.nan)
    return frame


def _top_layer(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of each run's top recurrent layer (where Pascanu's bound holds)."""
    if frame.empty or "layer" not in frame:
        return frame
    top = frame.groupby("run")["layer"].transform("max")
    return frame[frame["layer"] == top]


def _top_layer_h(summary: pd.DataFrame) -> pd.DataFrame:
    """The hidden state's rows of each run's top layer: what the summary figures compare."""
    if summary.empty:
        return summary
    return _top_layer(summary[summary["state"] == "h"])


def _stage(frame: pd.DataFrame, stage: str, diverged: set[str]) -> pd.DataFrame:
    """Rows at initialisation (step 0) or at the last checkpoint of runs that finished."""
    if frame.empty:
        return frame
    if stage == "init":
        return frame[frame["step"] == 0]
    last = frame.groupby("run")["step"].transform("max")
    return frame[(frame["step"] == last) & (frame["step"] > 0) & ~frame["run"].isin(diverged)]


STAGES = (("init", "At initialisation"), ("final", "After training"))


def _note(ax, text: str, where: str = "center") -> None:
    """Write an explanation in an axes; a centred note also blanks the empty panel."""
    if where == "center":
        ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=7,
                color="0.35", wrap=True)
        ax.set_axis_off()  # not set_yticks([]): that would also clear axes sharing this one
    else:
        ax.text(0.02, 0.02, text, transform=ax.transAxes, ha="left", va="bottom", fontsize=6,
                color="0.35")


def _drop_unused(fig, axes, used: int, empty_note: str) -> None:
    """Remove panels beyond the used ones; with none used, say why the figure is empty."""
    if not used:
        _note(axes.flat[0], empty_note)
        used = 1
    for ax in list(axes.flat)[used:]:
        fig.delaxes(ax)


def _powers_of_ten(ax, axis: str = "y") -> None:
    """Label an axis holding log10 values as 10^n at integer n."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(MaxNLocator(nbins=6, integer=True))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"$10^{{{int(round(v))}}}$"))


def _plain_log(ax) -> None:
    """Log y axis labelled in plain numbers (perplexities: 100, 200, 500)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _log_ticks(ax) -> None:
    """Log y axis: 1-2-5 labels in plain numbers over a narrow range, decades over a wide one."""
    low, high = ax.get_ylim()
    if low > 0 and math.log10(high / low) < 3:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _footer(fig, text: str) -> None:
    """A note under the figure (savefig's tight bounding box takes it in)."""
    if text:  # wrapped to the figure's width (about 24 characters per inch at 6 pt)
        text = textwrap.fill(text, width=int(24 * fig.get_figwidth()))
        fig.text(0.01, -0.01, text, ha="left", va="top", fontsize=6, color="0.35")


def _band(frame: pd.DataFrame, value: str = "norm_log10_median", low: str = "norm_log10_q25",
          high: str = "norm_log10_q75") -> pd.DataFrame:
    """Per lag: median over runs of the per-window median, band from the lowest q25 to the highest q75."""
    frame = _finite(frame, [value, low, high, "n", "n_censored"])
    grouped = frame.groupby("lag")
    out = pd.DataFrame({
        "median": grouped[value].median(),
        "low": grouped[low].min(),
        "high": grouped[high].max(),
    })
    if "n_censored" in frame:
        out["censored"] = grouped["n_censored"].sum() / grouped["n"].sum().clip(lower=1)
    return out.reset_index()


def _draw_curve(ax, band: pd.DataFrame, colour: str, label: str | None, linestyle: str = "-",
                fill: bool = True) -> None:
    """A median curve with its band; where windows underflowed, a marker says 'censored below'."""
    ax.plot(band["lag"], band["median"], color=colour, linestyle=linestyle, label=label)
    if fill:
        ax.fill_between(band["lag"], band["low"], band["high"], color=colour, alpha=0.18, linewidth=0)
    finite = band[band["median"].notna()]
    if "censored" in band and not finite.empty:
        after = band[band["lag"] > finite["lag"].max()]
        if not after.empty and (after["censored"] > 0).any():
            last = finite.iloc[-1]
            ax.plot(last["lag"], last["median"], marker="v", color=colour, markersize=4, linestyle="none")


def _limits(ax, values: list[np.ndarray]) -> None:
    """y range of the data (and 10^0), so bound lines and empty bands never stretch it."""
    finite = np.concatenate([np.asarray(v, dtype=float)[np.isfinite(v)] for v in values] or [np.array([])])
    if finite.size:
        low, high = finite.min(), max(finite.max(), 0.0)
        span = max(high - low, 1.0)
        ax.set_ylim(low - 0.05 * span, high + 0.08 * span)


def _arch_handles(archs, extra=()) -> list:
    handles = [Line2D([], [], color=ARCH_COLOURS[a], label=ARCH_LABELS[a]) for a in archs]
    return handles + list(extra)


def _new(ncols: int = 1, nrows: int = 1, width: float = FULL_WIDTH, height: float = 2.4, **kwargs):
    with plt.rc_context(RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, height * nrows), squeeze=False,
                                 layout="constrained", **kwargs)
    return fig, axes


def _curves(gradient_curves: pd.DataFrame, state: str = "h") -> pd.DataFrame:
    if gradient_curves is None or gradient_curves.empty:
        return pd.DataFrame(columns=["run", "arch", "step", "layer", "state", "lag"])
    return _top_layer(gradient_curves[gradient_curves["state"] == state])


def save_figure(fig: plt.Figure, png: str | Path, pdf: str | Path, dpi: float | None = None) -> None:
    """PNG for the report, PDF for the paper (written atomically); `dpi` of the PNG (default 200)."""
    from rnngrad.io import atomic_path

    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, bbox_inches="tight", dpi=dpi or RC["savefig.dpi"])
    plt.close(fig)


# Columns a figure reads from the largest tables (one row per training step of every run).
READ_COLUMNS = {"training_steps": ["run", "arch", "step", "grad_norm", "clipped"]}


def draw_figure(name: str, tables: dict[str, str | Path], png: str | Path, pdf: str | Path) -> None:
    """Read the CSV tables a figure needs, draw it, write PNG and PDF. The rule's one call."""
    spec = FIGURES[name]
    frames = {table: pd.read_csv(tables[table], low_memory=False, usecols=READ_COLUMNS.get(table))
              for table in spec.tables}
    with plt.rc_context(RC):
        fig = spec.function(**frames)
    save_figure(fig, png, pdf)


# ---------------------------------------------------------------------------- figures


@register(("gradient_curves", "gradient_summary", "runs"), "Gradient vs distance", "All architectures")
def gradient_vs_distance(gradient_curves, gradient_summary, runs):
    """Median g(k)/g(0) against lag k per arch, at initialisation and after training, with Pascanu's bound."""
    curves = _curves(gradient_curves)
    summary = _top_layer_h(gradient_summary)
    index = run_index(curves)
    diverged = _diverged(runs)
    fig, axes = _new(2, height=2.6, sharey=False)
    chosen_all = {}
    archs = _archs(index)
    for ax, (stage, title) in zip(axes[0], STAGES):
        ax.set_title(title)
        drawn = []
        for arch in archs:
            ids, chosen = reference_runs(index, arch)
            chosen_all[arch] = chosen
            rows = _stage(curves[curves["run"].isin(ids)], stage, diverged)
            if rows.empty:
                continue
            band = _band(rows)
            _draw_curve(ax, band, ARCH_COLOURS[arch], ARCH_LABELS[arch])
            drawn += [band["median"], band["low"], band["high"]]
            if arch in VANILLA_ARCHS:
                bound = _stage(_finite(summary[summary["run"].isin(ids)], ["bound_rate"]), stage, diverged)
                rate = bound["bound_rate"].median()
                if np.isfinite(rate):
                    ax.plot(band["lag"], rate * band["lag"], color=ARCH_COLOURS[arch], linestyle="--",
                            linewidth=0.9)
        if not drawn:
            _note(ax, f"no {title.lower()} curves {NOT_IN_GRID}")
            continue
        _limits(ax, drawn)
        _powers_of_ten(ax)
        ax.set_xlabel("lag k (time steps)")
        ax.set_ylabel("g(k) / g(0)")
        n_div = sum(r in diverged for a in archs for r in reference_runs(index, a)[0])
        if stage == "final" and n_div:
            _note(ax, f"{n_div} diverged run(s) left out", where="corner")
    bound_handle = Line2D([], [], color="0.3", linestyle="--", linewidth=0.9, label=r"bound $(\gamma\lambda_1)^k$")
    handles = _arch_handles(archs, [bound_handle] if any(a in VANILLA_ARCHS for a in archs) else [])
    fig.legend(handles=handles, loc="outside upper center", ncol=len(handles))
    _footer(fig, _slice_note(chosen_all))
    return fig


@register(("gradient_curves", "runs"), "Gradient vs distance", "LSTM cell state")
def lstm_cell_state(gradient_curves, runs):
    """LSTM: g(k)/g(0) through the hidden state h against the cell state c, per forget-gate bias."""
    curves = gradient_curves[(gradient_curves["arch"] == "lstm") & gradient_curves["state"].isin(["h", "c"])] \
        if not gradient_curves.empty else gradient_curves
    curves = _top_layer(curves)
    index = run_index(curves)
    diverged = _diverged(runs)
    fig, axes = _new(2, height=2.6)
    if index.empty:
        for ax, (_, title) in zip(axes[0], STAGES):
            ax.set_title(title)
            _note(ax, f"LSTM {NOT_IN_GRID}")
        return fig
    ids, chosen = reference_runs(index, "lstm", vary=("forget_bias",))
    biases = sorted(index.loc[ids, "forget_bias"].unique(), key=float)
    styles = ["-", "--", ":", "-."]
    for ax, (stage, title) in zip(axes[0], STAGES):
        ax.set_title(title)
        drawn = []
        for i, bias in enumerate(biases):
            bias_ids = [r for r in ids if index.loc[r, "forget_bias"] == bias]
            for state, colour in (("h", ARCH_COLOURS["lstm"]), ("c", CELL_STATE_COLOUR)):
                rows = _stage(curves[curves["run"].isin(bias_ids) & (curves["state"] == state)], stage, diverged)
                if rows.empty:
                    continue
                band = _band(rows)
                _draw_curve(ax, band, colour, None, linestyle=styles[i % len(styles)], fill=len(biases) == 1)
                drawn += [band["median"]] + ([band["low"], band["high"]] if len(biases) == 1 else [])
        if not drawn:
            _note(ax, f"no LSTM curves {title.lower()}")
            continue
        _limits(ax, drawn)
        _powers_of_ten(ax)
        ax.set_xlabel("lag k (time steps)")
        ax.set_ylabel("g(k) / g(0)")
    handles = [Line2D([], [], color=ARCH_COLOURS["lstm"], label=r"hidden state $h$: $\|\partial L/\partial h_{T-k}\|$"),
               Line2D([], [], color=CELL_STATE_COLOUR, label=r"cell state $c$: $\|\partial L/\partial c_{T-k}\|$")]
    handles += [Line2D([], [], color="0.3", linestyle=styles[i % len(styles)], label=f"forget bias {format_value(b)}")
                for i, b in enumerate(biases)]
    fig.legend(handles=handles, loc="outside upper center", ncol=len(handles))
    note = _slice_note({"lstm": chosen})
    if len(biases) == 1:
        note = (note + "; " if note else "") + f"one forget bias ({format_value(biases[0])}) in this grid"
    _footer(fig, note)
    return fig


@register(("gradient_curves", "runs"), "Gradient vs distance", "During training")
def training_evolution(gradient_curves, runs):
    """g(k)/g(0) at every checkpoint of one run per arch, coloured by training progress."""
    curves = _curves(gradient_curves)
    index = run_index(curves)
    archs = _archs(index)
    diverged = _diverged(runs)
    status = runs.set_index("run") if runs is not None and "run" in runs else pd.DataFrame()
    ncols = min(3, max(len(archs), 1))
    nrows = max(1, math.ceil(len(archs) / ncols))
    fig, axes = _new(ncols, nrows, height=2.2)
    # viridis without its palest yellow, which vanishes on white
    cmap = mcolors.ListedColormap(plt.get_cmap("viridis")(np.linspace(0, 0.9, 256)))
    chosen_all = {}
    for ax, arch in zip(axes.flat, archs):
        ids, chosen = reference_runs(index, arch)
        chosen_all[arch] = chosen
        run = sorted(ids, key=lambda r: index.loc[r, "seed"])[0]
        rows = curves[curves["run"] == run]
        title = f"{ARCH_LABELS[arch]} (seed {index.loc[run, 'seed']})"
        if run in diverged and "diverged_step" in status:
            title += f", diverged at step {int(status.loc[run, 'diverged_step'])}"
        ax.set_title(title, color=ARCH_COLOURS[arch])
        drawn = []
        for step, group in rows.groupby("step"):
            progress = float(group["progress"].iloc[0]) if "progress" in group else 0.0
            band = _band(group)
            _draw_curve(ax, band, cmap(progress), None, fill=False)
            drawn.append(band["median"])
        if len(rows["step"].unique()) < 2:
            _note(ax, "one checkpoint only", where="corner")
        _limits(ax, drawn)
        _powers_of_ten(ax)
        ax.set_xlabel("lag k (time steps)")
        ax.set_ylabel("g(k) / g(0)")
    _drop_unused(fig, axes, len(archs), f"no gradient curves {NOT_IN_GRID}")
    if archs:
        mappable = plt.cm.ScalarMappable(norm=mcolors.Normalize(0, 1), cmap=cmap)
        bar = fig.colorbar(mappable, ax=axes.ravel().tolist(), fraction=0.025, pad=0.02)
        bar.set_label("training progress (fraction of steps)")
        bar.set_ticks([0, 0.25, 0.5, 0.75, 1.0])
    _footer(fig, _slice_note(chosen_all))
    return fig


@register(("gradient_curves", "gradient_summary", "runs"), "Gradient vs distance", "Recurrent weight scale")
def init_scale_effect(gradient_curves, gradient_summary, runs):
    """Vanilla RNN curves for every init_scale, coloured by log10(gamma lambda_1): vanishing below 1, exploding above."""
    curves = _curves(gradient_curves)
    summary = _top_layer_h(gradient_summary)
    summary = _finite(summary, ["bound_rate"])
    index = run_index(curves)
    archs = [a for a in ("rnn_tanh", "rnn_sigmoid", "rnn_relu") if a in set(index.get("arch", []))]
    diverged = _diverged(runs)
    fig, axes = _new(max(len(archs), 1), 2, height=2.1, sharex=True)
    if not archs:
        for ax in axes.flat:
            _note(ax, f"tanh / sigmoid / ReLU RNN {NOT_IN_GRID}")
        return fig
    rates = summary[summary["arch"].isin(archs)]["bound_rate"].dropna()
    extent = max(float(rates.abs().max()) if len(rates) else 0.5, 0.05)
    norm = mcolors.TwoSlopeNorm(vmin=-extent, vcenter=0.0, vmax=extent)
    cmap = REGIME_CMAP
    chosen_all, single = {}, []
    for col, arch in enumerate(archs):
        ids, chosen = reference_runs(index, arch, vary=("init_scale",))
        chosen_all[arch] = chosen
        scales = sorted(index.loc[ids, "init_scale"].unique())
        if len(scales) < 2:
            single.append(ARCH_LABELS[arch])
        for row, (stage, title) in enumerate(STAGES):
            ax = axes[row, col]
            ax.set_title(f"{ARCH_LABELS[arch]}, {title.lower()}", color=ARCH_COLOURS[arch])
            ax.axhspan(0, 1e3, color="#E69F00", alpha=0.06, linewidth=0)
            ax.axhline(0, color="0.4", linewidth=0.7)
            drawn = []
            for scale in scales:
                scale_ids = [r for r in ids if index.loc[r, "init_scale"] == scale]
                rows = _stage(curves[curves["run"].isin(scale_ids)], stage, diverged)
                if rows.empty:
                    continue
                rate = _stage(summary[summary["run"].isin(scale_ids)], stage, diverged)["bound_rate"].median()
                colour = cmap(norm(rate)) if np.isfinite(rate) else "0.5"
                band = _band(rows)
                _draw_curve(ax, band, colour, f"{format_value(scale)}", fill=False)
                drawn.append(band["median"])
                end = band.dropna(subset=["median"]).tail(1)
                if len(end):  # label each curve at its end: colours alone can coincide after training
                    ax.annotate(format_value(scale), (end["lag"].iloc[0], end["median"].iloc[0]),
                                xytext=(2, 0), textcoords="offset points", fontsize=6, color=colour,
                                va="center", ha="left")
            n_div = sum(r in diverged for r in ids)
            if stage == "final" and n_div:
                _note(ax, f"{n_div} diverged run(s) left out", where="corner")
            if not drawn:
                _note(ax, f"no curves {title.lower()}")
                continue
            _limits(ax, drawn)
            _powers_of_ten(ax)
            ax.text(0.98, 0.97, r"growing: $\gamma\lambda_1>1$ possible", transform=ax.transAxes,
                    ha="right", va="top", fontsize=6, color="0.4")
            if row == 1:
                ax.set_xlabel("lag k (time steps)")
            if col == 0:
                ax.set_ylabel("g(k) / g(0)")
            ax.legend(title="init scale", loc="lower left", fontsize=6, title_fontsize=6, ncol=2)
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes.ravel().tolist(), fraction=0.025, pad=0.02)
    bar.set_label(r"$\log_{10}\gamma\lambda_1$ at the checkpoint (0: $\gamma\lambda_1 = 1$)")
    note = _slice_note(chosen_all)
    if single:
        note = (note + "; " if note else "") + f"one init_scale only for {', '.join(single)}"
    _footer(fig, note)
    return fig


@register(("gradient_summary", "runs"), "Theory", "Bound against measurement")
def theory_vs_measurement(gradient_summary, runs):
    """Fitted slope of log10 g(k) against log10(gamma lambda_1), every vanilla run and checkpoint."""
    summary = _top_layer_h(gradient_summary)
    summary = _finite(summary, ["bound_rate", "slope", "slope_se"])
    diverged = _diverged(runs)
    fig, axes = _new(1, width=COLUMN_WIDTH, height=3.0)
    ax = axes[0, 0]
    points = summary[summary["arch"].isin(VANILLA_ARCHS)].dropna(subset=["bound_rate", "slope"]) if not summary.empty else summary
    if points.empty:
        _note(ax, f"vanilla RNNs (the bound's archs) {NOT_IN_GRID}")
        return fig
    last = points.groupby("run")["step"].transform("max")
    kind = np.where(points["step"] == 0, "init", np.where(points["step"] == last, "final", "mid"))
    markers = {"init": ("o", "none", 14), "mid": ("o", "fill", 6), "final": ("s", "fill", 14)}
    for arch in _archs(points):
        for k, (marker, fill, size) in markers.items():
            sel = points[(points["arch"] == arch) & (kind == k) & ~points["run"].isin(diverged)]
            colour = ARCH_COLOURS[arch]
            ax.scatter(sel["bound_rate"], sel["slope"], s=size, marker=marker, linewidths=0.8,
                       facecolors=colour if fill == "fill" else "none", edgecolors=colour, alpha=0.8)
        sel = points[(points["arch"] == arch) & points["run"].isin(diverged)]
        ax.scatter(sel["bound_rate"], sel["slope"], s=14, marker="x", color=ARCH_COLOURS[arch], linewidths=0.8)
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
    handles = _arch_handles(_archs(points), [
        Line2D([], [], marker="o", markerfacecolor="none", color="0.3", linestyle="none", label="initialisation"),
        Line2D([], [], marker="s", color="0.3", linestyle="none", label="after training"),
        Line2D([], [], marker="x", color="0.3", linestyle="none", label="diverged run"),
        Line2D([], [], color="0.2", linestyle="--", label="slope = bound rate")])
    ax.legend(handles=handles, loc="lower right", fontsize=6)
    gated = [ARCH_LABELS[a] for a in _archs(summary) if a in GATED_ARCHS]
    if gated:
        _footer(fig, f"{', '.join(gated)}: no such bound (gated), not shown")
    return fig


def varying_axes(index: pd.DataFrame) -> list[str]:
    """Grid axes (not seed) with several values for some arch; 'na' beside one LSTM value is no axis."""
    if index.empty:
        return []
    keys = ["arch"] if index["arch"].nunique() > 1 else []
    per_arch = index.assign(**{k: index[k].map(format_value) for k in GRID_KEYS}).groupby("arch")
    return keys + [k for k in GRID_KEYS if k not in ("arch", "seed") and per_arch[k].nunique().max() > 1]


def _heatmap_axes(index: pd.DataFrame) -> list[tuple[str, str | None]]:
    """Pairs of varying grid axes (arch against each other axis when arch varies), at most 3."""
    varying = varying_axes(index)
    if "arch" in varying:
        return [("arch", k) for k in varying if k != "arch"][:3] or [("arch", None)]
    pairs = [(a, b) for i, a in enumerate(varying) for b in varying[i + 1:]]
    return pairs[:3] or ([(varying[0], None)] if varying else [])


def _sort_key(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, format_value(value))


def _axis_values(index: pd.DataFrame, key: str) -> list:
    values = sorted(dict.fromkeys(index[key]), key=_sort_key)
    if key == "arch":
        values = [a for a in ALL_ARCHS if a in values][::-1]  # imshow rows run top-down
    return values


def _heatmap(fig, ax, index, final, diverged, a, b, metric, label):
    """One heatmap of `metric` over axes a (rows) x b (columns), annotated, diverged cells hatched."""
    rows_v = _axis_values(index, a)
    cols_v = _axis_values(index, b) if b else [None]
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
            values = final.loc[final.index.intersection(members)]
            if len(values) and values[metric].notna().any():
                grid[i, j] = values[metric].mean()
                censored = metric == "horizon" and "horizon_censored" in values and \
                    values["horizon_censored"].astype(str).str.lower().eq("true").all()
                text[i][j] = ("≥" if censored else "") + (f"{grid[i, j]:.2f}" if metric == "slope" else f"{grid[i, j]:.0f}")
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
            tick.set_color(ARCH_COLOURS.get(v, "black"))
    ax.set_xticks(range(len(cols_v)))
    ax.set_xticklabels([format_value(v) for v in cols_v] if b else [""])
    ax.set_xlabel(KEY_LABELS[b] if b else "")
    ax.set_ylabel(KEY_LABELS[a])
    ax.grid(False)
    ax.spines[:].set_visible(False)
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.set_label(label, fontsize=6)
    bar.ax.tick_params(labelsize=6)


@register(("gradient_summary", "runs"), "Grid", "Heatmaps")
def grid_heatmaps(gradient_summary, runs):
    """Fitted slope and gradient horizon after training over pairs of grid axes; diverged cells hatched."""
    summary = _top_layer_h(gradient_summary)
    summary = _finite(summary, ["slope", "horizon"])
    diverged = _diverged(runs)
    index = run_index(runs, summary)
    pairs = _heatmap_axes(index)
    n_archs = index["arch"].nunique() if len(index) else 1
    fig, axes = _new(2, max(len(pairs), 1), height=0.5 + 0.28 * max(n_archs, 3))
    if not pairs:
        for ax in axes.flat:
            _note(ax, f"one grid cell only: no axis to map ({NOT_IN_GRID})")
        return fig
    final = summary[summary["step"] == summary.groupby("run")["step"].transform("max")]
    final = final[~final["run"].isin(diverged) & (final["step"] > 0)].set_index("run")
    for row, (a, b) in enumerate(pairs):
        _heatmap(fig, axes[row, 0], index, final, diverged, a, b, "slope", "fitted slope (decades / step)")
        _heatmap(fig, axes[row, 1], index, final, diverged, a, b, "horizon", "gradient horizon (steps)")
    axes[0, 0].set_title("fitted slope of log10 g(k) after training")
    axes[0, 1].set_title("gradient horizon after training")
    _footer(fig, "Last checkpoint, top layer, state h; mean over seeds and all other grid axes. "
                 "Hatched: the cell has diverged runs (left out of the mean; 'div.': all diverged). "
                 "≥: horizon censored at the probe's max lag.")
    return fig


@register(("training_steps", "runs"), "Training", "Gradient norms")
def training_dynamics(training_steps, runs):
    """Global gradient norm per step per run, the clip threshold, the share of clipped steps, divergences."""
    steps = _finite(training_steps, ["grad_norm"])
    index = run_index(runs, steps)
    archs = _archs(index)
    diverged = _diverged(runs)
    info = runs.set_index("run") if runs is not None and "run" in runs else pd.DataFrame()
    ncols = min(3, max(len(archs), 1))
    nrows = max(1, math.ceil(len(archs) / ncols))
    fig, axes = _new(ncols, nrows, height=2.0, sharey=True)
    for ax, arch in zip(axes.flat, archs):
        ids = list(index[index["arch"] == arch].index)
        ax.set_title(ARCH_LABELS[arch], color=ARCH_COLOURS[arch])
        rows = steps[steps["run"].isin(ids)] if not steps.empty else steps
        if rows.empty:
            _note(ax, f"no training steps {NOT_IN_GRID}")
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
            ax.set_title(ARCH_LABELS[arch] + "\n" + ", ".join(parts), color=ARCH_COLOURS[arch], fontsize=7)
    if archs:
        _log_ticks(axes.flat[0])  # shared y: one locator for every panel, set once all data are in
    _drop_unused(fig, axes, len(archs), f"no runs {NOT_IN_GRID}")
    _footer(fig, "Every run of each arch (all grid cells and seeds); dashed: clip threshold(s); X: divergence (NaN/Inf).")
    return fig


@register(("epochs", "runs"), "Training", "Learning curves")
def learning_curves(epochs, runs):
    """Validation perplexity per epoch per arch: mean and sd over seeds at the reference slice."""
    epochs = _finite(epochs, ["valid_ppl"])
    index = run_index(runs, epochs)
    diverged = _diverged(runs)
    fig, axes = _new(1, width=COLUMN_WIDTH, height=2.6)
    ax = axes[0, 0]
    archs = _archs(index)
    chosen_all, drawn, n_div = {}, False, 0
    for arch in archs:
        ids, chosen = reference_runs(index, arch)
        chosen_all[arch] = chosen
        n_div += sum(r in diverged for r in ids)
        rows = epochs[epochs["run"].isin(ids) & ~epochs["run"].isin(diverged)] if not epochs.empty else epochs
        if rows.empty:
            continue
        stats = rows.groupby("epoch")["valid_ppl"].agg(["mean", "std", "count"]).reset_index()
        colour = ARCH_COLOURS[arch]
        ax.errorbar(stats["epoch"], stats["mean"], yerr=stats["std"].fillna(0), color=colour, marker="o",
                    markersize=3, capsize=2, linewidth=1.2, label=f"{ARCH_LABELS[arch]} (n={stats['count'].max()})")
        drawn = True
    if not drawn:
        _note(ax, f"no validation perplexities {NOT_IN_GRID}")
        return fig
    _plain_log(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation perplexity")
    n_epochs = int(epochs["epoch"].max())
    ax.xaxis.set_major_locator(FixedLocator(range(1, n_epochs + 1)) if n_epochs <= 15
                               else MaxNLocator(integer=True))
    ax.set_xlim(0.5, n_epochs + 0.5)
    ax.legend(loc="upper right")
    notes = [_slice_note(chosen_all)]
    if n_div:
        notes.append(f"{n_div} diverged run(s) left out")
    if epochs["epoch"].nunique() == 1:
        notes.append("one epoch in this grid")
    _footer(fig, "; ".join(n for n in notes if n))
    return fig


CONTRIBUTION_LAGS = (1, 5, 10, 20)


@register(("temporal_contributions", "runs"), "Theory", "Temporal contributions")
def temporal_contributions(temporal_contributions, runs):
    """Share of dL/dW_hh coming from lags beyond 1, 5, 10, 20 per arch, at initialisation and after training."""
    contributions = _top_layer(_finite(temporal_contributions, ["share_median"]))
    index = run_index(contributions)
    diverged = _diverged(runs)
    fig, axes = _new(2, height=2.4, sharey=True)
    archs = _archs(index)
    max_lag = int(contributions["lag"].max()) if not contributions.empty else 0
    thresholds = [k for k in CONTRIBUTION_LAGS if k < max_lag]
    chosen_all = {}
    for ax, (stage, title) in zip(axes[0], STAGES):
        ax.set_title(title)
        drawn = []
        for arch in archs:
            ids, chosen = reference_runs(index, arch)
            chosen_all[arch] = chosen
            rows = _stage(contributions[contributions["run"].isin(ids)], stage, diverged)
            if rows.empty or not thresholds:
                continue
            per_run = [{"run": run, "k": k, "share": group.loc[group["lag"] > k, "share_median"].sum()
                        / group["share_median"].sum()}
                       for run, group in rows.groupby("run") for k in thresholds]
            shares = pd.DataFrame(per_run).groupby("k")["share"].agg(["median", "min", "max"]).reset_index()
            shares = shares.replace(0.0, np.nan)  # underflowed: not drawn as log(0)
            colour = ARCH_COLOURS[arch]
            ax.plot(shares["k"], shares["median"], marker="o", markersize=3, color=colour, label=ARCH_LABELS[arch])
            ax.fill_between(shares["k"], shares["min"], shares["max"], color=colour, alpha=0.15, linewidth=0)
            drawn.append(shares)
        if not drawn:
            _note(ax, f"no temporal contributions {title.lower()} ({NOT_IN_GRID})")
            continue
        ax.set_yscale("log")
        ax.set_xticks(thresholds)
        ax.set_xlabel("lag threshold k (time steps)")
        if stage == "init":
            ax.set_ylabel(r"share of $\|\partial L/\partial W_{hh}\|$ from lags $> k$")
    fig.legend(handles=_arch_handles(archs), loc="outside upper center", ncol=max(len(archs), 1))
    notes = [_slice_note(chosen_all)]
    missing = [k for k in CONTRIBUTION_LAGS if k not in thresholds]
    if missing:
        notes.append(f"lags beyond {missing} exceed the probe's max lag {max_lag}")
    _footer(fig, "; ".join(n for n in notes if n))
    return fig


@register(("gradient_summary", "runs"), "Quality", "Horizon against perplexity")
def horizon_vs_quality(gradient_summary, runs):
    """Gradient horizon after training against final test perplexity, one point per run."""
    summary = _top_layer_h(gradient_summary)
    summary = _finite(summary, ["horizon"])
    fig, axes = _new(1, width=COLUMN_WIDTH, height=2.8)
    ax = axes[0, 0]
    if summary.empty or runs is None or runs.empty:
        _note(ax, f"no runs with curves {NOT_IN_GRID}")
        return fig
    final = summary[summary["step"] == summary.groupby("run")["step"].transform("max")]
    data = final.merge(_finite(runs, ["test_ppl"])[["run", "status", "test_ppl"]], on="run")
    censored = data["horizon_censored"].astype(str).str.lower().eq("true") if "horizon_censored" in data else False
    ok = data[(data["status"] == "ok") & data["test_ppl"].notna()]
    for arch in _archs(ok):
        sel = ok[ok["arch"] == arch]
        cens = censored.loc[sel.index]
        colour = ARCH_COLOURS[arch]
        ax.scatter(sel.loc[~cens, "horizon"], sel.loc[~cens, "test_ppl"], s=14, color=colour, alpha=0.8,
                   label=ARCH_LABELS[arch])
        ax.scatter(sel.loc[cens, "horizon"], sel.loc[cens, "test_ppl"], s=18, marker=">", color=colour, alpha=0.8)
    if ok.empty:
        _note(ax, "no finished run with a test perplexity")
        return fig
    _plain_log(ax)
    ax.set_xlabel("gradient horizon after training (steps)")
    ax.set_ylabel("test perplexity")
    handles = _arch_handles(_archs(ok), [Line2D([], [], marker=">", color="0.3", linestyle="none",
                                                label="censored (≥ max lag)")] if censored.any() else [])
    ax.legend(handles=[Line2D([], [], marker="o", color=h.get_color(), linestyle="none", label=h.get_label())
                       if h.get_marker() in ("None", None, "") else h for h in handles], loc="best", fontsize=6)
    n_div = int((data.drop_duplicates("run")["status"] == "diverged").sum())
    _footer(fig, f"{n_div} diverged run(s) not shown (no test perplexity)" if n_div else "")
    return fig
