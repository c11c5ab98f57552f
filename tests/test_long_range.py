"""Long-range tasks (issue 11): the generated data, baselines and metrics, task training and resume,
the probe on task sequences, bad input, the figures and table, and the pipeline end to end.

Independent references: data checked sequence by sequence in plain Python; baselines by
the baseline strategy on large samples; losses by plain torch.nn modules loaded from the
checkpoint; gradients by a cell-by-cell loop of nn.RNNCell / nn.LSTMCell with retain_grad.
"""

from __future__ import annotations

import json
import math
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402
from conftest import ROOT, job_counts, kill_and_resume, run_snakemake  # noqa: E402
from example_files import load_example  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from torch import nn  # noqa: E402

from rnngrad import figures, probe, resources, tables, tasks, training  # noqa: E402
from rnngrad.config import ConfigError, validate_config  # noqa: E402
from rnngrad.grid import expand_grid, normalise_cell, parse_run_path, run_path  # noqa: E402
from rnngrad.model import build_model, load_checkpoint  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
TASK_FIGURES = {"learnable_dependency_length", "task_learning_curves", "gradient_bridge"}


def task_config(**task):
    section = {"name": ["adding", "copy"], "T": [6], "steps": 30, "valid_size": 20, "test_size": 40,
               "copy_length": 3, "copy_symbols": 4, **task}
    return validate_config({"task": section, "probe": {"windows": 8, "jacobian_windows": 2, "fit_lags": [1, 4]},
                            "training": {"checkpoints": [0.0, 0.5, 1.0], "spectral_every": 5}})


def make_cell(task="adding", T=6, **changes):
    cell = dict(task=task, T=T, arch="lstm", hidden_size=10, num_layers=1, init="orthogonal", init_scale=1.0,
                forget_bias=1.0, lr=0.01, optimizer="adam", clip=1.0, bptt="na", batch_size=8, epochs="na", seed=0)
    return normalise_cell({**cell, **changes})


# ---------------------------------------------------------------- the data


@pytest.mark.parametrize("T", [2, 3, 10, 51])
def test_adding_target_is_the_sum_of_the_two_marked_values(T):
    inputs, targets = tasks.generate("adding", 200, T, np.random.default_rng(T))
    assert inputs.shape == (200, T, 2) and targets.shape == (200,)
    for values, target in zip(inputs, targets):
        marked = [t for t in range(T) if values[t, 1] == 1.0]
        assert len(marked) == 2 and set(values[:, 1]) <= {0.0, 1.0}
        assert marked[0] < T // 2 <= marked[1], "one marker in each half"
        assert target == pytest.approx(values[marked[0], 0] + values[marked[1], 0], abs=1e-6)
        assert 0.0 <= values[:, 0].min() and values[:, 0].max() < 1.0


@pytest.mark.parametrize("T,length,symbols", [(10, 10, 8), (20, 3, 4), (1, 1, 2)])
def test_copy_output_is_the_input_symbols_after_the_delay(T, length, symbols):
    inputs, targets = tasks.generate("copy", 50, T, np.random.default_rng(0), length, symbols)
    assert inputs.shape == targets.shape == (50, T + 2 * length)
    delimiter = symbols + 1
    for seq, out in zip(inputs.tolist(), targets.tolist()):
        shown = seq[:length]
        assert all(1 <= s <= symbols for s in shown)
        assert seq[length:] == [0] * (T - 1) + [delimiter] + [0] * length, "T - 1 blanks, delimiter, blanks"
        assert out == [0] * (T + length) + shown, "blanks, then the symbols in order"


def test_baselines_equal_their_closed_forms_on_large_samples():
    # Adding: always predicting 1 has MSE Var(U + U') = 1/6; within 4 standard errors on 200k sequences.
    _, targets = tasks.generate("adding", 200_000, 20, np.random.default_rng(1))
    squared = (1.0 - targets.astype(np.float64)) ** 2
    mse = tasks.metrics("adding", np.ones_like(targets), targets, 20)
    assert mse["loss"] == pytest.approx(squared.mean())
    assert abs(mse["loss"] - 1 / 6) < 4 * squared.std() / math.sqrt(len(squared))
    assert mse["baseline"] == 1 / 6 and abs(mse["ratio"] - 1) < 0.01 and not mse["solved"]
    # Copy: blanks for sure, then uniform over the symbols: 10 log 8 / (T + 20) for every sample.
    for T in (5, 100):
        inputs, targets = tasks.generate("copy", 2000, T, np.random.default_rng(T))
        log_probs = np.full((*targets.shape, 10), -np.inf)
        log_probs[:, : T + 10, 0] = 0.0
        log_probs[:, T + 10:, 1:9] = -math.log(8)
        result = tasks.metrics("copy", log_probs, targets, T)
        assert result["loss"] == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-12)
        assert result["baseline"] == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-15)


