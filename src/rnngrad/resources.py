"""Cluster resources of the heavy rules (memory, wall time), estimated from the config.

A scheduler such as SLURM kills a job that exceeds its memory or time request, and a
request far above need leaves the job waiting in the queue and blocks an allocation for
nothing. These estimators size `mem_mb` and `runtime` (minutes) of `train_model` and
`probe_gradients` from what drives the cost: matrix products (parameter count, hidden
size, vocabulary), the softmax over the vocabulary, per-time-step overhead (bptt, layers),
the number of tokens (tokens per epoch x epochs, evaluation, probe windows and lags) and
the Jacobian products of the probe. The constants are fitted to what these jobs measure
on one core of a 2020s x86 CPU (Snakemake's `benchmark:` files, compared with the
requests by benchmarks/resource_fit.py), then multiplied by SAFETY: a first attempt asks
for about 1.2-2x what it uses there. A slower node, or a loaded one, may run out of time:
the job is then resubmitted (`retries`) with `attempt` times the time and more memory,
and training resumes from its last save.

Vocabulary and split sizes come from the corpus's `stats.json` when it exists, else
from `DEFAULT_CORPUS_STATS` (PTB's sizes, rounded up), so the DAG builds before the
corpus is tokenised. A task run is sized by the same model through `task_sizing`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rnngrad import archs, tasks

BYTES = 4  # float32 (training)
BYTES_PROBE = 8  # float64 (probe)
# PTB (Mikolov) sizes rounded up: used until stats.json exists.
DEFAULT_CORPUS_STATS = {
    "word": {"vocab_size": 10_000, "n_tokens": {"train": 930_000, "valid": 74_000, "test": 83_000}},
    "char": {"vocab_size": 60, "n_tokens": {"train": 5_200_000, "valid": 410_000, "test": 460_000}},
}
# Throughput, fitted to one CPU thread here (training: float32; the probe: float64, half the
# rate). The CUDA figures are not measured (no GPU here): conservative guesses.
FLOPS = {"cpu": 1e11, "cuda": 2e11}            # matrix products, per CPU thread / per GPU
LOGIT_S = {"cpu": 5e-9, "cuda": 1e-10}         # softmax + cross-entropy + gradient, per logit
STEP_OVERHEAD_S = {"cpu": 2e-5, "cuda": 3e-4}  # per time step and layer: op dispatch, kernel launches
UPDATE_OVERHEAD_S = 4e-4                       # per optimizer step (zero_grad, clipping, metrics row)
SPECTRAL_S = 2.5e-9                            # per H^3 and gate block: singular values + eigenvalues
PROBE_STEP_S = 3.5e-5                          # per unrolled step, layer and (1 + gates): autograd ops
PROBE_ELEMENT_S = 1.2e-8                       # per window, step, layer and gate unit: elementwise ops
PROBE_CHECKPOINT_S = 0.1                       # per checkpoint: load it, summarise, write the tables
JACOBIAN_S = 8e-9                              # per window-step Jacobian, x S^2.5 (S = H, LSTM: 2H)
# x JACOBIAN_S: an arch's jacobian_cost (more gate terms; 1 for one-gate RNNs)
PROBE_CHUNK = 128                              # windows unrolled at once (rnngrad.probe.probe_model)
JACOBIAN_CHUNK = 4                             # windows of Jacobians at once (probe.layer_jacobians)
PROBE_TENSORS = 10                             # float64 (chunk, H) tensors per step, layer and (gate + 1)
# S x S float64 tensors per window-step while the Jacobians of JACOBIAN_CHUNK windows are
# formed (the Jacobians, their gate terms, running products), measured: an arch's jacobian_tensors.
EVAL_BATCH_SIZE = 10                           # columns of an evaluation (rnngrad.training.EVAL_BATCH_SIZE)
STARTUP_S = 1.5                                # the job's script: Python, torch, token arrays
SAFETY = 1.4                                   # the script's time estimate is multiplied by this
MEM_SAFETY = 1.25                              # the script's memory estimate is multiplied by this
BASE_MEM_MB = {"cpu": 350, "cuda": 3000}       # resident Python + torch (+ CUDA context)
# A cluster job runs its script inside two Snakemake processes (the batch step and the
# job step), which Snakemake's `benchmark:` does not see; measured with sacct (MaxRSS,
# Elapsed) on the CI cluster: about 170 MB each and a few seconds to start.
SNAKEMAKE_MB = 350
SNAKEMAKE_S = 10.0
MIN_RUNTIME_MIN = 5                            # floor for tiny jobs: start-up on a busy node, file systems


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


def _gates(arch: str) -> int:
    return len(archs.get(arch).gates)


def _square_matrices(arch: str) -> int:
    """H x H matrices per recurrent layer: the arch's square_matrices, by default W_ih and W_hh per gate."""
    declared = archs.get(arch).square_matrices
    return 2 * _gates(arch) if declared is None else declared


