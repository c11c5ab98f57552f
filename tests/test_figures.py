"""Figures, paper tables, their shared cell selection and the rerun-only-figures behaviour of the workflow.

Figure functions are tested on synthetic tables with the pipeline's columns
(tests/synthetic_tables.py), written to CSV and read back as the rule does, on the full
synthetic grid and on degenerate grids (one seed, one cell, no LSTM, no vanilla RNN);
what a figure draws is checked against numbers computed here by hand or in closed form.
"""

from __future__ import annotations

import ast
import math
import re
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from conftest import job_counts, run_snakemake, tiny_grid  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from rnngrad import figures, selection, tables  # noqa: E402
from rnngrad.figures import style  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_tables import make_tables, write_tables  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_FIGURES = {
    "gradient_vs_distance", "lstm_cell_state", "training_evolution", "init_scale_effect",
    "theory_vs_measurement", "grid_heatmaps", "training_dynamics", "learning_curves",
    "temporal_contributions", "horizon_vs_quality",
}
CORPUS_FIGURES = set(figures.figures_for("corpus"))  # a language-model grid draws these
DEGENERATE = {
    "one_seed_one_hidden": {"seed": [0], "hidden_size": [64], "clip": [5.0]},
    "no_lstm": {"arch": ["rnn_tanh", "gru"], "seed": [0], "hidden_size": [32], "forget_bias": [1.0]},
    "one_cell": {"arch": ["rnn_tanh"], "init_scale": [1.0], "seed": [0], "hidden_size": [32], "clip": [5.0],
                 "epochs": [1]},
    "gated_only": {"arch": ["lstm", "gru"], "seed": [0], "hidden_size": [32], "init_scale": [1.0],
                   "forget_bias": [1.0]},
    "two_layers": {"arch": ["rnn_sigmoid", "lstm"], "num_layers": [2], "seed": [0, 1], "hidden_size": [32],
                   "init_scale": [0.5], "forget_bias": [0.0, 1.0], "clip": [None]},
}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def read_back(frames: dict[str, pd.DataFrame], directory: Path) -> dict[str, pd.DataFrame]:
    """The tables as a rule sees them: through CSV."""
    paths = write_tables(frames, directory)
    return {name: pd.read_csv(path, low_memory=False) for name, path in paths.items()}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tables")
    return read_back(make_tables(steps=60), directory), directory


def draw(name: str, frames: dict[str, pd.DataFrame]):
    spec = figures.FIGURES[name]
    with plt.rc_context(style.RC):
        return spec.function(**{table: frames[table] for table in spec.tables})


def texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def test_registry_has_every_figure_with_known_tables():
    assert set(figures.figures_for("corpus")) == EXPECTED_FIGURES
    assert set(figures.FIGURES) == EXPECTED_FIGURES | set(figures.figures_for("task"))  # tests/test_long_range.py
    for spec in figures.FIGURES.values():
        assert spec.tables and set(spec.tables) <= set(figures.TABLES)
        assert spec.category and spec.subcategory


def test_every_caption_exists_and_names_its_figure_content():
    for name in figures.FIGURES:
        caption = (ROOT / "workflow" / "report" / f"{name}.rst").read_text()
        assert len(caption.split()) > 40, name
    for name in tables.PAPER_TABLES:
        assert (ROOT / "workflow" / "report" / f"table_{name}.rst").exists()


@pytest.mark.parametrize("name", sorted(EXPECTED_FIGURES))
def test_figure_writes_png_and_pdf(synthetic, tmp_path, name):
    _, directory = synthetic
    paths = {table: str(directory / f"{table}.csv") for table in figures.TABLES}
    png, pdf = tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"
    figures.draw_figure(name, paths, png, pdf)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
    assert not list(tmp_path.glob(".*tmp*")), "no temporary file left behind"


@pytest.mark.parametrize("grid", sorted(DEGENERATE))
def test_figures_degrade_gracefully(tmp_path, grid):
    frames = read_back(make_tables(DEGENERATE[grid], steps=40), tmp_path)
    for name in sorted(EXPECTED_FIGURES):
        fig = draw(name, frames)
        pdf = tmp_path / f"{name}.pdf"  # one format here (drawing is the same); PNG+PDF tested above
        fig.savefig(pdf, bbox_inches="tight")
        plt.close(fig)
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1_000, (grid, name)