def test_metrics_by_hand():
    result = tasks.metrics("adding", np.array([1.0, 0.5, 1.97]), np.array([1.03, 0.4, 2.0]), 10)
    assert result["loss"] == pytest.approx((0.03 ** 2 + 0.1 ** 2 + 0.03 ** 2) / 3)
    assert result["accuracy"] == pytest.approx(2 / 3)  # |error| / 2 < 0.04 for two of three
    assert result["solved"] and result["ratio"] == pytest.approx(result["loss"] * 6)
    # Copy, 1 sequence, T = 1, copy length 2, 2 symbols (4 tokens): 5 steps, recall on the last two.
    targets = np.array([[0, 0, 0, 1, 2]])
    log_probs = np.log(np.array([[[0.7, 0.1, 0.1, 0.1]] * 3 + [[0.1, 0.6, 0.2, 0.1], [0.1, 0.6, 0.2, 0.1]]]))
    result = tasks.metrics("copy", log_probs, targets, 1, copy_length=2, copy_symbols=2)
    assert result["loss"] == pytest.approx(-(3 * math.log(0.7) + math.log(0.6) + math.log(0.2)) / 5)
    assert result["accuracy"] == 0.5 and not result["solved"]


def test_the_same_seed_gives_the_same_sets_and_other_seeds_others():
    a = tasks.eval_set("copy", 12, "test", 30, data_seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, tasks.eval_set("copy", 12, "test", 30, data_seed=3)))
    assert not np.array_equal(a[0], tasks.eval_set("copy", 12, "test", 30, data_seed=4)[0])
    assert not np.array_equal(a[0], tasks.eval_set("copy", 12, "valid", 30, data_seed=3)[0])
    batch = tasks.training_batch("adding", 8, 4, data_seed=0, seed=0, step=5)
    assert np.array_equal(batch[0], tasks.training_batch("adding", 8, 4, 0, 0, 5)[0]), "a resumed step draws the same"
    for other in ({"step": 6}, {"seed": 1}, {"data_seed": 1}):
        args = {"data_seed": 0, "seed": 0, "step": 5, **other}
        assert not np.array_equal(batch[0], tasks.training_batch("adding", 8, 4, **args)[0]), other


def test_a_task_run_path_says_its_task_and_T():
    config = task_config(T=[6, 12])
    cells = expand_grid(config["grid"], config["exclude"], config["task"])
    assert len(cells) == 2 * 2 * 3  # tasks x T x the default archs
    path = run_path(cells[0])
    assert path.startswith("task~adding/T~6/arch~rnn_tanh/") and "bptt" not in path and "epochs" not in path
    assert parse_run_path(path) == cells[0]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("config,message", [
    ({"task": {"name": ["adding"], "T": [1]}},
     "config key task.T.0: 1 is out of range; allowed values are numbers >= 2"),
    ({"task": {"name": ["copy"], "T": [5, 20]}},
     "config key task.copy_length: 10 is longer than T = 5 allows; allowed values are integers 1..5"),
    ({"task": {"name": ["sorting"], "T": [5]}},
     "config key task.name.0: 'sorting' is not allowed; allowed values are ['adding', 'copy', 'selective_copy']"),
    ({"task": {"name": ["adding"], "T": [50]}, "corpus": {"level": "char"}},
     "config key corpus: applies to language-model (corpus) runs only, and this config is a task run"),
    ({"task": {"name": ["adding"], "T": [50]}, "training": {"max_tokens": 100}},
     "config key training.max_tokens: applies to language-model (corpus) runs only"),
    ({"task": {"name": ["adding"], "T": [50]}, "grid": {"bptt": [20]}},
     "config key grid.bptt: applies to language-model (corpus) runs only"),
    ({"exclude": [{"T": 50}]}, "config key exclude.0.T: applies to task runs only, and this config is a corpus run"),
    ({"task": {"name": ["adding"], "T": [50], "test_size": 10}},
     "config key probe.windows: 256 test sequences to probe, but task.test_size is 10; allowed values are 1..10"),
])
def test_bad_task_input_is_rejected_naming_the_key_and_the_allowed_values(config, message):
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert message in str(error.value)


