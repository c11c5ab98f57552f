"""Synthetic long-range dependency tasks, where the dependency length T is a knob.

- **Adding problem** (Hochreiter & Schmidhuber 1997; the variant of Le, Jaitly & Hinton
  2015 and Arjovsky, Shah & Bengio 2016): T steps of two channels, a value ~ U(0, 1) and
  a marker; exactly two markers, one at a uniform position of the first half
  [0, T // 2) and one of the second half [T // 2, T). The target is the sum of the two
  marked values, read from the last step; the loss is the squared error. Baseline:
  always predicting 1 (the mean of the target) gives MSE = Var(U + U') = 1/6.
- **Copy memory** (Arjovsky et al. 2016): tokens 0 = blank, 1..S = symbols, S + 1 =
  delimiter. Input: `copy_length` symbols drawn uniformly from the S, then T - 1 blanks,
  the delimiter, `copy_length` blanks (T + 2 copy_length steps). Target: blanks for the
  first T + copy_length steps, then the symbols in order; cross-entropy per step.
  Baseline (blanks for sure, then a uniform guess among the S symbols):
  copy_length log S / (T + 2 copy_length), i.e. 10 log 8 / (T + 20).
- **Selective copying** (Gu & Dao 2023, Mamba's section 3.1 and E.1): the same tokens;
  `copy_length` symbols at distinct positions drawn uniformly among the first T steps
  (every other one of them blank), then the delimiter, then `copy_length` blank recall
  steps (T + copy_length + 1 steps). Target: blanks for the first T + 1 steps, then the
  symbols in the order they appeared. Unlike plain copy, the delay between a symbol and its
  recall differs from sequence to sequence, so a time-invariant recurrence (fixed delays)
  cannot solve it and a selective one can. Baseline (blanks for sure, then a uniform guess):
  copy_length log S / (T + copy_length + 1).

Sequences are arrays with the batch first: adding inputs (n, T, 2) float32, targets
(n,) float32; copy and selective copy inputs and targets (n, sequence_length) int64. Training batches are
drawn fresh at every step from a generator seeded by (data seed, run seed, step), so a
run resumed at step s draws what it would have drawn; the valid and test sets are fixed
per (task, T, data seed), the same for every architecture and run seed.

No torch here: the config check imports this module while Snakemake builds the DAG.
"""

from __future__ import annotations

import math

import numpy as np

TASKS = ("adding", "copy", "selective_copy")
# The tasks of tokens (blank, symbols, delimiter) that copy_length and copy_symbols shape.
TOKEN_TASKS = ("copy", "selective_copy")
ADDING_FEATURES = 2            # value, marker
ADDING_BASELINE = 1.0 / 6.0    # MSE of always predicting 1: the variance of the sum of two U(0, 1)
ADDING_SOLVED_MSE = 0.01       # "solved": test MSE below this (about 6% of the baseline)
# Hochreiter & Schmidhuber's criterion, |error| < 0.04 on their targets in [0, 1]; ours are sums
# in [0, 2], so on our scale it is |error| < 0.04 * 2 (the same criterion, not twice as strict).
HS_TOLERANCE, HS_TARGET_RANGE = 0.04, 2.0
COPY_SOLVED_ACCURACY = 0.99    # "solved": at least this share of the recalled symbols right
BLANK = 0
# Seed-sequence words that keep the three streams of one data seed apart.
STREAMS = {"train": 0, "valid": 1, "test": 2}


class TaskError(ValueError):
    """A task setting that cannot define a task; the message names the key and the allowed values."""


def check_task(name: str, T: int, copy_length: int = 10, copy_symbols: int = 8) -> None:
    """Raise TaskError unless (name, T, copy_length, copy_symbols) define a task."""
    if name not in TASKS:
        raise TaskError(f"config key task.name: {name!r} is not a task; allowed values are {list(TASKS)}")
    if not isinstance(T, int) or isinstance(T, bool) or T < 2:
        raise TaskError(f"config key task.T: {T!r} is not allowed; allowed values are integers >= 2 "
                        "(the adding problem puts one marker in each half of the sequence)")
    if name in TOKEN_TASKS:
        if not 1 <= copy_length <= T:
            raise TaskError(f"config key task.copy_length: {copy_length} is longer than T = {T} allows; allowed "
                            f"values are integers 1..{T} (the delay T is at least the copy length)")
        if copy_symbols < 2:
            raise TaskError(f"config key task.copy_symbols: {copy_symbols} is not allowed; allowed values are "
                            "integers >= 2")