def test_missing_axes_are_named_not_crashed(tmp_path):
    frames = read_back(make_tables(DEGENERATE["no_lstm"], steps=40), tmp_path / "a")
    assert "not in this grid" in texts(draw("lstm_cell_state", frames))
    frames = read_back(make_tables(DEGENERATE["gated_only"], steps=40), tmp_path / "b")
    assert "not in this grid" in texts(draw("init_scale_effect", frames))
    assert "not in this grid" in texts(draw("theory_vs_measurement", frames))
    frames = read_back(make_tables(DEGENERATE["one_cell"], steps=40), tmp_path / "c")
    assert "not in this grid" in texts(draw("grid_heatmaps", frames))
    assert "One epoch in this grid" in texts(draw("learning_curves", frames))


def test_arch_colours_are_distinct_and_used_everywhere(synthetic):
    frames, _ = synthetic
    assert len(set(style.ARCH_COLOURS.values())) == len(style.ARCH_COLOURS)
    fig = draw("gradient_vs_distance", frames)
    legend = {t.get_text(): h.get_color() for h, t in zip(fig.legends[0].legend_handles, fig.legends[0].texts)}
    for arch in ("rnn_tanh", "rnn_sigmoid", "lstm", "gru", "orthogonal_rnn", "indrnn", "lru"):
        assert matplotlib.colors.same_color(legend[style.ARCH_LABELS[arch]], style.ARCH_COLOURS[arch])
    fig = draw("horizon_vs_quality", frames)
    colours = {tuple(np.round(c.get_facecolor()[0][:3], 3)) for c in fig.axes[0].collections if len(c.get_offsets())}
    assert colours <= {tuple(np.round(matplotlib.colors.to_rgb(c), 3)) for c in style.ARCH_COLOURS.values()}


def test_pascanu_bound_dashed_for_vanilla_only(synthetic):
    frames, _ = synthetic
    fig = draw("gradient_vs_distance", frames)
    dashed = [line for ax in fig.axes for line in ax.get_lines() if line.get_linestyle() == "--"]
    dashed_colours = {matplotlib.colors.to_hex(line.get_color()) for line in dashed}
    assert style.ARCH_COLOURS["rnn_tanh"].lower() in dashed_colours
    assert style.ARCH_COLOURS["rnn_sigmoid"].lower() in dashed_colours
    assert style.ARCH_COLOURS["lstm"].lower() not in dashed_colours
    # the bound is a straight line k * log10(gamma lambda_1) through the origin
    for line in dashed:
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        assert x[0] == 0 and y[0] == 0 and np.allclose(y[1:] / x[1:], y[-1] / x[-1])


def test_censored_values_are_gaps_never_log_zero(tmp_path):
    # sigmoid RNN after training falls below the floor (-40) within the 30 lags: censored
    frames = read_back(make_tables({"seed": [0], "hidden_size": [32]}, floor=-20.0), tmp_path)
    assert frames["gradient_curves"]["norm_log10_median"].isna().any()
    fig = draw("gradient_vs_distance", frames)
    for ax in fig.axes:
        for line in ax.get_lines():
            y = np.asarray(line.get_ydata(), float)
            assert not np.isinf(y).any()
        low, _ = ax.get_ylim()
        assert low > -30, "axis stretched towards log(0)"
    markers = [line for ax in fig.axes for line in ax.get_lines() if line.get_marker() == "v"]
    assert markers, "where the median underflows, a marker says 'censored'"


def test_clipped_share_matches_the_steps_table(synthetic, tmp_path):
    frames = read_back(synthetic[0], tmp_path)  # clipped is 0/1 with an empty step 0, as training writes it
    steps = frames["training_steps"]
    clipped_runs = frames["runs"].loc[frames["runs"]["clip"].notna(), "run"]
    for arch, runs in frames["runs"][frames["runs"]["run"].isin(clipped_runs)].groupby("arch"):
        share = steps.loc[steps["run"].isin(runs["run"]), "clipped"].mean()
        assert f"clipped: {100 * share:.0f}% of steps" in texts(draw("training_dynamics", frames)), arch


