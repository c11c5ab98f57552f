"""Figures, paper tables and the rerun-only-figures behaviour of the workflow.

Figure functions are tested on synthetic tables with the pipeline's columns
(tests/synthetic_tables.py), written to CSV and read back as the rule does, on the full
synthetic grid and on degenerate grids (one seed, one cell, no LSTM, no vanilla RNN).
"""

from __future__ import annotations

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
from conftest import job_counts, private_checkout, run_snakemake  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from rnngrad import figures, tables  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_tables import make_tables, write_tables  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_FIGURES = {
    "gradient_vs_distance", "lstm_cell_state", "training_evolution", "init_scale_effect",
    "theory_vs_measurement", "grid_heatmaps", "training_dynamics", "learning_curves",
    "temporal_contributions", "horizon_vs_quality",
}
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
    with plt.rc_context(figures.RC):
        return spec.function(**{table: frames[table] for table in spec.tables})


def texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def test_registry_has_every_figure_with_known_tables():
    assert set(figures.FIGURES) == EXPECTED_FIGURES
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
    assert "one epoch in this grid" in texts(draw("learning_curves", frames))


def test_arch_colours_are_distinct_and_used_everywhere(synthetic):
    frames, _ = synthetic
    assert len(set(figures.ARCH_COLOURS.values())) == len(figures.ARCH_COLOURS)
    fig = draw("gradient_vs_distance", frames)
    legend = {t.get_text(): h.get_color() for h, t in zip(fig.legends[0].legend_handles, fig.legends[0].texts)}
    for arch in ("rnn_tanh", "rnn_sigmoid", "lstm", "gru"):
        assert matplotlib.colors.same_color(legend[figures.ARCH_LABELS[arch]], figures.ARCH_COLOURS[arch])
    fig = draw("horizon_vs_quality", frames)
    colours = {tuple(np.round(c.get_facecolor()[0][:3], 3)) for c in fig.axes[0].collections if len(c.get_offsets())}
    assert colours <= {tuple(np.round(matplotlib.colors.to_rgb(c), 3)) for c in figures.ARCH_COLOURS.values()}


def test_pascanu_bound_dashed_for_vanilla_only(synthetic):
    frames, _ = synthetic
    fig = draw("gradient_vs_distance", frames)
    dashed = [line for ax in fig.axes for line in ax.get_lines() if line.get_linestyle() == "--"]
    dashed_colours = {matplotlib.colors.to_hex(line.get_color()) for line in dashed}
    assert figures.ARCH_COLOURS["rnn_tanh"].lower() in dashed_colours
    assert figures.ARCH_COLOURS["rnn_sigmoid"].lower() in dashed_colours
    assert figures.ARCH_COLOURS["lstm"].lower() not in dashed_colours
    # the bound is a straight line k * log10(gamma lambda_1) through the origin
    for line in dashed:
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        assert y[0] == 0 and np.allclose(np.diff(y, 2), 0)


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
    index = figures.run_index(frames["runs"])
    runs, chosen = figures.reference_runs(index, "lstm")
    assert chosen == {"hidden_size": 64, "init_scale": 1.0, "forget_bias": 1.0, "clip": 5.0}
    assert len(runs) == 2 and set(index.loc[runs, "seed"]) == {0, 1}
    runs, chosen = figures.reference_runs(index, "rnn_tanh", vary=("init_scale",))
    assert "init_scale" not in chosen and len(runs) == 6


# ---------------------------------------------------------------------------- tables


def test_perplexity_table_means_sds_and_diverged(synthetic):
    frames, _ = synthetic
    table = tables.perplexity_table(frames["runs"])
    runs = frames["runs"]
    cell = runs[(runs["arch"] == "gru") & (runs["hidden_size"] == 32) & (runs["init_scale"] == 0.5)
                & (runs["clip"] == 5.0)]
    row = table[(table["arch"] == "gru") & (table["hidden_size"] == 32) & (table["init_scale"] == 0.5)
                & (table["clip"] == 5.0)].iloc[0]
    assert row["seeds"] == 2 and row["diverged"] == 0
    assert math.isclose(row["test_ppl_mean"], cell["test_ppl"].mean())
    assert math.isclose(row["test_ppl_sd"], cell["test_ppl"].std(ddof=1))
    unclipped = table[(table["arch"] == "rnn_tanh") & (table["init_scale"] == 1.5) & table["clip"].isna()]
    assert (unclipped["diverged"] == 2).all() and unclipped["test_ppl_mean"].isna().all()
    assert list(table["arch"].drop_duplicates()) == ["rnn_tanh", "rnn_sigmoid", "lstm", "gru"]
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
    assert (tanh["slope_trained_mean"] < -0.4).all() or tanh["slope_trained_mean"].isna().any()
    diverged = table[(table["arch"] == "rnn_tanh") & (table["init_scale"] == 1.5) & table["clip"].isna()]
    assert diverged["slope_trained_mean"].isna().all() and diverged["slope_init_mean"].notna().all()
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
    """A complete run on a tiny grid, then figures.py edited: only plot_figure jobs rerun.

    Snakemake reruns a job whose input is newer than its outputs AND whose checksum
    changed, so the edit must change the file's content (a bare `touch` reruns nothing).
    """
    snakefile = private_checkout(tmp_path / "repo")
    work = tmp_path / "work"
    work.mkdir()
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config["grid"].update(arch=["rnn_tanh", "lstm"], init_scale=[0.5])
    config["results_dir"] = "results"
    config["data_dir"] = str(ROOT / "data")  # tokens are deterministic and shared
    configfile = work / "tiny.yaml"
    configfile.write_text(yaml.safe_dump(config))
    def run(*args):  # targets first: --configfile takes several values
        return snakemake(work, *args, "--configfile", str(configfile), snakefile=snakefile)

    run()
    results = work / "results"
    for name in figures.FIGURES:
        assert (results / "figures" / f"{name}.png").stat().st_size > 5_000
        assert (results / "figures" / f"{name}.pdf").exists()
    for name in tables.PAPER_TABLES:
        for fmt in ("csv", "md", "tex"):
            assert (results / "tables" / f"{name}.{fmt}").exists()
    assert job_counts(run("-n").stdout) == {}, "a finished pipeline has nothing to do"

    module = snakefile.parent / "src" / "rnngrad" / "figures.py"
    time.sleep(1.1)  # coarse file-system clocks: the edit must be newer than the figures
    module.write_text(module.read_text().replace('"lines.linewidth": 1.3', '"lines.linewidth": 1.4'))
    jobs = job_counts(run("-n").stdout)
    assert jobs.get("plot_figure") == len(figures.FIGURES)
    assert not {"train_model", "probe_gradients", "collect_runs", "collect_curves", "make_tables"} & set(jobs)
    run("figures")  # `snakemake figures` regenerates them from the existing tables
    assert job_counts(run("-n").stdout) == {}

    report = work / "report.html"
    run("--report", str(report))
    html = report.read_text()
    assert "cell state carries the gradient" in html and "Probe settings of these results" in html
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
    assert set(grid["arch"]) == {"rnn_tanh", "rnn_sigmoid", "rnn_relu", "irnn", "lstm", "gru"}
    assert min(grid["init_scale"]) < 1 < max(grid["init_scale"]) and 1.0 in grid["init_scale"]
    assert None in grid["clip"] and len(grid["seed"]) >= 3 and set(grid["forget_bias"]) == {0.0, 1.0}
    assert jobs["train_model"] == jobs["probe_gradients"] >= 500
    assert jobs["plot_figure"] == len(figures.FIGURES)
    assert elapsed < 120, f"dry run took {elapsed:.0f} s"