def sequence_length(name: str, T: int, copy_length: int = 10, copy_symbols: int = 8) -> int:
    """Steps of one sequence: T (adding), T + 2 copy_length (copy) or T + copy_length + 1 (selective copy).
    (Every function here takes the whole shape, copy_length and copy_symbols, so that a run's shape can
    be passed as it is.)"""
    lengths = {"adding": T, "copy": T + 2 * copy_length, "selective_copy": T + copy_length + 1}
    if name not in lengths:
        raise TaskError(f"config key task.name: {name!r} is not a task; allowed values are {list(TASKS)}")
    return lengths[name]


def dependency_lags(name: str, inputs: np.ndarray, T: int, copy_length: int = 10, copy_symbols: int = 8
                    ) -> dict[str, np.ndarray]:
    """Each sequence's dependency lags, counted back from the last step, where the probe's one loss is.

    The probe's loss (rnngrad.probe.task_loss_fn) is one output step's: the adding
    problem's squared error at the last step, the copy task's cross-entropy of the last
    recall step. Returns {dependency: (n,) int lags}, the headline dependency first:
    adding, `first_marker` then `second_marker` (T - 1 - position of each marker, read
    from the marker channel, so every sequence has its own); copy, `last_symbol`
    (T + copy_length for every sequence: the symbol recalled at the last step was shown
    T + copy_length steps before it); selective copy, `last_symbol` (T + copy_length - the
    position of the sequence's last symbol, read from its inputs: every sequence has its own).
    """
    inputs = np.asarray(inputs)
    if name == "adding":
        rows, positions = np.nonzero(inputs[..., 1] == 1.0)
        if not np.array_equal(rows, np.repeat(np.arange(len(inputs)), 2)):
            raise TaskError("adding inputs: every sequence must have exactly two markers")
        positions = positions.reshape(-1, 2)
        return {"first_marker": T - 1 - positions[:, 0], "second_marker": T - 1 - positions[:, 1]}
    if name == "copy":
        return {"last_symbol": np.full(len(inputs), T + copy_length)}
    if name == "selective_copy":
        rows, positions = np.nonzero(inputs[:, :T] != BLANK)
        if not np.array_equal(rows, np.repeat(np.arange(len(inputs)), copy_length)):
            raise TaskError(f"selective_copy inputs: every sequence must have exactly copy_length = {copy_length} "
                            f"symbols among its first T = {T} steps")
        return {"last_symbol": T + copy_length - positions.reshape(-1, copy_length)[:, -1]}
    raise TaskError(f"config key task.name: {name!r} is not a task; allowed values are {list(TASKS)}")


def vocab_size(name: str, copy_length: int = 10, copy_symbols: int = 8) -> int | None:
    """Input tokens of the copy task (blank, symbols, delimiter); None for the adding problem's real inputs."""
    return copy_symbols + 2 if name in TOKEN_TASKS else None


def input_features(name: str) -> int | None:
    """Width of real-valued inputs (read by a linear layer), None for tokens (read by an embedding)."""
    return ADDING_FEATURES if name == "adding" else None


def output_size(name: str, copy_length: int = 10, copy_symbols: int = 8) -> int:
    """One regression output (adding) or a distribution over a token task's tokens."""
    return 1 if name == "adding" else copy_symbols + 2


def settings_for(name: str, task: dict) -> dict:
    """The keys of the config's task section that define a run of task `name` (the copy task's shape
    does not concern the adding problem, so changing it reruns only copy runs)."""
    keys = ("steps", "valid_size", "test_size", "data_seed") + (("copy_length", "copy_symbols")
                                                                 if name in TOKEN_TASKS else ())
    return {key: task[key] for key in keys}


def model_shape(name: str, copy_length: int = 10, copy_symbols: int = 8) -> dict:
    """build_model's vocab_size, input_features and output_size for task `name`."""
    return {"vocab_size": vocab_size(name, copy_length, copy_symbols), "input_features": input_features(name),
            "output_size": output_size(name, copy_length, copy_symbols)}


def baseline(name: str, T: int, copy_length: int = 10, copy_symbols: int = 8) -> float:
    """The memoryless baseline's loss, in closed form (see the module docstring)."""
    if name == "adding":
        return ADDING_BASELINE
    return copy_length * math.log(copy_symbols) / sequence_length(name, T, copy_length)


# ---------------------------------------------------------------------------- data