def test_diverged_runs_are_shown_as_such(synthetic, tmp_path):
    frames, _ = synthetic
    n_diverged = int((frames["runs"]["status"] == "diverged").sum())
    assert n_diverged > 0
    assert re.search(r"diverged: \d+/\d+ runs", texts(draw("training_dynamics", frames)))
    fig = draw("theory_vs_measurement", frames)
    assert "diverged run" in texts(fig)
    fig = draw("grid_heatmaps", frames)
    assert any(p.get_hatch() for ax in fig.axes for p in ax.patches), "diverged cells hatched"
    unclipped = read_back(make_tables({"clip": [None], "seed": [0], "hidden_size": [32]}, steps=40), tmp_path)
    assert "diverged run(s) left out" in texts(draw("init_scale_effect", unclipped))
    assert f"{n_diverged} diverged run(s) not shown" in texts(draw("horizon_vs_quality", frames))


def test_reference_slice_prefers_scale_one_clipping_and_largest_hidden(synthetic):
    frames, _ = synthetic
    index = selection.run_index(frames["runs"])
    runs, chosen = selection.reference_runs(index, "lstm")
    assert chosen == {"hidden_size": 64, "init_scale": 1.0, "forget_bias": 1.0, "clip": 5.0}
    assert len(runs) == 2 and set(index.loc[runs, "seed"]) == {0, 1}
    runs, chosen = selection.reference_runs(index, "rnn_tanh", vary=("init_scale",))
    assert "init_scale" not in chosen and len(runs) == 6


# ---------------------------------------------------------------------------- package layout

PACKAGE = ROOT / "src" / "rnngrad"
# Twins that tables.py and figures.py each had before rnngrad.selection held them once.
SELECTION_TWINS = {"_cells", "_varying", "_value_key", "_sort_key", "_group_keys", "_sorted_cells", "_axis_values",
                   "_diverged", "_finite", "_top_layer", "_top_layer_h", "_stage", "_choose", "_distance",
                   "run_index", "varying_axes", "reference_runs"}


def defined_functions(path: Path) -> set[str]:
    return {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}


def rnngrad_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
             and node.module != "rnngrad"}
    # `from rnngrad import archs` imports rnngrad.archs
    names |= {f"rnngrad.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
              and node.module == "rnngrad" for alias in node.names}
    names |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return {name for name in names if name.startswith("rnngrad")}


def test_tables_and_figures_select_cells_through_one_module():
    for path in [PACKAGE / "tables.py", *sorted((PACKAGE / "figures").glob("*.py"))]:
        assert not defined_functions(path) & SELECTION_TWINS, path.name
    assert "rnngrad.selection" in rnngrad_imports(PACKAGE / "tables.py")
    users = {path.stem for path in (PACKAGE / "figures").glob("*.py") if "rnngrad.selection" in rnngrad_imports(path)}
    assert users == {spec.module.rsplit(".", 1)[1] for spec in figures.FIGURES.values()}


def test_one_module_per_report_category():
    modules: dict[str, set[str]] = {}
    for spec in figures.FIGURES.values():
        modules.setdefault(spec.category, set()).add(spec.module)
        assert spec.module == spec.function.__module__
    assert all(len(m) == 1 for m in modules.values()), modules
    assert len({m for ms in modules.values() for m in ms}) == len(modules), "a module holds one category"
    assert set(modules) == {"Gradient vs distance", "Theory", "Grid", "Training", "Quality", "Long-range tasks"}


def test_category_modules_import_only_the_shared_code():
    """What code_files() gives a figure job as `code` input is all the figure code it runs."""
    shared = {"rnngrad." + path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
              for path in figures.SHARED_CODE}
    for name, spec in figures.FIGURES.items():
        files = figures.code_files(name)
        assert files[0] == spec.module.removeprefix("rnngrad.").replace(".", "/") + ".py"
        assert set(files[1:]) == set(figures.SHARED_CODE) and all((PACKAGE / f).is_file() for f in files)
        imported = rnngrad_imports(PACKAGE / files[0])
        assert imported - {"rnngrad.grid"} <= shared, (name, imported - shared)
    for path in figures.SHARED_CODE:  # the shared modules reach no category module either
        assert rnngrad_imports(PACKAGE / path) <= shared | {"rnngrad.grid", "rnngrad.io"}, path


