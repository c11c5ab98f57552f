"""Cluster resource estimators: exact parameter count, monotone in what drives the cost,
more for a retried job, and conservative against a measured training step."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from rnngrad import resources as res
from rnngrad.model import GATES, RNNModel

CELL = dict(arch="lstm", hidden_size=64, num_layers=1, init="orthogonal", init_scale=1.0,
            forget_bias=1.0, lr=1.0, optimizer="sgd", clip=5.0, bptt=35, batch_size=20, epochs=1, seed=0)
TRAINING = dict(max_tokens=None, spectral_every=50, eval_max_tokens=None, checkpoints=[0.0, 0.5, 1.0],
                device="auto", threads=1)
PROBE = dict(split="valid", windows=64, burn_in=50, max_lag=100, jacobian_windows=4)
WORD = res.DEFAULT_CORPUS_STATS["word"]


def with_(base: dict, **changes) -> dict:
    return {**base, **changes}


@pytest.mark.parametrize("arch", sorted(GATES))
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
    assert res.training_mem_mb(with_(CELL, **change), TRAINING, WORD) > res.training_mem_mb(CELL, TRAINING, WORD)


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
    assert res.probe_mem_mb(CELL, probe, TRAINING, WORD) > res.probe_mem_mb(CELL, PROBE, TRAINING, WORD)


def test_probe_cost_grows_with_checkpoints():
    more = with_(TRAINING, checkpoints=[0.0, 0.1, 0.2, 0.5, 0.8, 1.0])
    assert res.probe_seconds(CELL, PROBE, more, WORD) > res.probe_seconds(CELL, PROBE, TRAINING, WORD)


def test_requests_are_whole_minutes_and_round_megabytes():
    assert isinstance(res.training_runtime(CELL, TRAINING, WORD), int)
    assert res.training_mem_mb(CELL, TRAINING, WORD) % 100 == 0
    assert res.probe_mem_mb(CELL, PROBE, TRAINING, WORD) % 100 == 0


def test_collect_resources_grow_with_the_grid():
    small = res.collect_resources([CELL], TRAINING, WORD)
    large = res.collect_resources([CELL] * 1000, TRAINING, WORD)
    assert large["mem_mb"] > small["mem_mb"] >= res.LIGHT_RESOURCES["mem_mb"]
    assert large["runtime"] >= small["runtime"] >= res.LIGHT_RESOURCES["runtime"]


@pytest.mark.parametrize("arch,hidden,vocab,bptt,batch", [
    ("rnn_tanh", 16, 50, 20, 8),        # overhead-bound (the CI grid)
    ("rnn_sigmoid", 16, 50, 20, 8),     # a Python loop over time steps
    ("lstm", 128, 2000, 35, 20),        # compute-bound
])
def test_throughput_model_is_slower_than_a_measured_training_step(arch, hidden, vocab, bptt, batch):
    """The estimate per optimizer step (compute + overhead, before the x2 safety factor)
    must exceed what this machine takes for a real forward/backward/clip/update step."""
    torch.set_num_threads(1)
    cell = with_(CELL, arch=arch, hidden_size=hidden, bptt=bptt, batch_size=batch)
    stats = {"vocab_size": vocab, "n_tokens": {"train": bptt * batch * 10, "valid": 1, "test": 1}}
    model = RNNModel(arch, vocab, hidden)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tokens = torch.randint(vocab, (bptt + 1, batch))

    def step():
        logits, _ = model(tokens[:-1], model.init_hidden(batch))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), tokens[1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(5):
        step()
    measured = (time.perf_counter() - t0) / 5
    training = with_(TRAINING, spectral_every=10**9, eval_max_tokens=1)
    estimated = (res.training_seconds(cell, training, stats) - res.STARTUP_S) / 10
    assert math.isfinite(estimated)
    assert estimated > measured, f"estimated {estimated:.4f} s/step < measured {measured:.4f} s/step"


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