def parameter_count(arch: str, hidden_size: int, num_layers: int, vocab_size: int) -> int:
    """Parameters of rnngrad.model.RNNModel (embedding and input width = hidden size)."""
    # Vectors per layer: the arch's, by default two biases per gate.
    declared = archs.get(arch).vectors
    vectors = 2 * _gates(arch) if declared is None else declared
    recurrent = num_layers * (_square_matrices(arch) * hidden_size * hidden_size + vectors * hidden_size)
    return vocab_size * hidden_size + recurrent + hidden_size * vocab_size + vocab_size


def flops_per_token(arch: str, hidden_size: int, num_layers: int, vocab_size: int) -> float:
    """Forward + backward floating-point operations per token (3 x 2 x multiply-adds)."""
    macs = num_layers * _square_matrices(arch) * hidden_size * hidden_size + hidden_size * vocab_size
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
    """Expected wall time of the training script of one run (before the safety factor).

    Per optimizer step of bptt x batch tokens: the matrix products (forward + backward),
    the softmax over the vocabulary at every position, a fixed cost per time step and
    layer, and one per update. Evaluation (validation every epoch, test once, in columns
    of EVAL_BATCH_SIZE) is a forward pass: a third of the work per token, a quarter of the
    overhead per step. Every `spectral_every` steps: the singular values and eigenvalues
    of each H x H gate block.
    """
    kind = device_kind(training.get("device", "auto"))
    hidden, layers, vocab, bptt = cell["hidden_size"], cell["num_layers"], stats["vocab_size"], cell["bptt"]
    speedup = max(1, threads) ** 0.5 if kind == "cpu" else 1.0  # threads scale poorly at these sizes
    per_token = (flops_per_token(cell["arch"], hidden, layers, vocab) / FLOPS[kind] + vocab * LOGIT_S[kind]) / speedup
    tokens = train_tokens(cell, training, stats)
    steps = math.ceil(tokens / (bptt * cell["batch_size"]))
    train = tokens * per_token + steps * (bptt * layers * STEP_OVERHEAD_S[kind] + UPDATE_OVERHEAD_S)
    evaluated = eval_tokens(cell, training, stats)
    forwards = math.ceil(evaluated / (EVAL_BATCH_SIZE * bptt))
    evaluation = evaluated * per_token / 3 + forwards * bptt * layers * STEP_OVERHEAD_S[kind] / 4
    spectral_calls = math.ceil(steps / training.get("spectral_every", 50))
    spectral = spectral_calls * SPECTRAL_S * _gates(cell["arch"]) * layers * hidden ** 3
    return STARTUP_S + train + evaluation + spectral


def _runtime_min(seconds: float, attempt: int) -> int:
    """Request in whole minutes for a script estimated at `seconds`: with the safety
    factor and the job's Snakemake processes; `attempt` times as long for a retried job."""
    return max(MIN_RUNTIME_MIN, math.ceil((seconds * SAFETY + SNAKEMAKE_S) * _grow(attempt) / 60))


def _mem_mb(megabytes: float, attempt: int) -> int:
    """Request in MB for a script estimated at `megabytes`: with the safety factor and the
    job's Snakemake processes; half as much again per retry."""
    return _round_up((megabytes * MEM_SAFETY + SNAKEMAKE_MB) * (1 + 0.5 * (max(1, attempt) - 1)), 100)


def training_runtime(cell: dict, training: dict, stats: dict, threads: int = 1, attempt: int = 1) -> int:
    """Wall-time request of `train_model` in minutes."""
    return _runtime_min(training_seconds(cell, training, stats, threads), attempt)


def training_mem_mb(cell: dict, training: dict, stats: dict, optimizer_states: int | None = None,
                    attempt: int = 1) -> int:
    """Host memory request of `train_model` in MB."""
    return _mem_mb(training_script_mb(cell, training, stats, optimizer_states), attempt)


def training_script_mb(cell: dict, training: dict, stats: dict, optimizer_states: int | None = None) -> float:
    """Expected peak resident memory (MB) of the training script (before the safety factor).

    Parameters x (weights, gradients, optimizer state, checkpoint copy) + activations
    of one bptt x batch chunk (gates per layer and the logits with their gradient)
    + the token arrays, plus the runtime's resident size.
    """
    kind = device_kind(training.get("device", "auto"))
    hidden, layers, vocab = cell["hidden_size"], cell["num_layers"], stats["vocab_size"]
    if optimizer_states is None:
        optimizer_states = 2 if cell.get("optimizer") == "adam" else 1
    params = parameter_count(cell["arch"], hidden, layers, vocab)
    weights = params * BYTES * (3 + optimizer_states)
    positions = cell["bptt"] * max(cell["batch_size"], 1)
    activations = positions * (layers * (_gates(cell["arch"]) + 2) * _state_width(cell) + 3 * vocab) * BYTES * 2
    tokens = sum(stats["n_tokens"].values()) * 8 * 2  # int64 ids, plus a copy while batching
    return BASE_MEM_MB[kind] + (weights + activations + tokens) / 2**20


def _state_width(cell: dict) -> int:
    """The width of each named state of the cell's arch: H, the S6's H x N (archs.Arch.state_width)."""
    spec = archs.get(cell["arch"])
    return spec.state_width(cell["hidden_size"], spec.options(cell))