def test_a_category_belongs_to_one_module():
    from rnngrad.figures import registry
    from rnngrad.figures.registry import category

    owners = dict(registry._CATEGORY_MODULE)

    def stray(runs):
        return plt.figure()

    stray.__module__ = "rnngrad.figures.elsewhere"
    with pytest.raises(ValueError, match="category 'Theory' .* belongs to module rnngrad.figures.theory"):
        category("Theory")(("runs",), "x")(stray)
    stray.__module__ = "rnngrad.figures.theory"
    with pytest.raises(ValueError, match="module rnngrad.figures.theory holds category 'Theory'"):
        category("Not a category")(("runs",), "x")(stray)
    assert "stray" not in figures.FIGURES
    with pytest.raises(ValueError, match="no_such_table"):
        category("Theory")(("no_such_table",), "x")
    assert registry._CATEGORY_MODULE == owners, "refused registrations claim no category"


# ---------------------------------------------------------------------------- what is drawn


def median_line(ax, label: str) -> np.ndarray:
    (line,) = [line for line in ax.get_lines() if line.get_label() == label]
    return np.asarray(line.get_ydata(), float)


def two_seed_curves(tmp_path) -> dict[str, pd.DataFrame]:
    """One GRU cell, two seeds, with hand-made normalised quantiles of h (seed 1 censored at lag 4)."""
    frames = make_tables({"arch": ["gru"], "seed": [0, 1], "hidden_size": [32], "init_scale": [1.0],
                          "clip": [5.0]}, max_lag=5, steps=20)
    curves = frames["gradient_curves"]
    lag = curves["lag"].astype(float)
    seed1 = curves["seed"] == 1
    curves["norm_log10_median"] = np.where(seed1, -0.3, -0.1) * lag
    curves["norm_log10_q25"] = curves["norm_log10_median"] - np.where(seed1, 0.5, 0.2)
    curves["norm_log10_q75"] = curves["norm_log10_median"] + np.where(seed1, 0.4, 0.1)
    censored = seed1 & (lag == 4)
    curves.loc[censored, ["norm_log10_median", "norm_log10_q25"]] = np.nan
    curves.loc[censored, "n_censored"] = curves.loc[censored, "n"]
    return read_back(frames, tmp_path)


def test_gradient_line_is_the_median_over_seeds_and_unknown_where_a_seed_is_censored(tmp_path):
    frames = two_seed_curves(tmp_path)
    fig = draw("gradient_vs_distance", frames)
    line = median_line(fig.axes[0], "GRU")
    expected = np.array([(-0.1 * k - 0.3 * k) / 2 for k in range(6)])  # median of two = their mean
    expected[4] = np.nan  # seed 1's median is censored there: the median over seeds is unknown
    np.testing.assert_allclose(line, expected, equal_nan=True)
    from rnngrad.figures.distance import band

    rows = frames["gradient_curves"]
    curve = band(rows[(rows["step"] == 0) & (rows["state"] == "h")])
    low = np.array([min(-0.1 * k - 0.2, -0.3 * k - 0.5) for k in range(6)])
    high = np.array([max(-0.1 * k + 0.1, -0.3 * k + 0.4) for k in range(6)])
    low[4] = np.nan
    np.testing.assert_allclose(curve["low"], low, equal_nan=True)
    np.testing.assert_allclose(curve["high"], high)
    caption = (ROOT / "workflow" / "report" / "gradient_vs_distance.rst").read_text()
    assert "lowest of the seeds' 25th percentiles" in caption and "highest of\ntheir 75th" in caption
    assert "25th to highest per-seed 75th percentile" in " ".join(texts(fig).split()), "the figure says its band"
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:  # the docs say the same
        text = page.read_text()
        assert "bands: interquartile range" not in text and "interquartile bands" not in text, page.name


def summary_with_horizons(tmp_path, horizons: dict[tuple[str, float], list]) -> dict[str, pd.DataFrame]:
    """Three seeds per (arch, init_scale) cell; the trained h horizons set by hand (None: censored at K)."""
    max_lag = 30
    frames = make_tables({"arch": ["rnn_tanh", "gru"], "init_scale": [0.5, 1.0], "seed": [0, 1, 2],
                          "hidden_size": [32], "clip": [5.0]}, max_lag=max_lag, steps=20)
    summary = frames["gradient_summary"]
    trained = (summary["step"] == summary["step"].max()) & (summary["state"] == "h")
    for (arch, scale), values in horizons.items():
        for seed, value in enumerate(values):
            row = trained & (summary["arch"] == arch) & (summary["init_scale"] == scale) & (summary["seed"] == seed)
            assert row.sum() == 1
            summary.loc[row, "horizon"] = max_lag if value is None else value
            summary.loc[row, "horizon_censored"] = value is None
    return read_back(frames, tmp_path)