def test_a_task_config_gets_no_corpus_defaults_and_a_corpus_config_no_task():
    config = task_config()
    assert "corpus" not in config and "bptt" not in config["grid"] and "max_lag" not in config["probe"]
    assert config["task"]["data_seed"] == 0 and config["grid"]["arch"] == ["rnn_tanh", "lstm", "gru"]
    corpus = validate_config({})
    assert "task" not in corpus and corpus["grid"]["bptt"] == [35] and corpus["corpus"]["name"] == "ptb"


@pytest.mark.slow
def test_bad_task_config_fails_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"task": {"name": ["copy"], "T": [4]}}))
    done = run_snakemake(tmp_path, "--dry-run", "--configfile", str(bad), timeout=300, check=False)
    assert done.returncode != 0
    assert "config key task.copy_length: 10 is longer than T = 4 allows" in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()


def test_task_runs_are_sized_by_their_sequences():
    config = task_config(name=["adding", "copy"], T=[20, 200], steps=3000, test_size=1000)

    def request(name, T, arch="gru"):
        cell, settings, probe_settings, stats = resources.task_sizing(make_cell(name, T, arch=arch), config["training"],
                                                                      config["probe"], config["task"])
        assert cell["bptt"] == tasks.sequence_length(name, T, 3) and probe_settings["max_lag"] == cell["bptt"] - 1
        assert stats["n_tokens"]["train"] == 3000 * 8 * cell["bptt"]
        return (resources.training_seconds(cell, settings, stats), resources.training_mem_mb(cell, settings, stats),
                resources.probe_seconds(cell, probe_settings, settings, stats))

    long, short = request("adding", 200), request("adding", 20)
    assert long[0] > short[0] and long[1] > short[1] and long[2] > short[2]
    assert request("copy", 200)[0] > long[0], "T + 6 steps and a wider head"


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("name", ["adding", "copy"])
def test_the_task_loss_and_checkpoints_in_plain_pytorch(tmp_path, name):
    config = task_config(name=[name])
    summary = training.train_run(make_cell(name), config["training"], None, tmp_path, task=config["task"],
                                 device="cpu", log_every_s=1e9)
    checkpoint = torch.load(tmp_path / "checkpoints" / "step_00000015.pt", weights_only=True)
    net = load_example("load_checkpoint").plain_modules(checkpoint)  # the docs' recipe, by parameter name
    inputs, targets = tasks.eval_set(name, 6, "test", 40, 0, 3, 4)
    output, _ = net["rnn"](net["embedding"](torch.as_tensor(inputs).transpose(0, 1)))
    logits = net["decoder"](output).double()
    if name == "adding":
        loss = ((logits[-1, :, 0] - torch.as_tensor(targets).double()) ** 2).mean()
    else:
        log_probs = torch.log_softmax(logits, -1).transpose(0, 1)
        loss = -log_probs.gather(-1, torch.as_tensor(targets)[..., None]).mean()
    evaluations = pd.read_csv(tmp_path / "evaluations.csv")
    assert evaluations["step"].tolist() == [0, 15, 30]
    assert evaluations.loc[1, "test_loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert evaluations.loc[1, "test_ratio"] == pytest.approx(loss.item() / tasks.baseline(name, 6, 3, 4), rel=1e-5)
    assert summary["test_loss"] == evaluations["test_loss"].iloc[-1] and summary["status"] == "ok"
    assert summary["tokens_seen"] == 30 * 8 * tasks.sequence_length(name, 6, 3)
    assert pd.read_csv(tmp_path / "epochs.csv")["valid_ppl"].isna().all(), "a task has no perplexity"
    model, _ = load_checkpoint(tmp_path / "checkpoints" / "step_00000030.pt")
    assert isinstance(model.embedding, nn.Linear if name == "adding" else nn.Embedding)


def test_an_lstm_learns_a_short_adding_problem_and_the_first_solved_step_is_recorded(tmp_path):
    config = task_config(name=["adding"], T=[8], steps=400)
    settings = validate_config({**config, "training": {"checkpoints": [i / 8 for i in range(9)]}})["training"]
    cell = make_cell("adding", 8, hidden_size=16, batch_size=32)
    summary = training.train_run(cell, settings, None, tmp_path, task=config["task"], device="cpu", log_every_s=1e9)
    evaluations = pd.read_csv(tmp_path / "evaluations.csv")
    assert evaluations["test_ratio"].iloc[0] > 1 and summary["test_ratio"] < 0.1
    first = evaluations.loc[evaluations["solved"], "step"]
    assert summary["first_solved_step"] == (first.iloc[0] if len(first) else None)


def test_divergence_on_a_task_is_recorded_and_the_run_succeeds(tmp_path):
    config = task_config(name=["adding"])
    cell = make_cell("adding", arch="rnn_relu", init="identity", init_scale=3.0, optimizer="sgd", lr=1e8, clip=None)
    summary = training.train_run(cell, config["training"], None, tmp_path, task=config["task"], device="cpu")
    assert summary["status"] == "diverged" and summary["diverged_step"] <= 30
    assert (tmp_path / "evaluations.csv").exists() and (tmp_path / "summary.json").exists()


@pytest.mark.slow
def test_sigkill_and_resume_of_a_task_run_equals_an_uninterrupted_run(tmp_path):
    config = task_config(name=["copy"], steps=300)
    cell, settings = make_cell("copy", arch="gru"), validate_config(
        {**config, "training": {"checkpoints": [0.0, 0.3, 0.6, 1.0]}})["training"]
    _, run_dir, _ = kill_and_resume(cell, settings, None, tmp_path, 100, task=config["task"])
    for name in ("metrics.csv", "evaluations.csv", "epochs.csv"):
        ours, theirs = pd.read_csv(run_dir / name), pd.read_csv(tmp_path / "reference" / name)
        pd.testing.assert_frame_equal(ours.drop(columns="wall_s", errors="ignore"),
                                      theirs.drop(columns="wall_s", errors="ignore"), check_exact=True)


# ---------------------------------------------------------------- the probe


def reference_gradients(model, name, inputs, targets):
    """||dL/dh_t|| by a float64 loop of nn.RNNCell / nn.LSTMCell with retain_grad, t from the last step back."""
    size = model.hidden_size
    cell = (nn.LSTMCell(size, size) if model.arch == "lstm" else nn.RNNCell(size, size)).double()
    with torch.no_grad():
        for key in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, key).copy_(getattr(model.rnn, f"{key}_l0"))
    layer = model.embedding.double()
    x = layer(torch.as_tensor(inputs) if name == "copy" else torch.as_tensor(inputs).double())  # (W, L, H)
    h = torch.zeros(len(inputs), size, dtype=torch.float64)
    state = (h, h.clone()) if model.arch == "lstm" else h
    hidden = []
    for t in range(x.shape[1]):
        state = cell(x[:, t], state)
        h = state[0] if model.arch == "lstm" else state
        h.retain_grad()
        hidden.append(h)
        state = (h, state[1]) if model.arch == "lstm" else h
    decoder = model.decoder.double()
    if name == "adding":
        loss = ((decoder(hidden[-1])[:, 0] - torch.as_tensor(targets).double()) ** 2).sum()
    else:  # the last recall step's cross-entropy
        loss = F.cross_entropy(decoder(hidden[-1]), torch.as_tensor(targets[:, -1]), reduction="sum")
    loss.backward()
    return torch.stack([h.grad.norm(dim=-1) for h in reversed(hidden)], dim=1).numpy()  # (W, lag)


