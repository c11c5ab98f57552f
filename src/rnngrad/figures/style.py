"""The look shared by every figure: colours, labels, sizes, axes helpers and notes.

Conventions:
- one line style per arch everywhere, the colour and label its file declares
  (rnngrad.archs; colour-blind safe: rnngrad.archs.palette), read through `ARCH_COLOURS`,
  `ARCH_LINESTYLES` and `ARCH_LABELS`;
- gradient curves are log10 values drawn on a linear axis labelled in powers of ten,
  so a censored value (underflow, NaN in the tables) is a gap, never log(0);
- when a grid holds several values of an axis a figure does not compare, the figure
  uses one reference value per axis (`rnngrad.selection.reference_runs`) and says which
  (`slice_note`); a figure that lacks the data for a panel writes `NOT_IN_GRID` there.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colors as mcolors  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from rnngrad import archs as registry  # noqa: E402
from rnngrad.grid import format_value  # noqa: E402


class _ArchAttribute(Mapping):
    """{arch: an attribute its file declares}, read from the registry when asked (a user's arch
    registers after this module loads)."""

    def __init__(self, attribute: str):
        self.attribute = attribute

    def __getitem__(self, name):
        return getattr(registry.get(name), self.attribute)

    def __iter__(self):
        return iter(registry.names())

    def __len__(self):
        return len(registry.names())


class _KeyLabels(Mapping):
    """Axis and note labels of the grid keys, an arch's own hyperparameters' from its file."""

    SHARED = {"arch": "arch", "hidden_size": "hidden size", "num_layers": "layers", "init": "W_hh init",
              "init_scale": "init scale", "lr": "lr", "optimizer": "optimizer", "clip": "clip", "bptt": "bptt",
              "batch_size": "batch", "epochs": "epochs", "seed": "seed", "task": "task", "T": "T"}

    def _all(self) -> dict:
        own = {key: spec.get("label", key)
               for arch in registry.all_archs() for key, spec in arch.hyperparameters.items()}
        return {**self.SHARED, **own}

    def __getitem__(self, key):
        return self._all()[key]

    def __iter__(self):
        return iter(self._all())

    def __len__(self):
        return len(self._all())


ARCH_COLOURS = _ArchAttribute("colour")
ARCH_LINESTYLES = _ArchAttribute("linestyle")
ARCH_LABELS = _ArchAttribute("label")
CELL_STATE_COLOUR = "#56B4E9"  # sky blue: the LSTM's cell state c beside its h (blue), a figure of the LSTM alone
KEY_LABELS = _KeyLabels()
STAGE_TITLES = {"init": "At initialisation", "trained": "After training"}
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


def text_colour(arch: str) -> tuple:
    """An arch's colour for text (titles, tick labels): the yellow, unreadable as text on white,
    darkened to the same hue; lines and markers keep ARCH_COLOURS."""
    rgb = np.array(mcolors.to_rgb(ARCH_COLOURS.get(arch, "black")))
    luminance = float(rgb @ [0.2126, 0.7152, 0.0722])
    return tuple(rgb * 0.6) if luminance > 0.75 else tuple(rgb)


def archs(frame: pd.DataFrame) -> list[str]:
    """The archs present in `frame`, in the registry's order (vanilla first)."""
    present = set(frame["arch"]) if "arch" in frame else set()
    return [arch for arch in registry.names() if arch in present]


def new_figure(ncols: int = 1, nrows: int = 1, width: float = FULL_WIDTH, height: float = 2.4, **kwargs):
    """A figure of nrows x ncols panels (axes always 2-D), `height` inches per row."""
    with plt.rc_context(RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, height * nrows), squeeze=False,
                                 layout="constrained", **kwargs)
    return fig, axes


def slice_note(chosen_per_arch: dict[str, dict]) -> str:
    """'reference slice: init scale 1, clip 5' for the axes a figure held at a reference value."""
    merged: dict[str, set] = {}
    for chosen in chosen_per_arch.values():
        for key, value in chosen.items():
            merged.setdefault(key, set()).add(format_value(value))
    if not merged:
        return ""
    parts = [f"{KEY_LABELS[key]} {'/'.join(sorted(values))}" for key, values in merged.items()]
    return "reference slice: " + ", ".join(parts)


def note(ax, text: str, where: str = "center") -> None:
    """Write an explanation in an axes; a centred note also blanks the empty panel."""
    if where == "center":
        ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=7,
                color="0.35", wrap=True)
        ax.set_axis_off()  # not set_yticks([]): that would also clear axes sharing this one
    else:
        ax.text(0.02, 0.02, text, transform=ax.transAxes, ha="left", va="bottom", fontsize=6,
                color="0.35")


def drop_unused(fig, axes, used: int, empty_note: str) -> None:
    """Remove panels beyond the used ones; with none used, say why the figure is empty."""
    if not used:
        note(axes.flat[0], empty_note)
        used = 1
    for ax in list(axes.flat)[used:]:
        fig.delaxes(ax)


def footer(fig, text: str) -> None:
    """A note under the figure, first letter capitalised (savefig's tight bounding box takes it in)."""
    if text:  # wrapped to the figure's width (about 24 characters per inch at 6 pt)
        text = textwrap.fill(text[0].upper() + text[1:], width=int(24 * fig.get_figwidth()))
        fig.text(0.01, -0.01, text, ha="left", va="top", fontsize=6, color="0.35")


def join_notes(*notes: str) -> str:
    """The non-empty notes, joined by '; '."""
    return "; ".join(n for n in notes if n)


def powers_of_ten(ax, axis: str = "y") -> None:
    """Label an axis holding log10 values as 10^n at integer n."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(MaxNLocator(nbins=6, integer=True))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"$10^{{{int(round(v))}}}$"))


def plain_log(ax) -> None:
    """Log y axis labelled in plain numbers (perplexities: 100, 200, 500)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def log_ticks(ax) -> None:
    """Log y axis: 1-2-5 labels in plain numbers over a narrow range, decades over a wide one."""
    low, high = ax.get_ylim()
    if low > 0 and math.log10(high / low) < 3:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def limits(ax, values: list) -> None:
    """y range of the data (and 10^0), so bound lines and empty bands never stretch it."""
    finite = np.concatenate([np.asarray(v, dtype=float)[np.isfinite(v)] for v in values] or [np.array([])])
    if finite.size:
        low, high = finite.min(), max(finite.max(), 0.0)
        span = max(high - low, 1.0)
        ax.set_ylim(low - 0.05 * span, high + 0.08 * span)


def arch_handles(archs, extra=()) -> list:
    """Legend lines, one per arch in its colour and line style, then `extra`."""
    handles = [Line2D([], [], color=ARCH_COLOURS[a], linestyle=ARCH_LINESTYLES[a], label=ARCH_LABELS[a]) for a in archs]
    return handles + list(extra)