HORIZONS = {("rnn_tanh", 0.5): [10, 12, None], ("rnn_tanh", 1.0): [10, None, None],
            ("gru", 0.5): [None, None, None], ("gru", 1.0): [10, 20, 24]}
# By hand: a censored horizon is >= 30, so (10, 12, >=30) has median 12 exactly, (10, >=30, >=30)
# a median >= 30, three censored >= 30, and (10, 20, 24) is plain 20.
HORIZON_TEXTS = {("tanh RNN", "0.5"): "12", ("tanh RNN", "1"): "≥30", ("GRU", "0.5"): "≥30", ("GRU", "1"): "20"}


def heatmap_texts(ax) -> dict[tuple[str, str], str]:
    rows = [t.get_text() for t in ax.get_yticklabels()]
    cols = [t.get_text() for t in ax.get_xticklabels()]
    return {(rows[round(t.get_position()[1])], cols[round(t.get_position()[0])]): t.get_text() for t in ax.texts}


def test_heatmap_horizon_never_averages_censored_with_finite(tmp_path):
    frames = summary_with_horizons(tmp_path, HORIZONS)
    fig = draw("grid_heatmaps", frames)
    (ax,) = [ax for ax in fig.axes if "horizon" in ax.get_title()]
    assert heatmap_texts(ax) == HORIZON_TEXTS
    (image,) = ax.get_images()
    row = [t.get_text() for t in ax.get_yticklabels()].index("GRU")
    assert image.get_array()[row, 1] == 20, "the colour is the median too"
    assert "lower bound" in texts(fig)


def test_even_seed_count_gives_a_lower_bound_not_the_censored_value(tmp_path):
    frames = summary_with_horizons(tmp_path, {("gru", 1.0): [10, None, 14]})
    frames = {**frames, "gradient_summary": frames["gradient_summary"][frames["gradient_summary"]["seed"] != 2]}
    frames["runs"] = frames["runs"][frames["runs"]["seed"] != 2]
    (ax,) = [ax for ax in draw("grid_heatmaps", frames).axes if "horizon" in ax.get_title()]
    assert heatmap_texts(ax)[("GRU", "1")] == "≥20", "median of 10 and >= 30 is >= 20, not >= 30 nor 20"
    table = tables.gradient_fit_table(frames["gradient_summary"], frames["runs"])
    row = table[(table["arch"] == "gru") & (table["init_scale"] == 1.0)].iloc[0]
    assert row["horizon_trained_median"] == 20 and row["horizon_trained_median_censored"]


def test_gradient_fit_table_marks_only_medians_that_involve_censored_horizons(tmp_path):
    frames = summary_with_horizons(tmp_path, HORIZONS)
    table = tables.gradient_fit_table(frames["gradient_summary"], frames["runs"])
    text = tables.display_gradient_fits(table)
    cells = {(style.ARCH_LABELS[a], selection.format_value(s)): (h, b, c) for a, s, h, b, c in zip(
        table["arch"], table["init_scale"], table["horizon_trained_median"], table["horizon_trained_median_censored"],
        table["horizon_trained_censored"])}
    assert cells == {("tanh RNN", "0.5"): (12, False, 1), ("tanh RNN", "1"): (30, True, 2),
                     ("GRU", "0.5"): (30, True, 3), ("GRU", "1"): (20, False, 0)}
    shown = {(style.ARCH_LABELS[a], selection.format_value(s)): h
             for a, s, h in zip(table["arch"], table["init_scale"], text["horizon trained"])}
    assert shown == {("tanh RNN", "0.5"): "12 (1 censored)", ("tanh RNN", "1"): "≥30 (2 censored)",
                     ("GRU", "0.5"): "≥30 (3 censored)", ("GRU", "1"): "20"}
    assert {k: v.split(" (")[0] for k, v in shown.items()} == HORIZON_TEXTS, "table and heatmap pool alike"