@pytest.mark.parametrize("arch", ["rnn_tanh", "lstm"])
@pytest.mark.parametrize("name", ["adding", "copy"])
def test_probe_gradients_from_the_output_loss_match_a_cell_loop(arch, name):
    model = build_model(**make_cell(name, arch=arch), **tasks.model_shape(name, 3, 4))
    inputs, targets = tasks.eval_set(name, 7, "test", 5, 0, 3, 4)
    result = probe.probe_model(model, inputs, 0, task={"name": name, "copy_length": 3}, targets=targets)
    expected = reference_gradients(model, name, inputs, targets)
    assert result["h"].shape == (1, 5, tasks.sequence_length(name, 7, 3))
    np.testing.assert_allclose(result["h"][0], expected, rtol=1e-9)


def test_probe_run_on_a_task_run_reads_its_test_sequences_and_the_dependency_lag(tmp_path):
    config = task_config(name=["copy"])
    training.train_run(make_cell("copy"), config["training"], None, tmp_path, task=config["task"], device="cpu")
    outputs = {name: tmp_path / f"{name}.csv" for name in probe.TABLES}
    frames = probe.probe_run(tmp_path / "checkpoints", None, config["probe"], outputs)
    summary = frames["summary"]
    assert set(summary["task"]) == {"copy"} and set(summary["T"]) == {6}
    assert set(summary["dependency"]) == {"last_symbol"}
    assert set(summary["dep_lag_min"]) == set(summary["dep_lag_max"]) == {6 + 3}, \
        "T + copy_length: the last shown symbol, from the last step"
    curves = frames["curves"]
    h0 = curves[(curves["state"] == "h") & (curves["step"] == 0)]
    assert h0["lag"].max() == tasks.sequence_length("copy", 6, 3) - 1 and (h0["n"] == 8).all()
    row = summary[(summary["state"] == "h") & (summary["step"] == 0)].iloc[0]
    assert row["dep_norm_log10_median"] == pytest.approx(h0.set_index("lag").loc[9, "norm_log10_median"])


