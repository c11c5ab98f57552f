"""Report category "Quality": what the gradient measurements say about the trained model's quality."""

from __future__ import annotations

from matplotlib.lines import Line2D

from rnngrad.figures.registry import category
from rnngrad.figures.style import (
    ARCH_COLOURS,
    ARCH_LABELS,
    COLUMN_WIDTH,
    NOT_IN_GRID,
    arch_handles,
    archs,
    footer,
    new_figure,
    note,
    plain_log,
)
from rnngrad.selection import at_stage, is_censored, numeric, top_layer_state

figure = category("Quality")


@figure(("gradient_summary", "runs"), "Horizon against perplexity")
def horizon_vs_quality(gradient_summary, runs):
    """Gradient horizon after training against final test perplexity, one point per run."""
    summary = numeric(top_layer_state(gradient_summary, "h"), ["horizon"])
    fig, axes = new_figure(1, width=COLUMN_WIDTH, height=2.8)
    ax = axes[0, 0]
    if summary.empty or runs is None or runs.empty:
        note(ax, f"no runs with curves {NOT_IN_GRID}")
        return fig
    trained = at_stage(summary, "trained", diverged=set())  # diverged runs: counted below
    data = trained.merge(numeric(runs, ["test_ppl"])[["run", "status", "test_ppl"]], on="run")
    censored = is_censored(data["horizon_censored"])
    ok = data[(data["status"] == "ok") & data["test_ppl"].notna()]
    for arch in archs(ok):
        sel = ok[ok["arch"] == arch]
        cens = censored.loc[sel.index]
        colour = ARCH_COLOURS[arch]
        ax.scatter(sel.loc[~cens, "horizon"], sel.loc[~cens, "test_ppl"], s=14, color=colour, alpha=0.8,
                   label=ARCH_LABELS[arch])
        ax.scatter(sel.loc[cens, "horizon"], sel.loc[cens, "test_ppl"], s=18, marker=">", color=colour, alpha=0.8)
    if ok.empty:
        note(ax, "no finished run with a test perplexity")
        return fig
    plain_log(ax)
    ax.set_xlabel("gradient horizon after training (steps)")
    ax.set_ylabel("test perplexity")
    handles = arch_handles(archs(ok), [Line2D([], [], marker=">", color="0.3", linestyle="none",
                                              label="censored (≥ max lag)")] if censored[ok.index].any() else [])
    ax.legend(handles=[Line2D([], [], marker="o", color=h.get_color(), linestyle="none", label=h.get_label())
                       if h.get_marker() in ("None", None, "") else h for h in handles], loc="best", fontsize=6)
    n_div = int((runs.drop_duplicates("run")["status"] == "diverged").sum())
    footer(fig, f"{n_div} diverged run(s) not shown (no test perplexity)" if n_div else "")
    return fig