def generate(name: str, n: int, T: int, rng: np.random.Generator, copy_length: int = 10,
             copy_symbols: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """n sequences of task `name` with dependency length T: (inputs, targets), batch first."""
    if name == "adding":
        values = rng.random((n, T), dtype=np.float32)
        half = T // 2
        first = rng.integers(0, half, size=n)
        second = rng.integers(half, T, size=n)
        markers = np.zeros((n, T), dtype=np.float32)
        rows = np.arange(n)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        targets = values[rows, first] + values[rows, second]
        return np.stack([values, markers], axis=-1), targets.astype(np.float32)
    if name == "copy":
        length = sequence_length(name, T, copy_length)
        symbols = rng.integers(1, copy_symbols + 1, size=(n, copy_length))
        inputs = np.full((n, length), BLANK, dtype=np.int64)
        inputs[:, :copy_length] = symbols
        inputs[:, T + copy_length - 1] = copy_symbols + 1  # the delimiter, after T - 1 blanks
        targets = np.full((n, length), BLANK, dtype=np.int64)
        targets[:, -copy_length:] = symbols
        return inputs, targets
    if name == "selective_copy":
        length = sequence_length(name, T, copy_length)
        symbols = rng.integers(1, copy_symbols + 1, size=(n, copy_length))
        # copy_length distinct positions of the first T, uniformly, in increasing order
        positions = np.sort(np.argsort(rng.random((n, T)), axis=1)[:, :copy_length], axis=1)
        inputs = np.full((n, length), BLANK, dtype=np.int64)
        inputs[np.arange(n)[:, None], positions] = symbols
        inputs[:, T] = copy_symbols + 1  # the delimiter
        targets = np.full((n, length), BLANK, dtype=np.int64)
        targets[:, -copy_length:] = symbols
        return inputs, targets
    raise TaskError(f"config key task.name: {name!r} is not a task; allowed values are {list(TASKS)}")


def training_batch(name: str, T: int, batch_size: int, data_seed: int, seed: int, step: int,
                   copy_length: int = 10, copy_symbols: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The fresh batch of training step `step` (0-based) of a run with seed `seed`."""
    rng = np.random.default_rng([data_seed, STREAMS["train"], seed, step])
    return generate(name, batch_size, T, rng, copy_length, copy_symbols)


def eval_set(name: str, T: int, split: str, size: int, data_seed: int, copy_length: int = 10,
             copy_symbols: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The fixed valid or test set of (task, T, data seed): the same for every arch and run seed."""
    if split not in ("valid", "test"):
        raise ValueError(f"split {split!r}: evaluation sets are 'valid' or 'test'")
    rng = np.random.default_rng([data_seed, STREAMS[split], TASKS.index(name), T])
    return generate(name, size, T, rng, copy_length, copy_symbols)


# ---------------------------------------------------------------------------- metrics


def metrics(name: str, outputs: np.ndarray, targets: np.ndarray, T: int, copy_length: int = 10,
            copy_symbols: int = 8) -> dict:
    """How well `outputs` solve the task, beside the baseline.

    outputs: adding, the predicted sums (n,); copy, log-probabilities (n, steps, tokens).
    Returns `loss` (adding: MSE; copy: cross-entropy per step, nats), `baseline` (closed
    form), `ratio` = loss / baseline, `accuracy` (adding: share of sequences with
    |error| / 2 < 0.04, Hochreiter & Schmidhuber's criterion on their [0, 1] target scale; copy and selective
    copy: share of the recalled symbols whose most likely token is right) and `solved` (adding: MSE < 0.01;
    copy and selective copy: accuracy >= 0.99).
    """
    base = baseline(name, T, copy_length, copy_symbols)
    if name == "adding":
        error = np.asarray(outputs, dtype=np.float64).reshape(-1) - np.asarray(targets, dtype=np.float64)
        loss = float(np.mean(error ** 2))
        accuracy = float(np.mean(np.abs(error) / HS_TARGET_RANGE < HS_TOLERANCE))
        solved = loss < ADDING_SOLVED_MSE
    elif name in TOKEN_TASKS:
        log_probs = np.asarray(outputs, dtype=np.float64)
        picked = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
        loss = float(-np.mean(picked))
        recalled = np.argmax(log_probs[:, -copy_length:], axis=-1) == targets[:, -copy_length:]
        accuracy = float(np.mean(recalled))
        solved = accuracy >= COPY_SOLVED_ACCURACY
    else:
        raise TaskError(f"config key task.name: {name!r} is not a task; allowed values are {list(TASKS)}")
    ratio = loss / base if math.isfinite(loss) else math.nan
    return {"loss": loss, "baseline": base, "ratio": ratio, "accuracy": accuracy,
            "solved": bool(solved and math.isfinite(loss))}