# ---------------------------------------------------------------- figures and the table


def synthetic_task_tables():
    """runs.csv, task_evaluations.csv and gradient_summary.csv of a small task grid, values by hand."""
    ratio = {("rnn_tanh", 10): (0.95, 1.02), ("rnn_tanh", 40): (1.01, 0.99), ("lstm", 10): (0.002, 0.004),
             ("lstm", 40): (0.03, 0.5)}
    dep = {"rnn_tanh": -3.0, "lstm": -0.5}
    runs, evaluations, summary = [], [], []
    for (arch, T), values in ratio.items():
        for seed, value in enumerate(values):
            cell = make_cell("adding", T, arch=arch, seed=seed)
            run = run_path(cell)
            solved = value * (1 / 6) < 0.01
            runs.append({"run": run, **cell, "status": "ok", "test_ratio": value, "test_loss": value / 6,
                         "baseline": 1 / 6, "solved": solved, "first_solved_step": 50 if solved else None,
                         "test_accuracy": 0.9 if solved else 0.1})
            for step, loss in ((0, 1.0), (50, value / 6)):
                evaluations.append({"run": run, **cell, "step": step, "test_loss": loss, "baseline": 1 / 6,
                                    "test_ratio": loss * 6, "solved": loss < 0.01})
            for step in (0, 50):
                summary.append({"run": run, **cell, "step": step, "layer": 0, "state": "h",
                                "dependency": "first_marker", "dep_lag_min": T // 2 - 1, "dep_lag_max": T - 1,
                                "dep_norm_log10_median": dep[arch] * T / 10 + seed - (step > 0) * 7,
                                "dep_n_underflow": 0})
    return pd.DataFrame(runs), pd.DataFrame(evaluations), pd.DataFrame(summary)


def through_csv(frame, path):
    frame.to_csv(path, index=False)
    return pd.read_csv(path)


def test_the_task_figures_are_registered_as_task_figures_with_captions():
    assert set(figures.figures_for("task")) == TASK_FIGURES
    for name in TASK_FIGURES:
        assert figures.FIGURES[name].category == "Long-range tasks"
        assert len((ROOT / "workflow" / "report" / f"{name}.rst").read_text().split()) > 40
    assert (ROOT / "workflow" / "report" / "table_long_range.rst").exists()