@pytest.mark.parametrize("values, censored, expected", [
    ([10, 12, 30], [False, False, True], (12, False)),
    ([10, 30, 30], [False, True, True], (30, True)),
    ([10, 30], [False, True], (20, True)),
    ([5, 10, 12], [True, False, False], (10, True)),  # censored at 5 may really be 100: median >= 10
    ([10, 14, 30, 30], [False, False, True, True], (22, True)),
    ([10, 14, 20, 30], [False, False, False, True], (17, False)),
    ([np.nan, 8], [False, False], (8, False)),
])
def test_censored_median(values, censored, expected):
    assert selection.censored_median(values, censored) == expected


def test_censored_median_rejects_mismatched_flags():
    with pytest.raises(ValueError, match="3 values but 2"):
        selection.censored_median([1, 2, 3], [False, True])


def test_temporal_contributions_match_closed_form_geometric_shares(tmp_path):
    """Per-lag median shares r^k (unnormalised): the share beyond k is (r^(k+1) - r^(K+1)) / (1 - r^(K+1))."""
    frames = make_tables({"arch": ["rnn_tanh"], "seed": [0, 1, 2], "hidden_size": [32], "init_scale": [1.0],
                          "clip": [5.0]}, max_lag=30, steps=20)
    contributions = frames["temporal_contributions"]
    ratio = contributions["seed"].map({0: 0.5, 1: 0.8, 2: 0.6})
    contributions["share_median"] = 0.7 * ratio ** contributions["lag"]
    censored = (contributions["seed"] == 2) & (contributions["step"] > 0) & (contributions["lag"] == 7)
    contributions.loc[censored, "share_median"] = np.nan
    frames = read_back(frames, tmp_path)
    fig = draw("temporal_contributions", frames)
    ks = np.array([1, 5, 10, 20])

    def beyond(r):
        return (r ** (ks + 1) - r ** 31) / (1 - r ** 31)

    init, trained = fig.axes[0], fig.axes[1]
    np.testing.assert_allclose(median_line(init, "tanh RNN"), beyond(0.6), rtol=1e-12)
    # after training seed 2 is censored at lag 7: left out, the median of two seeds is their mean
    np.testing.assert_allclose(median_line(trained, "tanh RNN"), (beyond(0.5) + beyond(0.8)) / 2, rtol=1e-12)
    assert "1 checkpoint(s) with censored shares left out" in texts(fig)


def test_lstm_cell_state_is_the_total_derivative_over_its_own_lag_zero(synthetic):
    frames, _ = synthetic
    curves = frames["gradient_curves"]
    lstm_c = curves[(curves["arch"] == "lstm") & (curves["state"] == "c") & (curves["lag"] == 0)]
    lstm_h = curves[(curves["arch"] == "lstm") & (curves["state"] == "h") & (curves["lag"] == 0)]
    assert (lstm_c["log10_median"] != lstm_h["log10_median"].iloc[0]).all(), "c has its own, non-zero lag 0"
    fig = draw("lstm_cell_state", frames)
    light = [line for line in fig.axes[0].get_lines()
             if matplotlib.colors.same_color(line.get_color(), style.CELL_STATE_COLOUR) and len(line.get_xdata()) > 1]
    assert light and all(np.asarray(line.get_ydata(), float)[0] == 0 for line in light), "c starts at 10^0"
    legend = " ".join(t.get_text() for t in fig.legends[0].texts)
    assert "total derivative" in legend and r"\partial c_T" in legend
    caption = (ROOT / "workflow" / "report" / "lstm_cell_state.rst").read_text()
    assert "exactly zero" not in caption and "normalised by h" not in caption
    assert "total\nderivative" in caption or "total derivative" in caption
    assert "delta_c" in caption and "own\nvalue at lag 0" in caption


# ---------------------------------------------------------------------------- tables


def test_perplexity_table_means_sds_and_diverged(synthetic):
    frames, _ = synthetic
    table = tables.perplexity_table(frames["runs"])
    runs = selection.numeric(frames["runs"], ["init_scale"])  # 'na' for the remedies: a text column in the CSV
    cell = runs[(runs["arch"] == "gru") & (runs["hidden_size"] == 32) & (runs["init_scale"] == 0.5)
                & (runs["clip"] == 5.0)]
    row = table[(table["arch"] == "gru") & (table["hidden_size"] == 32) & (table["init_scale"] == 0.5)
                & (table["clip"] == 5.0)].iloc[0]
    assert row["seeds"] == 2 and row["diverged"] == 0
    assert math.isclose(row["test_ppl_mean"], cell["test_ppl"].mean())
    assert math.isclose(row["test_ppl_sd"], cell["test_ppl"].std(ddof=1))
    unclipped = table[(table["arch"] == "rnn_tanh") & (table["init_scale"] == 1.5) & table["clip"].isna()]
    assert (unclipped["diverged"] == 2).all() and unclipped["test_ppl_mean"].isna().all()
    assert list(table["arch"].drop_duplicates()) == [
        "rnn_tanh", "rnn_sigmoid", "lstm", "gru", "orthogonal_rnn", "indrnn", "lru"]
    assert not table["anchor"].astype(bool).any()


