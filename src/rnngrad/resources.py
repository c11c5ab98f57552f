"""Cluster resources of the heavy rules (memory, wall time), estimated from the config.

A scheduler such as SLURM kills a job that exceeds its memory or time request, and a
request far above need leaves the job waiting in the queue. These estimators size
`mem_mb` and `runtime` (minutes) of `train_model` and `probe_gradients` from what
drives the cost: parameter count (hidden size, layers, vocabulary), activations
(bptt x batch), and the number of tokens processed (tokens per epoch x epochs,
evaluation, probe windows). The throughput model is deliberately pessimistic (a slow
CPU core, Python overhead per time step), and the result is doubled; a retried job
(`attempt` > 1, e.g. after a time-out) gets proportionally more time and memory.

Vocabulary and split sizes come from the corpus's `stats.json` when it exists, else
from `DEFAULT_CORPUS_STATS` (PTB's sizes, rounded up), so the DAG builds before the
corpus is tokenised. A task run is sized by the same model through `task_sizing`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rnngrad import tasks
from rnngrad.grid import GATES

BYTES = 4  # float32 (training)
BYTES_PROBE = 8  # float64 (probe)
# PTB (Mikolov) sizes rounded up: used until stats.json exists.
DEFAULT_CORPUS_STATS = {
    "word": {"vocab_size": 10_000, "n_tokens": {"train": 930_000, "valid": 74_000, "test": 83_000}},
    "char": {"vocab_size": 60, "n_tokens": {"train": 5_200_000, "valid": 410_000, "test": 460_000}},
}
# Conservative throughput: floating-point operations per second and fixed costs.
FLOPS = {"cpu": 5e9, "cuda": 2e11}          # per CPU thread / per GPU; ~1/6 of a 2020s core
STEP_OVERHEAD_S = {"cpu": 1e-4, "cuda": 3e-4}  # per time step and layer (kernel launches, loops)
UPDATE_OVERHEAD_S = 5e-3                     # per optimizer step (clipping, metrics row)
LAPACK_FLOPS = 1e10                          # dense SVD / eigenvalues of H x H blocks (CPU)
STARTUP_S = 60.0                             # Python, torch import, token arrays
SAFETY = 2.0                                 # the result is multiplied by this
BASE_MEM_MB = {"cpu": 1000, "cuda": 3000}    # resident Python + torch (+ CUDA context)
MIN_RUNTIME_MIN = 5


def corpus_stats(stats_path: str | Path | None, level: str) -> dict:
    """{vocab_size, n_tokens: {train, valid, test}} from stats.json, or the defaults."""
    if stats_path is not None and Path(stats_path).is_file():
        stats = json.loads(Path(stats_path).read_text())
        return {"vocab_size": int(stats["vocab_size"]), "n_tokens": dict(stats["n_tokens"])}
    return DEFAULT_CORPUS_STATS[level]


def device_kind(device: str) -> str:
    """'cuda' only when the config asks for it: `auto` must fit a CPU-only node too."""
    return "cuda" if device == "cuda" else "cpu"


def gpus(device: str) -> int:
    """GPUs to request per training/probe job."""
    return 1 if device == "cuda" else 0


def parameter_count(arch: str, hidden_size: int, num_layers: int, vocab_size: int) -> int:
    """Parameters of rnngrad.model.RNNModel (embedding and input width = hidden size)."""
    gates = len(GATES[arch])
    recurrent = num_layers * gates * (2 * hidden_size * hidden_size + 2 * hidden_size)
    return vocab_size * hidden_size + recurrent + hidden_size * vocab_size + vocab_size


def flops_per_token(arch: str, hidden_size: int, num_layers: int, vocab_size: int) -> float:
    """Forward + backward floating-point operations per token (3 x 2 x multiply-adds)."""
    gates = len(GATES[arch])
    macs = num_layers * gates * 2 * hidden_size * hidden_size + hidden_size * vocab_size
    return 6.0 * macs


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def _grow(attempt: int) -> float:
    """Factor for a retried job: attempt 1 -> 1, 2 -> 2, 3 -> 3."""
    return float(max(1, attempt))


def train_tokens(cell: dict, training: dict, stats: dict) -> int:
    """Tokens trained on over all epochs (the per-epoch budget caps the train split)."""
    per_epoch = stats["n_tokens"]["train"]
    if training.get("max_tokens"):
        per_epoch = min(per_epoch, training["max_tokens"])
    return per_epoch * cell["epochs"]


def eval_tokens(cell: dict, training: dict, stats: dict) -> int:
    """Tokens evaluated: validation (at most eval_max_tokens) every epoch, the whole test split once."""
    valid = min(stats["n_tokens"]["valid"], training.get("eval_max_tokens") or math.inf)
    return int(valid * cell["epochs"] + stats["n_tokens"]["test"])


def training_seconds(cell: dict, training: dict, stats: dict, threads: int = 1) -> float:
    """Expected wall time of one training run (before the safety factor)."""
    kind = device_kind(training.get("device", "auto"))
    hidden, layers, vocab = cell["hidden_size"], cell["num_layers"], stats["vocab_size"]
    tokens = train_tokens(cell, training, stats)
    flops = FLOPS[kind] * (max(1, threads) ** 0.5 if kind == "cpu" else 1)  # threads scale poorly
    per_token = flops_per_token(cell["arch"], hidden, layers, vocab)
    steps = math.ceil(tokens / (cell["bptt"] * cell["batch_size"]))
    compute = tokens * per_token / flops + eval_tokens(cell, training, stats) * per_token / 3 / flops
    overhead = steps * (cell["bptt"] * layers * STEP_OVERHEAD_S[kind] + UPDATE_OVERHEAD_S)
    # Singular values and eigenvalues of every H x H gate block, every `spectral_every` steps.
    spectral_flops = 30.0 * len(GATES[cell["arch"]]) * layers * hidden ** 3
    spectral = math.ceil(steps / training.get("spectral_every", 50)) * spectral_flops / LAPACK_FLOPS
    return STARTUP_S + compute + overhead + spectral


def training_runtime(cell: dict, training: dict, stats: dict, threads: int = 1, attempt: int = 1) -> int:
    """Wall-time request of `train_model` in minutes."""
    seconds = training_seconds(cell, training, stats, threads) * SAFETY * _grow(attempt)
    return max(MIN_RUNTIME_MIN, math.ceil(seconds / 60))


def training_mem_mb(cell: dict, training: dict, stats: dict, optimizer_states: int | None = None,
                    attempt: int = 1) -> int:
    """Host memory request of `train_model` in MB.

    Parameters x (weights, gradients, optimizer state, checkpoint copy) + activations
    of one bptt x batch chunk (gates per layer and the logits with their gradient)
    + the token arrays, times the safety factor, plus the runtime's resident size.
    """
    kind = device_kind(training.get("device", "auto"))
    hidden, layers, vocab = cell["hidden_size"], cell["num_layers"], stats["vocab_size"]
    if optimizer_states is None:
        optimizer_states = 2 if cell.get("optimizer") == "adam" else 1
    params = parameter_count(cell["arch"], hidden, layers, vocab)
    weights = params * BYTES * (3 + optimizer_states)
    positions = cell["bptt"] * max(cell["batch_size"], 1)
    activations = positions * (layers * (len(GATES[cell["arch"]]) + 2) * hidden + 3 * vocab) * BYTES * 2
    tokens = sum(stats["n_tokens"].values()) * 8 * 2  # int64 ids, plus a copy while batching
    megabytes = (weights + activations + tokens) * SAFETY / 2**20
    return _round_up((BASE_MEM_MB[kind] + megabytes) * (1 + 0.5 * (max(1, attempt) - 1)), 100)


def probe_seconds(cell: dict, probe: dict, training: dict, stats: dict, threads: int = 1) -> float:
    """Expected wall time of probing every checkpoint of one run (before the safety factor).

    Per checkpoint: `windows` unrolls of burn_in + max_lag steps with a backward pass per
    probed quantity (hidden state, cell state, input: counted as 3 backward passes), and
    on `jacobian_windows` windows per-step Jacobians (H backward passes of one step) and
    their running products and norms (a few H^3 per step). The probe runs on the CPU in
    float64 whatever `training.device` says.
    """
    hidden, layers, vocab = cell["hidden_size"], cell["num_layers"], stats["vocab_size"]
    gates = len(GATES[cell["arch"]])
    checkpoints = len(training.get("checkpoints", [0.0, 1.0]))
    length = probe["burn_in"] + probe["max_lag"] + 1
    flops = FLOPS["cpu"] * max(1, threads) ** 0.5 / 2  # float64: half the float32 rate
    per_token = flops_per_token(cell["arch"], hidden, layers, vocab)
    unroll = probe["windows"] * length * per_token * 3 / flops
    steps = probe["windows"] * length * layers * STEP_OVERHEAD_S["cpu"] * 3
    jacobian_flops = (2 * gates + 45) * hidden ** 3 * layers
    jacobian = probe.get("jacobian_windows", 0) * length * jacobian_flops / flops
    return STARTUP_S + checkpoints * (unroll + steps + jacobian)


def probe_runtime(cell: dict, probe: dict, training: dict, stats: dict, threads: int = 1,
                  attempt: int = 1) -> int:
    """Wall-time request of `probe_gradients` in minutes (the probe runs on the CPU)."""
    seconds = probe_seconds(cell, probe, training, stats, threads) * SAFETY * _grow(attempt)
    return max(MIN_RUNTIME_MIN, math.ceil(seconds / 60))


def probe_mem_mb(cell: dict, probe: dict, training: dict, stats: dict, attempt: int = 1) -> int:
    """Host memory request of `probe_gradients` in MB.

    The graph of all windows unrolled at once (gates, states and the logits of the last
    step), a retained gradient per step and probed quantity, the per-step Jacobians
    (jacobian_windows x max_lag x H x H) and the probe split's tokens.
    """
    hidden, layers, vocab = cell["hidden_size"], cell["num_layers"], stats["vocab_size"]
    gates = len(GATES[cell["arch"]])
    params = parameter_count(cell["arch"], hidden, layers, vocab)
    length = probe["burn_in"] + probe["max_lag"] + 1
    graph = probe["windows"] * length * layers * (gates + 2 + 3) * hidden * BYTES_PROBE * 2
    logits = probe["windows"] * vocab * BYTES_PROBE * 3
    jacobians = probe.get("jacobian_windows", 0) * length * hidden * hidden * BYTES_PROBE * (gates + 2)
    tokens = stats["n_tokens"][probe.get("split", "valid")] * 8
    megabytes = (params * BYTES_PROBE * 3 + graph + logits + jacobians + tokens) * SAFETY / 2**20
    return _round_up((BASE_MEM_MB["cpu"] + megabytes) * (1 + 0.5 * (max(1, attempt) - 1)), 100)


# Light rules run in the submitting process (localrules); their requests matter only when
# a local run limits memory (`--resources mem_mb=...`) or a user makes them cluster jobs.
LIGHT_RESOURCES = {"mem_mb": 2000, "runtime": 15}


def training_steps(cell: dict, training: dict, stats: dict) -> int:
    return math.ceil(train_tokens(cell, training, stats) / (cell["bptt"] * cell["batch_size"]))


def task_sizing(cell: dict, training: dict, probe: dict, task: dict) -> tuple[dict, dict, dict, dict]:
    """A task run in the terms of the language-model cost model: (cell, training, probe, stats).

    One epoch of `task.steps` batches of whole sequences (bptt = the sequence length);
    "validation" is the valid set once, "test" the test set at every checkpoint; the
    probe unrolls `windows` test sequences from step 0 (burn-in 0, max lag = length - 1).
    The vocabulary is the widest of the task's input and output layers.
    """
    shape = {key: task[key] for key in ("copy_length", "copy_symbols")}
    length = tasks.sequence_length(cell["task"], cell["T"], **shape)
    model = tasks.model_shape(cell["task"], **shape)
    width = max(model["vocab_size"] or 0, model["input_features"] or 0, model["output_size"])
    checkpoints = len(set(training.get("checkpoints", [0.0, 1.0])) | {0.0, 1.0})
    stats = {"vocab_size": width, "n_tokens": {"train": task["steps"] * cell["batch_size"] * length,
                                               "valid": task["valid_size"] * length,
                                               "test": task["test_size"] * length * checkpoints}}
    sized_cell = {**cell, "bptt": length, "epochs": 1}
    sized_training = {**training, "max_tokens": None, "eval_max_tokens": None}
    sized_probe = {**probe, "burn_in": 0, "max_lag": length - 1, "split": "test"}
    return sized_cell, sized_training, sized_probe, stats


def collect_resources(cells: list[dict], training: dict, stats: dict) -> dict:
    """mem_mb and runtime of the rules that concatenate per-run tables into one (see steps_resources)."""
    return steps_resources(sum(training_steps(cell, training, stats) for cell in cells), len(cells))


def steps_resources(rows: int, runs: int) -> dict:
    """mem_mb and runtime of concatenating `runs` runs of `rows` training steps in all.

    The largest table has one row per training step of every run (about 30 columns,
    held by pandas a few times over while concatenating and writing).
    """
    megabytes = rows * 30 * 8 * 4 / 2**20
    seconds = STARTUP_S + runs * 0.05 + rows / 2e4
    return {
        "mem_mb": _round_up(LIGHT_RESOURCES["mem_mb"] + megabytes * SAFETY, 100),
        "runtime": max(LIGHT_RESOURCES["runtime"], math.ceil(seconds * SAFETY / 60)),
    }