def test_learnable_dependency_length_draws_each_seed_filled_when_solved(tmp_path):
    runs, _, _ = synthetic_task_tables()
    fig = figures.FIGURES["learnable_dependency_length"].function(runs=through_csv(runs, tmp_path / "runs.csv"))
    ax = fig.axes[0]
    points = []
    for collection in ax.collections:
        faces = collection.get_facecolors()  # one colour for the whole scatter
        points += [(round(float(y), 6), tuple(faces[0]) != to_rgba("white")) for _, y in collection.get_offsets()]
    expected = sorted((round(r, 6), r / 6 < 0.01) for r in runs["test_ratio"])
    assert sorted(points) == expected
    plt.close(fig)


def test_the_bridge_puts_each_run_at_its_gradient_at_initialisation(tmp_path):
    runs, _, summary = synthetic_task_tables()
    fig = figures.FIGURES["gradient_bridge"].function(gradient_summary=through_csv(summary, tmp_path / "s.csv"),
                                                      runs=through_csv(runs, tmp_path / "r.csv"))
    drawn = sorted((round(float(x), 6), round(float(y), 6)) for c in fig.axes[0].collections
                   for x, y in c.get_offsets())
    init = summary[summary["step"] == 0].set_index("run")["dep_norm_log10_median"]
    expected = sorted((round(init[run], 6), round(r, 6)) for run, r in zip(runs["run"], runs["test_ratio"]))
    assert drawn == expected, "x: the step-0 value, never a trained checkpoint's"
    plt.close(fig)


@pytest.mark.parametrize("name", ["learnable_dependency_length", "gradient_bridge"])
def test_a_diverged_run_is_an_x_a_decade_above_the_others_not_at_its_last_loss(tmp_path, name):
    runs, _, summary = synthetic_task_tables()
    runs.loc[0, ["status", "test_ratio", "solved"]] = ["diverged", 3.7e22, False]
    tables = {"runs": through_csv(runs, tmp_path / "r.csv"),
              "gradient_summary": through_csv(summary, tmp_path / "s.csv")}
    fig = figures.FIGURES[name].function(**{table: tables[table] for table in figures.FIGURES[name].tables})
    ax = fig.axes[0]
    ys = sorted(float(y) for c in ax.collections for _, y in c.get_offsets())
    assert ys[-1] == pytest.approx(10 * max(ys[-2], 1.0)), "a decade above every other run"
    assert ax.get_ylim()[1] < 100 * ys[-1], "the axis keeps the other runs' scale"
    assert "1 run(s) diverged" in " ".join(fig.texts[-1].get_text().split())
    plt.close(fig)


def test_learning_curves_draw_one_line_per_run_and_the_baseline(tmp_path):
    runs, evaluations, _ = synthetic_task_tables()
    fig = figures.FIGURES["task_learning_curves"].function(
        task_evaluations=through_csv(evaluations, tmp_path / "e.csv"), runs=through_csv(runs, tmp_path / "r.csv"))
    panels = [ax for ax in fig.axes if ax.lines]
    assert len(panels) == 2  # adding at T = 10 and 40
    for ax in panels:
        data = [line for line in ax.lines if list(line.get_xdata()) == [0, 50]]
        assert len(data) == 4  # two archs x two seeds
        assert any(np.allclose(line.get_ydata(), 1 / 6) and line.get_linestyle() == "--" for line in ax.lines)
    plt.close(fig)


def test_the_long_range_table_lists_seeds_in_order_and_counts_the_solved(tmp_path):
    runs, _, summary = synthetic_task_tables()
    table = tables.long_range_table(through_csv(runs, tmp_path / "r.csv"), through_csv(summary, tmp_path / "s.csv"))
    assert table[["task", "T", "arch"]].values.tolist() == [["adding", 10, "rnn_tanh"], ["adding", 10, "lstm"],
                                                          ["adding", 40, "rnn_tanh"], ["adding", 40, "lstm"]]
    lstm40 = table.iloc[3]
    assert lstm40["ratios"] == "0.030 / 0.500" and lstm40["solved"] == 1 and lstm40["first_solved"] == "50 / –"
    lstm10 = table.iloc[1]
    assert lstm10["ratios"] == "2.0e-03 / 4.0e-03" and lstm10["solved"] == 2 and lstm10["first_solved"] == "50 / 50"
    assert lstm10["dep_log10_init"] == pytest.approx(np.median([-0.5, 0.5]))
    assert (lstm10["dep_lag_min"], lstm10["dep_lag_max"]) == (4, 9)
    assert table.iloc[0]["ratio_mean"] == pytest.approx((0.95 + 1.02) / 2)
    runs["T"] = runs["T"].replace({10: 100, 40: 20})  # numbers sort as numbers, not as text
    runs["run"] = [run_path(row) for row in runs.to_dict("records")]
    table = tables.long_range_table(through_csv(runs, tmp_path / "r.csv"))
    assert table["T"].tolist() == [20, 20, 100, 100] and np.isnan(table["dep_log10_init"]).all()
    text = tables.display_long_range(table)
    assert text.loc[3, "solved"] == "2/2" and text.loc[3, "first solved at step"] == "50 / 50"