def test_zaremba_anchor_matches_only_its_config(tmp_path):
    zaremba = {"arch": ["lstm"], "hidden_size": [200], "num_layers": [2], "init": ["uniform"], "init_scale": [0.1],
               "forget_bias": [0.0], "clip": [5.0], "bptt": [20], "batch_size": [20], "epochs": [13], "seed": [0]}
    frames = read_back(make_tables(zaremba, steps=20, max_lag=5, fit_lags=(1, 4)), tmp_path)
    runs = frames["runs"].assign(corpus="ptb", level="word", init_range=0.1)
    table = tables.perplexity_table(runs)
    assert table["anchor_valid_ppl"].tolist() == [120.7] and table["anchor_test_ppl"].tolist() == [114.5]
    assert tables.perplexity_table(runs.assign(level="char"))["anchor"].eq("").all()
    text = tables.display_perplexity(table)
    assert "120.7 / 114.5" in text["published valid / test"].iloc[0]


def test_gradient_fit_table_init_and_trained(synthetic):
    frames, _ = synthetic
    table = tables.gradient_fit_table(frames["gradient_summary"], frames["runs"])
    lstm = table[table["arch"] == "lstm"]
    assert (lstm["slope_trained_mean"] > lstm["slope_init_mean"]).all(), "training flattens the LSTM curve"
    tanh = table[table["arch"] == "rnn_tanh"]
    all_diverged = tanh["diverged"] == tanh["seeds"]
    assert all_diverged.sum() == 2 and (tanh.loc[all_diverged, "init_scale"] == 1.5).all()
    assert tanh.loc[all_diverged, "slope_trained_mean"].isna().all()
    assert tanh.loc[all_diverged, "slope_init_mean"].notna().all()
    assert (tanh.loc[~all_diverged, "slope_trained_mean"] < -0.4).all(), "training steepens the tanh RNN's curve"
    # one cell against the synthetic summary, by hand: mean over its seeds' last checkpoints
    summary = selection.numeric(frames["gradient_summary"], ["init_scale"])  # 'na' for the remedies
    runs = summary[(summary["arch"] == "rnn_tanh") & (summary["hidden_size"] == 64) & (summary["init_scale"] == 1.0)
                   & (summary["clip"] == 5.0) & (summary["state"] == "h")]
    trained = runs[runs["step"] == runs["step"].max()]["slope"]
    row = tanh[(tanh["hidden_size"] == 64) & (tanh["init_scale"] == 1.0) & (tanh["clip"] == 5.0)].iloc[0]
    assert len(trained) == 2 and math.isclose(row["slope_trained_mean"], trained.mean())
    assert math.isclose(row["slope_trained_sd"], trained.std(ddof=1))
    assert (table["horizon_init_censored"] <= table["seeds"]).all()


def test_tables_in_three_formats(synthetic, tmp_path):
    _, directory = synthetic
    tables.make_tables(directory / "runs.csv", directory / "gradient_summary.csv", tmp_path)
    for name in tables.PAPER_TABLES:
        csv = pd.read_csv(tmp_path / f"{name}.csv")
        markdown = (tmp_path / f"{name}.md").read_text().splitlines()
        body = [line for line in markdown if line.startswith("|")]
        assert len(body) == len(csv) + 2, "header, rule, one line per row"
        assert all(line.count("|") == body[0].count("|") for line in body)
        latex = (tmp_path / f"{name}.tex").read_text()
        assert r"\begin{tabular}" in latex and r"\toprule" in latex and r"\bottomrule" in latex
        assert "rnn\\_tanh" in latex and "rnn_tanh" not in latex.replace("rnn\\_tanh", "")
        assert latex.count(r" \\") == len(csv) + 1
    assert "±" in (tmp_path / "gradient_fits.md").read_text()
    assert r"$\pm$" in (tmp_path / "gradient_fits.tex").read_text()


