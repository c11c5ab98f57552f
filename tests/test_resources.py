"""Cluster resource estimators: exact parameter count, monotone in what drives the cost,
more for a retried job, and between 1x and 2x of what real steps and runs measure here."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from rnngrad import archs
from rnngrad import resources as res
from rnngrad.grid import normalise_cell
from rnngrad.model import RNNModel
from rnngrad.training import Trainer, get_batch

CELL = dict(arch="lstm", hidden_size=64, num_layers=1, init="orthogonal", init_scale=1.0,
            forget_bias=1.0, lr=1.0, optimizer="sgd", clip=5.0, bptt=35, batch_size=20, epochs=1, seed=0)
TRAINING = dict(max_tokens=None, spectral_every=50, eval_max_tokens=None, checkpoints=[0.0, 0.5, 1.0],
                device="auto", threads=1)
PROBE = dict(split="valid", windows=64, burn_in=50, max_lag=100, jacobian_windows=4)
WORD = res.DEFAULT_CORPUS_STATS["word"]


def with_(base: dict, **changes) -> dict:
    return {**base, **changes}


@pytest.mark.parametrize("arch", archs.names())
@pytest.mark.parametrize("layers", [1, 2])
def test_parameter_count_is_exact(arch, layers):
    model = RNNModel(arch, vocab_size=37, hidden_size=12, num_layers=layers)
    assert res.parameter_count(arch, 12, layers, 37) == sum(p.numel() for p in model.parameters())


def test_corpus_stats_read_from_stats_json_else_defaults(tmp_path):
    stats = {"vocab_size": 123, "n_tokens": {"train": 1000, "valid": 100, "test": 90}, "n_unk": 0}
    path = tmp_path / "stats.json"
    assert res.corpus_stats(path, "char") == res.DEFAULT_CORPUS_STATS["char"]  # not there yet
    path.write_text(json.dumps(stats))
    assert res.corpus_stats(path, "char") == {"vocab_size": 123, "n_tokens": stats["n_tokens"]}


def test_gpu_requested_only_when_config_says_cuda():
    assert res.gpus("cuda") == 1
    assert res.gpus("cpu") == 0 and res.gpus("auto") == 0
    cuda = with_(TRAINING, device="cuda")
    assert res.training_mem_mb(CELL, cuda, WORD) > res.training_mem_mb(CELL, TRAINING, WORD)  # CUDA context


@pytest.mark.parametrize("change", [
    dict(hidden_size=256), dict(num_layers=2), dict(bptt=70), dict(batch_size=80), dict(optimizer="adam"),
])
def test_training_memory_grows_with_model_and_batch(change):
    # (the estimate: requests are rounded to 100 MB)
    assert res.training_script_mb(with_(CELL, **change), TRAINING, WORD) > res.training_script_mb(CELL, TRAINING, WORD)


def test_training_memory_grows_with_vocabulary():
    big = with_(WORD, vocab_size=50_000)
    assert res.training_mem_mb(CELL, TRAINING, big) > res.training_mem_mb(CELL, TRAINING, WORD)


def test_training_runtime_grows_with_tokens_epochs_and_size():
    base = res.training_seconds(CELL, TRAINING, WORD)
    assert res.training_seconds(with_(CELL, epochs=4), TRAINING, WORD) > 3 * (base - res.STARTUP_S)
    assert res.training_seconds(with_(CELL, hidden_size=512), TRAINING, WORD) > base
    assert res.training_seconds(CELL, with_(TRAINING, max_tokens=10_000), WORD) < base
    # the per-epoch budget never exceeds the train split
    assert res.train_tokens(CELL, with_(TRAINING, max_tokens=10**12), WORD) == WORD["n_tokens"]["train"]


def test_runtime_and_memory_grow_with_attempt():
    big = with_(CELL, hidden_size=1024, epochs=10)
    first = res.training_runtime(big, TRAINING, WORD, attempt=1)
    assert first > res.MIN_RUNTIME_MIN
    assert res.training_runtime(big, TRAINING, WORD, attempt=2) >= 2 * first - 1
    assert res.training_runtime(big, TRAINING, WORD, attempt=3) > res.training_runtime(big, TRAINING, WORD, attempt=2)
    assert res.training_mem_mb(big, TRAINING, WORD, attempt=2) > res.training_mem_mb(big, TRAINING, WORD)
    assert res.probe_runtime(big, PROBE, TRAINING, WORD, attempt=2) > res.probe_runtime(big, PROBE, TRAINING, WORD)
    assert res.probe_mem_mb(big, PROBE, TRAINING, WORD, attempt=2) > res.probe_mem_mb(big, PROBE, TRAINING, WORD)


@pytest.mark.parametrize("change", [dict(windows=256), dict(max_lag=200), dict(jacobian_windows=16)])
def test_probe_cost_grows_with_windows_and_lags(change):
    probe = with_(PROBE, **change)
    assert res.probe_seconds(CELL, probe, TRAINING, WORD) > res.probe_seconds(CELL, PROBE, TRAINING, WORD)
    # Windows are unrolled up to PROBE_CHUNK and Jacobians formed JACOBIAN_CHUNK at a time.
    small = with_(PROBE, windows=16, jacobian_windows=1)
    grown = with_(small, **{key: min(value, {"windows": 64, "jacobian_windows": 4}.get(key, value))
                            for key, value in change.items()})
    assert res.probe_script_mb(CELL, grown, TRAINING, WORD) > res.probe_script_mb(CELL, small, TRAINING, WORD)


def test_probe_cost_grows_with_checkpoints():
    more = with_(TRAINING, checkpoints=[0.0, 0.1, 0.2, 0.5, 0.8, 1.0])
    assert res.probe_seconds(CELL, PROBE, more, WORD) > res.probe_seconds(CELL, PROBE, TRAINING, WORD)


def test_a_wider_state_costs_more_and_a_diagonal_jacobian_nothing_of_its_own():
    """archs.Arch.state_width: the S6's named state is H x N wide, so its probe's unroll and its training
    activations grow with N; its step Jacobians are diagonal (jacobian_cost 0): no S x S term."""
    small, large = (normalise_cell(with_(CELL, arch="s6", s6_state_size=n)) for n in (4, 16))
    for estimate in (res.probe_script_mb, res.probe_seconds):
        assert estimate(large, PROBE, TRAINING, WORD) > estimate(small, PROBE, TRAINING, WORD)
    assert res.training_script_mb(large, TRAINING, WORD) > res.training_script_mb(small, TRAINING, WORD)
    without_jacobians = dict(PROBE, jacobian_windows=0)
    assert res.probe_script_mb(large, PROBE, TRAINING, WORD) == res.probe_script_mb(large, without_jacobians,
                                                                                   TRAINING, WORD)


def test_requests_are_whole_minutes_and_round_megabytes():
    assert isinstance(res.training_runtime(CELL, TRAINING, WORD), int)
    assert res.training_mem_mb(CELL, TRAINING, WORD) % 100 == 0
    assert res.probe_mem_mb(CELL, PROBE, TRAINING, WORD) % 100 == 0


def test_collect_resources_grow_with_the_grid():
    small = res.collect_resources([CELL], TRAINING, WORD)
    large = res.collect_resources([CELL] * 1000, TRAINING, WORD)
    assert large["mem_mb"] > small["mem_mb"] >= res.LIGHT_RESOURCES["mem_mb"]
    assert large["runtime"] >= small["runtime"] >= res.LIGHT_RESOURCES["runtime"]


def best_seconds(function, repeats: int = 5, calls: int = 5) -> float:
    """Seconds per call, the best of `repeats` (the machine's speed, not its load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        times.append((time.perf_counter() - start) / calls)
    return min(times)


@pytest.mark.parametrize("arch,hidden,vocab,bptt,batch", [
    ("rnn_tanh", 16, 50, 20, 8),        # overhead-bound (the CI grid)
    ("rnn_sigmoid", 16, 50, 20, 8),     # a Python loop over time steps
    ("lstm", 128, 2000, 35, 20),        # matrix products and softmax
])
@pytest.mark.timing
def test_time_request_per_training_step_covers_a_measured_step(arch, hidden, vocab, bptt, batch):
    """The time asked for one optimizer step (the estimate times SAFETY) covers what this
    machine takes for the trainer's real step (forward, backward, clip, update), and at
    most 2.5 times that."""
    torch.set_num_threads(1)
    cell = normalise_cell(with_(CELL, arch=arch, hidden_size=hidden, bptt=bptt, batch_size=batch))
    stats = {"vocab_size": vocab, "n_tokens": {"train": bptt * batch * 10, "valid": 1, "test": 1}}
    ids = np.random.default_rng(0).integers(0, vocab, 50 * bptt * batch)
    trainer = Trainer(cell, with_(TRAINING, loss_reduction="sum_over_time"), ids, ids[:1000], ids[:1000], vocab)
    batches = itertools.cycle(trainer.starts)

    def step():
        trainer.train_step(*get_batch(trainer.train_data, next(batches), bptt))

    step()  # warm-up
    measured = best_seconds(step)
    training = with_(TRAINING, spectral_every=10**9, eval_max_tokens=1)
    asked = (res.training_seconds(cell, training, stats) - res.STARTUP_S) / 10 * res.SAFETY
    assert math.isfinite(asked)
    # The time asked must cover the step; the 2x goal is for whole jobs (benchmarks/resource_fit.py):
    # a single step timed on a quiet machine comes out at 1.6x (tanh, sigmoid) to 2.1x (LSTM), on
    # a loaded one lower, so this noisy per-step check allows 2.5x.
    assert measured <= asked <= 2.5 * measured, f"asked {asked:.5f} s/step for a step of {measured:.5f} s"


TINY_CELL = dict(CELL, arch="lstm", hidden_size=32, bptt=20, batch_size=8)
TINY_TRAINING = dict(max_tokens=300_000, spectral_every=5, eval_max_tokens=2000, checkpoints=[0.0, 0.5, 1.0],
                     device="cpu", threads=1, log_every_s=30)
TINY_PROBE = dict(split="valid", windows=128, burn_in=20, max_lag=60, jacobian_windows=16, seed=1,
                  fit_lags=[1, 20], horizon_threshold=1e-3)
MEASURE = r"""
import json, resource, sys, time
start = time.perf_counter()
kind, cell, training, probe, tokens, run = json.loads(sys.argv[1])
if kind == "train":
    from rnngrad.training import train_run
    train_run(cell, training, tokens, run, level="char")
else:
    from rnngrad.probe import TABLES, probe_run
    probe_run(run + "/checkpoints", tokens + "/valid.npy", probe, {name: f"{run}/{name}.csv" for name in TABLES})
print(json.dumps({"s": time.perf_counter() - start, "mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure_job(kind: str, token_dir, run_dir) -> dict:
    """Wall time and peak RSS of the training or probe script in a fresh Python, as a job runs it."""
    start = time.perf_counter()
    payload = json.dumps([kind, normalise_cell(TINY_CELL), TINY_TRAINING, TINY_PROBE, str(token_dir), str(run_dir)])
    done = subprocess.run([sys.executable, "-c", MEASURE, payload], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout.splitlines()[-1]), "s": time.perf_counter() - start}


def best_of_two(kind: str, token_dir, run_dir) -> dict:
    """The lower wall time and the lower peak RSS of two runs: both vary from run to run (a
    full test session once measured a training peak 40% above its usual one)."""
    runs = [measure_job(kind, token_dir, run_dir) for _ in range(2)]
    return {"s": min(run["s"] for run in runs), "mb": min(run["mb"] for run in runs)}


@pytest.mark.slow
@pytest.mark.timing
def test_requests_fit_a_real_tiny_run(tmp_path):
    """A char-level LSTM trained (~5 s) and probed in fresh Pythons, as the jobs run: the
    script estimates with their safety factors (what the requests are built from) cover
    the measured wall time and peak memory and ask for at most twice that; the requests
    add the job's Snakemake processes and the floor."""
    token_dir = tmp_path / "tokens"
    token_dir.mkdir()
    rng = np.random.default_rng(0)
    sizes = {"train": 1_000_000, "valid": 40_000, "test": 40_000}
    for split, size in sizes.items():
        np.save(token_dir / f"{split}.npy", rng.integers(0, 50, size).astype(np.int64))
    (token_dir / "stats.json").write_text(json.dumps({"vocab_size": 50, "n_tokens": sizes}))
    stats = res.corpus_stats(token_dir / "stats.json", "char")
    cell = normalise_cell(TINY_CELL)
    run_dir = tmp_path / "run"

    train = best_of_two("train", token_dir, run_dir)
    asked_s = res.training_seconds(cell, TINY_TRAINING, stats) * res.SAFETY
    asked_mb = res.training_script_mb(cell, TINY_TRAINING, stats) * res.MEM_SAFETY
    assert train["s"] <= asked_s <= 2 * train["s"], f"training: asked {asked_s:.1f} s, measured {train['s']:.1f} s"
    # Peak RSS of the same script is 460-470 MB when this test runs alone and 640-670 MB late in a
    # full `pytest` session (cause not found yet): the estimate must stay within 2x of the
    # lower, and the job's request (estimate + its Snakemake processes) must cover the higher.
    assert asked_mb <= 2 * train["mb"], f"training: asked {asked_mb:.0f} MB, measured {train['mb']:.0f}"
    assert train["mb"] <= res.training_mem_mb(cell, TINY_TRAINING, stats), f"training: measured {train['mb']:.0f} MB"

    probe = best_of_two("probe", token_dir, run_dir)
    asked_s = res.probe_seconds(cell, TINY_PROBE, TINY_TRAINING, stats) * res.SAFETY
    asked_mb = res.probe_script_mb(cell, TINY_PROBE, TINY_TRAINING, stats) * res.MEM_SAFETY
    assert probe["s"] <= asked_s <= 2 * probe["s"], f"probe: asked {asked_s:.1f} s, measured {probe['s']:.1f} s"
    assert asked_mb <= 2 * probe["mb"], f"probe: asked {asked_mb:.0f} MB, measured {probe['mb']:.0f}"
    assert probe["mb"] <= res.probe_mem_mb(cell, TINY_PROBE, TINY_TRAINING, stats), f"probe: measured {probe['mb']:.0f}"

    # The requests are these estimates plus the job's Snakemake processes, in whole minutes.
    assert res.training_mem_mb(cell, TINY_TRAINING, stats) >= asked_mb + res.SNAKEMAKE_MB - 100
    assert res.training_runtime(cell, TINY_TRAINING, stats) * 60 >= train["s"] + res.SNAKEMAKE_S


def _dry_run_jobs(tmp_path, training: dict) -> list[tuple[str, dict]]:
    """(rule, resources) of every job of a dry run of the CI config."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((repo / "config" / "test.yaml").read_text())
    config["training"].update(training)
    config.update(data_dir=str(tmp_path / "data"), results_dir=str(tmp_path / "results"))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(repo / "Snakefile"), "--cores", "2",
         "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", done.stdout):
        head = re.match(r"(?:local)?rule (\w+):", block)
        found = re.search(r"^\s+resources: (.*)$", block, re.M)
        if head and found:
            pairs = (item.split("=", 1) for item in found.group(1).split(", "))
            jobs.append((head.group(1), dict(pairs)))
    return jobs


def test_every_rule_requests_memory_and_time_and_training_a_gpu_for_cuda(tmp_path):
    """(Which rules run locally and which go to SLURM is checked by tests/test_slurm.py.)"""
    jobs = _dry_run_jobs(tmp_path, {"device": "cuda", "threads": 1})
    rules = {rule for rule, _ in jobs}
    assert {"train_model", "probe_gradients", "tokenise_corpus", "collect_runs"} <= rules
    for rule, resources in jobs:
        if rule in ("all", "models", "curves", "figures", "corpus"):  # targets: no job of their own
            continue
        assert "mem_mb" in resources and "runtime" in resources, (rule, resources)
        if rule == "train_model":
            assert resources["gpu"] == "1"
            assert int(resources["mem_mb"]) >= res.BASE_MEM_MB["cuda"]
        if rule == "probe_gradients":
            assert resources.get("gpu", "0") == "0"  # the probe runs on the CPU


def test_sizes_mirror_the_code_they_estimate():
    """resources.py does not import torch (the DAG is built without it): its copies of the
    batch and chunk sizes must follow the training and probe code."""
    import inspect

    from rnngrad import probe, training

    assert res.EVAL_BATCH_SIZE == training.EVAL_BATCH_SIZE
    assert res.PROBE_CHUNK == inspect.signature(probe.probe_model).parameters["chunk_size"].default
    assert res.JACOBIAN_CHUNK == inspect.signature(probe.layer_jacobians).parameters["windows_per_chunk"].default