# ---------------------------------------------------------------- the pipeline


@pytest.mark.parametrize("name", ["test_long_range.yaml", "long_range.yaml", "test_remedies.yaml", "remedies.yaml",
                                  "test_since_2017.yaml", "since_2017.yaml"])
def test_dry_run_of_the_task_configs(tmp_path, name):
    config = validate_config(yaml.safe_load((ROOT / "config" / name).read_text()))
    done = run_snakemake(tmp_path, "--dry-run", "--configfile", str(ROOT / "config" / name), cores=1, timeout=300)
    jobs = job_counts(done.stdout)
    cells = expand_grid(config["grid"], config["exclude"], config["task"], config["arch_grid"])
    assert jobs["train_model"] == jobs["probe_gradients"] == len(cells)
    assert jobs["plot_figure"] == len(TASK_FIGURES) and "download_corpus" not in jobs


def test_long_range_config_is_what_the_issue_asks():
    config = validate_config(yaml.safe_load((ROOT / "config" / "long_range.yaml").read_text()))
    assert {"rnn_tanh", "irnn", "lstm", "gru"} <= set(config["grid"]["arch"])
    assert config["grid"]["forget_bias"] == [1.0]
    assert set(config["task"]["name"]) == {"adding", "copy"} and len(config["task"]["T"]) >= 3
    assert len(config["grid"]["seed"]) == 2


@pytest.mark.slow
def test_the_tiny_task_pipeline_end_to_end(tmp_path):
    start = time.perf_counter()
    run_snakemake(tmp_path, "--configfile", str(ROOT / "config" / "test_long_range.yaml"))
    elapsed = time.perf_counter() - start
    config = validate_config(yaml.safe_load((ROOT / "config" / "test_long_range.yaml").read_text()))
    results = tmp_path / config["results_dir"]
    runs = pd.read_csv(results / "tables" / "runs.csv")
    cells = expand_grid(config["grid"], config["exclude"], config["task"])
    assert sorted(runs["run"]) == sorted(run_path(cell) for cell in cells)
    assert list(runs.columns[:3]) == ["run", "task", "T"]
    evaluations = pd.read_csv(results / "tables" / "task_evaluations.csv")
    assert len(evaluations) == len(cells) * 3  # checkpoints at 0, 0.5, 1
    summary = pd.read_csv(results / "tables" / "gradient_summary.csv")
    for (name, T), lags in summary[summary["state"] == "h"].groupby(["task", "T"]):
        inputs, _ = tasks.eval_set(name, T, "test", config["task"]["test_size"], config["task"]["data_seed"],
                                   config["task"]["copy_length"], config["task"]["copy_symbols"])
        expected = tasks.dependency_lags(name, inputs[:config["probe"]["windows"]], T, config["task"]["copy_length"])
        headline = next(iter(expected.values()))
        assert set(lags["dep_lag_min"]) == {headline.min()} and set(lags["dep_lag_max"]) == {headline.max()}
    for name in TASK_FIGURES:
        assert (results / "figures" / f"{name}.png").stat().st_size > 5_000
    assert (results / "tables" / "long_range.md").exists()
    effective = yaml.safe_load((results / "config.yaml").read_text())
    assert "corpus" not in effective and not (tmp_path / "data").exists(), "a task run fetches no corpus"
    assert job_counts(run_snakemake(tmp_path, "-n", "--configfile",
                                    str(ROOT / "config" / "test_long_range.yaml")).stdout) == {}
    print(f"tiny task pipeline: {elapsed:.0f} s")
    assert json.loads((results / "runs" / run_path(cells[0]) / "summary.json").read_text())["task"] == cells[0]["task"]