def _state_size(cell: dict) -> int:
    """Rows of a per-step Jacobian: every named state of the arch (the LSTM's h and c)."""
    return len(archs.get(cell["arch"]).states) * _state_width(cell)


def probe_seconds(cell: dict, probe: dict, training: dict, stats: dict, threads: int = 1) -> float:
    """Expected wall time of the probe script of one run, every checkpoint (before the safety factor).

    Per checkpoint, the windows are unrolled PROBE_CHUNK at a time for burn_in + max_lag + 1
    steps in float64 with one forward and one backward pass: matrix products at half the
    float32 rate, elementwise work per gate unit, and a fixed cost per step, layer and op
    of the Python loop. Then on `jacobian_windows` windows (at most one chunk) every
    layer's per-step Jacobians (S x S, S = H, or 2H for an LSTM's (h, c)), their spectral
    norms and running products, which cost about S^2.5 here. The probe runs on the CPU
    whatever `training.device` says.
    """
    arch, hidden, layers = cell["arch"], cell["hidden_size"], cell["num_layers"]
    gates = _gates(arch)
    checkpoints = len(training.get("checkpoints", [0.0, 1.0]))
    length = probe["burn_in"] + probe["max_lag"] + 1
    speedup = max(1, threads) ** 0.5
    flops = 6 * gates * 2 * hidden * hidden * layers  # per window and step; the logits only at the last one
    per_window_step = (flops / (FLOPS["cpu"] / 2) + layers * gates * _state_width(cell) * PROBE_ELEMENT_S) / speedup
    chunks = math.ceil(probe["windows"] / PROBE_CHUNK)
    unroll = probe["windows"] * length * per_window_step + chunks * length * layers * (1 + gates) * PROBE_STEP_S
    jacobian_windows = min(probe.get("jacobian_windows", 0), PROBE_CHUNK, probe["windows"])
    jacobians = jacobian_windows * (probe["max_lag"] + 1) * layers
    jacobian = jacobians * JACOBIAN_S * archs.get(arch).jacobian_cost * _state_size(cell) ** 2.5 / speedup
    return STARTUP_S + checkpoints * (PROBE_CHECKPOINT_S + unroll + jacobian)


def probe_runtime(cell: dict, probe: dict, training: dict, stats: dict, threads: int = 1,
                  attempt: int = 1) -> int:
    """Wall-time request of `probe_gradients` in minutes (the probe runs on the CPU)."""
    return _runtime_min(probe_seconds(cell, probe, training, stats, threads), attempt)


def probe_mem_mb(cell: dict, probe: dict, training: dict, stats: dict, attempt: int = 1) -> int:
    """Host memory request of `probe_gradients` in MB."""
    return _mem_mb(probe_script_mb(cell, probe, training, stats), attempt)


def probe_script_mb(cell: dict, probe: dict, training: dict, stats: dict) -> float:
    """Expected peak resident memory (MB) of the probe script (before the safety factor).

    The autograd graph of one chunk of windows (about PROBE_TENSORS float64 (windows, H)
    tensors per step, layer and gate, plus one), the logits of its last step, the
    per-step Jacobians of JACOBIAN_CHUNK windows with their intermediates, the probe
    split's tokens, and the runtime's resident size.
    """
    arch, hidden, layers, vocab = cell["arch"], cell["hidden_size"], cell["num_layers"], stats["vocab_size"]
    gates = _gates(arch)
    params = parameter_count(arch, hidden, layers, vocab)
    length = probe["burn_in"] + probe["max_lag"] + 1
    chunk = min(probe["windows"], PROBE_CHUNK)
    graph = chunk * length * layers * (gates + 1) * PROBE_TENSORS * _state_width(cell) * BYTES_PROBE
    logits = chunk * vocab * BYTES_PROBE * 3
    jacobian_windows = min(probe.get("jacobian_windows", 0), JACOBIAN_CHUNK)
    jacobians = jacobian_windows * (probe["max_lag"] + 1) * _state_size(cell) ** 2 * BYTES_PROBE \
        * archs.get(arch).jacobian_tensors
    tokens = stats["n_tokens"][probe.get("split", "valid")] * 8
    return BASE_MEM_MB["cpu"] + (params * BYTES_PROBE * 3 + graph + logits + jacobians + tokens) / 2**20


# Light rules run in the submitting process (localrules); their requests matter only when
# a local run limits memory (`--resources mem_mb=...`) or a user makes them cluster jobs.
LIGHT_RESOURCES = {"mem_mb": 2000, "runtime": 15}
LIGHT_SAFETY, LIGHT_STARTUP_S = 2.0, 60.0  # not measured: the collection rules run once, on the login node


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
    seconds = LIGHT_STARTUP_S + runs * 0.05 + rows / 2e4
    return {
        "mem_mb": _round_up(LIGHT_RESOURCES["mem_mb"] + megabytes * LIGHT_SAFETY, 100),
        "runtime": max(LIGHT_RESOURCES["runtime"], math.ceil(seconds * LIGHT_SAFETY / 60)),
    }