def test_latex_escapes_specials():
    assert tables.latex_escape("a_b & 50% ≥ #1 ±") == r"a\_b \& 50\% $\geq$ \#1 $\pm$"


# ---------------------------------------------------------------------------- workflow


snakemake = run_snakemake


@pytest.mark.slow
def test_editing_figures_reruns_only_figure_jobs(tmp_path):
    """A complete run on a tiny grid, then figure code edited: exactly the figure jobs that run it rerun.

    One category's module: that category's figures; the shared style: every figure;
    selection.py: every figure and the tables; never a training, probe or collect job.
    Snakemake reruns a job whose input is newer than its outputs AND whose checksum
    changed, so each edit changes the file's content (a bare `touch` reruns nothing).
    """
    snakefile, work, configfile, _ = tiny_grid(tmp_path)

    def run(*args):  # targets first: --configfile takes several values
        return snakemake(work, *args, "--configfile", str(configfile), snakefile=snakefile)

    def edit(path: str, old: str, new: str) -> tuple[dict, set]:
        """Change one package file; the jobs a dry run would run, and the figures among them."""
        module = snakefile.parent / "src" / "rnngrad" / path
        time.sleep(1.1)  # coarse file-system clocks: the edit must be newer than the figures
        text = module.read_text()
        assert old in text, (path, old)
        module.write_text(text.replace(old, new))
        dry = run("-n").stdout
        jobs = {rule: n for rule, n in job_counts(dry).items() if rule not in ("all", "total")}
        return jobs, set(re.findall(r"wildcards: figure=(\w+)", dry))

    run()
    results = work / "results"
    for name in CORPUS_FIGURES:
        assert (results / "figures" / f"{name}.png").stat().st_size > 5_000
        assert (results / "figures" / f"{name}.pdf").exists()
    for name in tables.PAPER_TABLES:
        for fmt in ("csv", "md", "tex"):
            assert (results / "tables" / f"{name}.{fmt}").exists()
    assert job_counts(run("-n").stdout) == {}, "a finished pipeline has nothing to do"

    theory = {name for name, spec in figures.FIGURES.items() if spec.category == "Theory"}
    assert theory == {"theory_vs_measurement", "temporal_contributions"}
    jobs, drawn = edit("figures/theory.py", "forbidden by the bound", "excluded by the bound")
    assert drawn == theory and jobs == {"plot_figure": 2}
    jobs, drawn = edit("figures/style.py", '"lines.linewidth": 1.3', '"lines.linewidth": 1.4')
    assert drawn == CORPUS_FIGURES and jobs == {"plot_figure": len(CORPUS_FIGURES)}
    jobs, drawn = edit("selection.py", "closest value wins", "the closest value wins")
    assert drawn == CORPUS_FIGURES and jobs == {"plot_figure": len(CORPUS_FIGURES), "make_tables": 1}
    run("figures")  # `snakemake figures` regenerates them from the existing tables
    assert job_counts(run("-n").stdout) == {}

    report = work / "report.html"
    run("--report", str(report))
    html = report.read_text()
    assert "hidden state against cell state" in html and "Probe settings of these results" in html
    assert "The effective configuration" in html


@pytest.mark.slow
def test_paper_config_dag_builds_in_seconds(tmp_path):
    start = time.perf_counter()
    done = snakemake(tmp_path, "--configfile", str(ROOT / "config" / "paper.yaml"), "-n", "--quiet", "rules",
                     timeout=300)
    elapsed = time.perf_counter() - start
    jobs = job_counts(done.stdout)
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    grid = config["grid"]
    assert {"rnn_tanh", "rnn_sigmoid", "rnn_relu", "irnn", "lstm", "gru", "lru", "s6"} <= set(grid["arch"])
    assert min(grid["init_scale"]) < 1 < max(grid["init_scale"]) and 1.0 in grid["init_scale"]
    assert None in grid["clip"] and len(grid["seed"]) >= 3 and set(grid["forget_bias"]) == {0.0, 1.0}
    assert jobs["train_model"] == jobs["probe_gradients"] >= 500
    assert jobs["plot_figure"] == len(CORPUS_FIGURES)
    assert elapsed < 120, f"dry run took {elapsed:.0f} s"
