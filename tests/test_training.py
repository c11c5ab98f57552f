"""Training: batching, schedules, outputs, divergence as data, determinism, kill-and-resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import kill_and_resume

from rnngrad import probe, training
from rnngrad.collect import collect_runs
from rnngrad.config import validate_config
from rnngrad.grid import grid_keys, normalise_cell, run_path
from rnngrad.job_keys import result_settings
from rnngrad.model import DamagedCheckpointError, load_checkpoint

VOCAB = 23
TIMINGS = ("wall_s", "tokens_per_s")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def token_dir(tmp_path):
    return write_tokens(tmp_path)


def write_tokens(tmp_path):
    """A tiny corpus with structure to learn: a noisy cycle through the vocabulary."""
    directory = tmp_path / "tokens"
    directory.mkdir()
    rng = np.random.default_rng(0)
    sizes = {"train": 4000, "valid": 400, "test": 400}
    for split, size in sizes.items():
        ids = (np.arange(size) * 3 + (rng.random(size) < 0.2) * rng.integers(0, VOCAB, size)) % VOCAB
        np.save(directory / f"{split}.npy", ids.astype(np.int64))
    (directory / "vocab.json").write_text(json.dumps([f"w{i}" for i in range(VOCAB)]))
    (directory / "stats.json").write_text(json.dumps({"vocab_size": VOCAB, "n_tokens": sizes}))
    return directory


def make_cell(**changes):
    cell = dict(arch="lstm", hidden_size=12, num_layers=2, init="orthogonal", init_scale=1.0, forget_bias=1.0,
                lr=1.0, optimizer="sgd", clip=5.0, bptt=10, batch_size=4, epochs=2, seed=0)
    return normalise_cell({**cell, **changes})


def make_training(**changes):
    settings = {"max_tokens": 1000, "checkpoints": [0.0, 0.5, 1.0], "spectral_every": 5,
                "eval_max_tokens": 200, "lr_schedule": "plateau"}
    return validate_config({"training": {**settings, **changes}})["training"]


def train(cell, settings, token_dir, run_dir, **execution):
    """train_run on the CPU, logging often (how it runs: never part of the results)."""
    return training.train_run(cell, settings, token_dir, run_dir, **{"device": "cpu", "log_every_s": 0.01, **execution})


def read_outputs(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = pd.read_csv(run_dir / "metrics.csv")
    epochs = pd.read_csv(run_dir / "epochs.csv")
    return summary, metrics, epochs


def assert_same_numbers(first, second):
    """Everything but wall-clock timings is equal, bit for bit."""
    (s1, m1, e1), (s2, m2, e2) = first, second
    assert {k: v for k, v in s1.items() if k not in TIMINGS} == {k: v for k, v in s2.items() if k not in TIMINGS}
    pd.testing.assert_frame_equal(m1.drop(columns="wall_s"), m2.drop(columns="wall_s"), check_exact=True)
    pd.testing.assert_frame_equal(e1, e2, check_exact=True)


# ---------------------------------------------------------------- data and schedules

def test_batchify_makes_contiguous_columns():
    data = training.batchify(np.arange(23), 4)
    assert data.shape == (5, 4)
    assert data[:, 1].tolist() == [5, 6, 7, 8, 9]  # column j continues the text of slice j
    inputs, targets = training.get_batch(data, 3, bptt=3)
    assert inputs.tolist() == data[3:4].tolist() and targets.tolist() == data[4:5].tolist()  # the last window is short


def test_steps_per_epoch_and_token_budget():
    assert training.steps_per_epoch(rows=101, bptt=10, batch_size=4, max_tokens=None) == 10
    assert training.steps_per_epoch(rows=101, bptt=10, batch_size=4, max_tokens=85) == 3
    assert training.steps_per_epoch(rows=101, bptt=10, batch_size=4, max_tokens=10 ** 9) == 10


def test_checkpoint_steps_include_start_and_end():
    assert training.checkpoint_steps([0.25, 0.5], 100) == [0, 25, 50, 100]
    assert training.checkpoint_steps([0.0, 1.0], 7) == [0, 7]


def test_zaremba_step_schedule():
    lrs, lr = [], 1.0
    for epoch in range(1, 14):
        lrs.append(lr)
        lr = training.next_lr("step", lr, epoch, improved=True, decay=0.5, start_epoch=5)
    assert lrs == [1, 1, 1, 1, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.5 ** 6, 0.5 ** 7, 0.5 ** 8, 0.5 ** 9]


def test_plateau_and_constant_schedules():
    assert training.next_lr("plateau", 20.0, 3, improved=True, decay=4.0, start_epoch=1) == 20.0
    assert training.next_lr("plateau", 20.0, 3, improved=False, decay=4.0, start_epoch=1) == 5.0
    assert training.next_lr("constant", 0.1, 9, improved=False, decay=4.0, start_epoch=1) == 0.1


# ---------------------------------------------------------------- one run

def test_run_writes_its_outputs(token_dir, tmp_path):
    cell, settings = make_cell(), make_training()
    run_dir = tmp_path / "runs" / run_path(cell)
    summary = train(cell, settings, token_dir, run_dir)
    saved, metrics, epochs = read_outputs(run_dir)
    assert saved == json.loads(json.dumps(summary))
    assert not (run_dir / training.PARTIAL_DIR).exists()
    steps_per_epoch = 1000 // (10 * 4)
    assert summary["status"] == "ok" and summary["steps"] == 2 * steps_per_epoch
    assert summary["tokens_seen"] == 2 * steps_per_epoch * 40
    assert all(summary[key] == cell[key] for key in grid_keys())
    # How it ran is recorded, though it is no part of the results (nor of the resume fingerprint).
    assert {key: summary[key] for key in ("device", "threads", "log_every_s", "save_every_s")} == {
        "device": "cpu", "threads": 1, "log_every_s": 0.01, "save_every_s": training.SAVE_EVERY_S}
    # One row per step plus the initialisation; spectral stats at step 0 and every 5 steps.
    assert metrics["step"].tolist() == list(range(summary["steps"] + 1))
    assert metrics.loc[metrics["sigma_max_l1"].notna(), "step"].tolist() == list(range(0, summary["steps"] + 1, 5))
    assert metrics["grad_norm"].iloc[1:].gt(0).all() and metrics["tokens"].is_monotonic_increasing
    # Learns something: the noisy cycle is easier than uniform guessing.
    assert epochs["valid_ppl"].iloc[-1] < epochs["valid_ppl"].iloc[0] < VOCAB
    assert summary["test_ppl"] < 0.8 * VOCAB and summary["valid_ppl"] == epochs["valid_ppl"].iloc[-1]
    assert epochs["epoch"].tolist() == [1, 2] and epochs["step"].tolist() == [steps_per_epoch, 2 * steps_per_epoch]
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == [f"step_{s:08d}.pt" for s in (0, steps_per_epoch, 2 * steps_per_epoch)]
    model, checkpoint = load_checkpoint(run_dir / "checkpoints" / names[1])
    assert checkpoint["progress"] == 0.5 and checkpoint["tokens_seen"] == steps_per_epoch * 40
    assert checkpoint["hparams"]["vocab_size"] == VOCAB and checkpoint["hparams"]["arch"] == "lstm"
    initial, _ = load_checkpoint(run_dir / "checkpoints" / names[0])
    assert not torch.equal(model.recurrent_weights()[0], initial.recurrent_weights()[0])


def test_clipping_is_recorded(token_dir, tmp_path):
    cell = make_cell(arch="rnn_tanh", clip=0.05, epochs=1)
    train(cell, make_training(), token_dir, tmp_path / "run")
    summary, metrics, _ = read_outputs(tmp_path / "run")
    steps = metrics.iloc[1:]
    assert (steps["clipped"] == (steps["grad_norm"] > 0.05)).all()
    assert summary["clipped_fraction"] == pytest.approx(steps["clipped"].mean())
    assert summary["clipped_fraction"] > 0.5


@pytest.mark.parametrize("optimizer,schedule", [("adam", "plateau"), ("sgd", "step")])
def test_optimizers_and_schedules_train(token_dir, tmp_path, optimizer, schedule):
    cell = make_cell(arch="gru", optimizer=optimizer, lr=0.01 if optimizer == "adam" else 1.0, epochs=3)
    summary = train(cell, make_training(lr_schedule=schedule, lr_decay=0.5, decay_start_epoch=2),
                                 token_dir, tmp_path / "run")
    _, _, epochs = read_outputs(tmp_path / "run")
    assert summary["status"] == "ok"
    if schedule == "step":
        assert epochs["current_lr"].tolist() == [1.0, 0.5, 0.25]
    assert epochs["valid_ppl"].iloc[-1] < epochs["valid_ppl"].iloc[0]


def test_divergence_is_recorded_and_the_job_succeeds(token_dir, tmp_path):
    cell = make_cell(arch="rnn_relu", init_scale=2.0, lr=100.0, clip=None)
    summary = train(cell, make_training(), token_dir, tmp_path / "run")
    saved, metrics, _ = read_outputs(tmp_path / "run")
    assert summary["status"] == saved["status"] == "diverged"
    step = summary["diverged_step"]
    assert 1 <= step < summary["planned_steps"] and summary["steps"] == step - 1
    last = metrics.iloc[-1]
    assert last["step"] == step and not (np.isfinite(last["train_loss"]) and np.isfinite(last["grad_norm"]))
    finite = metrics.iloc[1:-1]
    assert np.isfinite(finite[["train_loss", "grad_norm"]].to_numpy()).all()
    if len(finite):
        assert summary["train_loss"] == pytest.approx(finite["train_loss"].mean())
    # The weights before the failed update are kept, as a checkpoint of the last finite step.
    last_checkpoint = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    model, checkpoint = load_checkpoint(last_checkpoint)
    assert checkpoint["step"] == step - 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_test_perplexity_reads_the_whole_test_split(token_dir, tmp_path):
    """Validation reads the first eval_max_tokens tokens; the final test perplexity every test token."""
    cell = make_cell(arch="gru", epochs=1)
    summary = train(cell, make_training(eval_max_tokens=100), token_dir, tmp_path / "run")
    model, _ = load_checkpoint(sorted((tmp_path / "run" / "checkpoints").iterdir())[-1])
    # Independently: 10 contiguous streams of the test text, read in one pass with a zero start state.
    test = torch.from_numpy(np.load(token_dir / "test.npy"))
    streams = test[: len(test) // 10 * 10].view(10, -1).t()
    with torch.no_grad():
        logits, _ = model(streams[:-1], model.init_hidden(10))
    loss = F.cross_entropy(logits.flatten(0, 1), streams[1:].flatten()).item()
    assert summary["test_tokens"] == streams[1:].numel() == 390
    assert summary["test_ppl"] == pytest.approx(math.exp(loss), rel=1e-6)
    assert summary["valid_tokens"] == (101 // 10 - 1) * 10  # eval_max_tokens + 1 ids, in columns of 10


def test_a_damaged_checkpoint_names_the_file_and_the_fix(token_dir, tmp_path):
    cell = make_cell(arch="rnn_tanh", epochs=1)
    run_dir = tmp_path / "results" / "runs" / run_path(cell)
    train(cell, make_training(), token_dir, run_dir)
    damaged = sorted((run_dir / "checkpoints").iterdir())[0]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # a write cut short
    settings = validate_config({"probe": {"windows": 4, "burn_in": 5, "max_lag": 10, "fit_lags": [1, 5]}})["probe"]
    outputs = {name: tmp_path / "probe" / f"{name}.csv" for name in probe.TABLES}
    with pytest.raises(DamagedCheckpointError) as raised:
        probe.probe_run(run_dir / "checkpoints", token_dir / "valid.npy", result_settings("probe", settings), outputs)
    message = str(raised.value)
    assert f"checkpoint {damaged} is damaged" in message
    assert f"--forcerun {run_dir / 'summary.json'}" in message and f"delete {run_dir} and rerun" in message


def test_same_seed_same_numbers_other_seed_other_numbers(token_dir, tmp_path):
    cell = make_cell(arch="rnn_tanh")
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train({**cell, "seed": seed}, make_training(), token_dir, tmp_path / name)
    assert_same_numbers(read_outputs(tmp_path / "a"), read_outputs(tmp_path / "b"))
    assert read_outputs(tmp_path / "a")[0]["test_ppl"] != read_outputs(tmp_path / "c")[0]["test_ppl"]


def test_resume_state_is_read_and_a_stale_one_is_not(token_dir, tmp_path, capsys):
    """A saved state is applied (weights and progress), unless it belongs to other hyperparameters.

    The saved state is tampered with: weights of another seed and lr 0. A run that reads it
    keeps exactly those weights (SGD with lr 0); a run that ignored it would train seed 0.
    """
    cell, settings = make_cell(epochs=1), make_training()
    splits = [np.load(token_dir / f"{split}.npy") for split in ("train", "valid", "test")]
    ours = training.Trainer(cell, settings, *splits, VOCAB)
    other_seed = training.Trainer({**cell, "seed": 1}, settings, *splits, VOCAB)
    state = other_seed.state_dict()
    state["fingerprint"] = training.fingerprint(ours.hparams)
    state["progress"]["lr"] = 0.0
    partial = tmp_path / "read" / training.PARTIAL_DIR
    partial.mkdir(parents=True)
    training.save_state(partial / training.STATE_FILE, state)
    train(cell, settings, token_dir, tmp_path / "read")
    assert "resuming from step 0" in capsys.readouterr().out
    _, _, epochs = read_outputs(tmp_path / "read")
    assert epochs["current_lr"].tolist() == [0.0]
    final, _ = load_checkpoint(sorted((tmp_path / "read" / "checkpoints").iterdir())[-1])
    for name, weight in final.state_dict().items():
        assert torch.equal(weight, state["model"][name]), name
    assert not torch.equal(ours.model.state_dict()["rnn.weight_hh_l0"], state["model"]["rnn.weight_hh_l0"])

    state["fingerprint"] = "other hyperparameters"
    partial = tmp_path / "stale" / training.PARTIAL_DIR
    partial.mkdir(parents=True)
    training.save_state(partial / training.STATE_FILE, state)
    train(cell, settings, token_dir, tmp_path / "stale")
    assert "resuming" not in capsys.readouterr().out
    train(cell, settings, token_dir, tmp_path / "fresh")
    assert_same_numbers(read_outputs(tmp_path / "stale"), read_outputs(tmp_path / "fresh"))


# ---------------------------------------------------------------- kill and resume

@pytest.mark.parametrize("arch,optimizer", [("lstm", "sgd"), ("gru", "adam")])
def test_sigkill_and_resume_equals_an_uninterrupted_run(token_dir, tmp_path, arch, optimizer):
    # The killed run saves its state after every step, so the kill lands on a random
    # step: mid-epoch (hidden state and data position must be restored) or between epochs.
    cell = make_cell(arch=arch, optimizer=optimizer, lr=0.01 if optimizer == "adam" else 1.0, epochs=3)
    settings = make_training(max_tokens=None, checkpoints=[0.0, 0.3, 0.6, 1.0])
    planned = 3 * len(training.batch_starts(4000 // 4, 10))

    _, run_dir, resumed_from = kill_and_resume(cell, settings, token_dir, tmp_path, planned // 4)
    assert planned // 4 <= resumed_from < planned
    assert_same_numbers(read_outputs(tmp_path / "reference"), read_outputs(run_dir))
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "reference" / "checkpoints").iterdir())
    for name in names:
        ours = torch.load(run_dir / "checkpoints" / name, weights_only=True)["state_dict"]
        theirs = torch.load(tmp_path / "reference" / "checkpoints" / name, weights_only=True)["state_dict"]
        assert all(torch.equal(ours[key], theirs[key]) for key in theirs)


# ---------------------------------------------------------------- grid tables

def test_collect_runs_tables(token_dir, tmp_path):
    cells = [make_cell(arch="rnn_tanh", epochs=1), make_cell(arch="gru", epochs=1, seed=1)]
    dirs = [tmp_path / "runs" / run_path(cell) for cell in cells]
    for cell, run_dir in zip(cells, dirs):
        train(cell, make_training(), token_dir, run_dir)
    runs, epochs, steps = collect_runs(
        [d / "summary.json" for d in dirs], [d / "epochs.csv" for d in dirs], [d / "metrics.csv" for d in dirs])
    assert runs["run"].tolist() == [run_path(cell) for cell in cells]
    assert list(runs.columns[:len(grid_keys()) + 1]) == ["run", *grid_keys()]
    assert {"status", "valid_ppl", "test_ppl", "tokens_per_s", "clipped_fraction"} <= set(runs.columns)
    assert runs["arch"].tolist() == ["rnn_tanh", "gru"] and runs["seed"].tolist() == [0, 1]
    assert len(epochs) == 2 and set(epochs["run"]) == set(runs["run"])
    for table in (runs, epochs, steps):  # a per-step `lr` beside the grid's `lr` would clash in CSV
        assert not table.columns.duplicated().any(), list(table.columns)
    for cell, run_dir in zip(cells, dirs):
        own = steps[steps["run"] == run_path(cell)]
        assert len(own) == len(pd.read_csv(run_dir / "metrics.csv"))
        assert (own["arch"] == cell["arch"]).all()
