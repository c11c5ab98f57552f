"""Train one grid cell: a language model with truncated BPTT, resumable and deterministic.

As in pytorch/examples word_language_model, the train split is cut into
`batch_size` columns and read `bptt` steps at a time; the hidden state is carried
from one batch to the next but detached, so gradients flow back at most `bptt` steps.

While it runs, a job keeps everything it needs to continue (weights, optimizer,
lr schedule, hidden state, data position, RNG states, metrics and checkpoints so
far) in `<run>/.partial/`, rewritten atomically at every checkpoint, every epoch
and every `save_every_s` seconds. A rerun after a crash or SIGKILL continues from
there and ends with the same numbers as an uninterrupted run (bitwise on CPU with
the same thread count). Only a run that has finished moves its declared outputs
(summary.json, metrics.csv, epochs.csv, checkpoints/) into place.

A NaN or Inf loss or gradient norm is a result, not a crash: the run stops with
status 'diverged', the step where it happened and its last finite metrics.

A task run (TaskTrainer, rnngrad.tasks) shares all of this machinery (optimizer,
clipping, divergence, checkpoints, resume); it reads whole sequences drawn fresh at
every step instead of a corpus, and records its test metrics at every checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from rnngrad import tasks
from rnngrad.grid import cell_keys, grid_keys, run_path
from rnngrad.io import atomic_path, write_csv, write_json
from rnngrad.job_keys import RESULT_KEYS
from rnngrad.model import RNNModel, build_model, save_checkpoint, spectral_stats

EVAL_BATCH_SIZE = 10
SAVE_EVERY_S = 60.0
PARTIAL_DIR = ".partial"
STATE_FILE = "state.pt"
LOG_EVERY_S = 5.0
# `current_lr`, not `lr`: tables put these beside the grid keys, whose `lr` is the initial one.
METRIC_COLUMNS = ("step", "epoch", "tokens", "train_loss", "grad_norm", "clipped", "current_lr", "wall_s")
EPOCH_COLUMNS = ("epoch", "step", "tokens", "current_lr", "train_loss", "valid_loss", "valid_ppl")
# A task run's test metrics at each checkpoint (evaluations.csv; rnngrad.tasks.metrics).
EVALUATION_COLUMNS = ("step", "sequences", "progress", "test_loss", "baseline", "test_ratio", "test_accuracy",
                      "solved")
EVAL_CHUNK = 500  # sequences per forward pass when a task run evaluates


# ----------------------------------------------------------------------------- data

def batchify(ids: np.ndarray, batch_size: int) -> torch.Tensor:
    """1-D token ids -> (rows, batch_size): column j is the j-th contiguous slice of the text."""
    rows = len(ids) // batch_size
    if rows < 2:
        raise ValueError(f"{len(ids)} tokens are too few for batch size {batch_size}")
    data = torch.from_numpy(np.ascontiguousarray(ids[: rows * batch_size], dtype=np.int64))
    return data.view(batch_size, rows).t().contiguous()


def batch_starts(rows: int, bptt: int) -> list[int]:
    """Start row of every (input, target) window of one pass over `rows` rows."""
    return list(range(0, rows - 1, bptt))


def get_batch(source: torch.Tensor, start: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = min(bptt, len(source) - 1 - start)
    return source[start:start + length], source[start + 1:start + 1 + length]


def steps_per_epoch(rows: int, bptt: int, batch_size: int, max_tokens: int | None) -> int:
    """Windows per epoch: the whole split, or as many as `max_tokens` needs."""
    full = len(batch_starts(rows, bptt))
    if max_tokens is None:
        return full
    return min(full, math.ceil(max_tokens / (bptt * batch_size)))


def checkpoint_steps(fractions, planned_steps: int) -> list[int]:
    """Steps at the configured fractions of training; initialisation and the end always included."""
    steps = {round(f * planned_steps) for f in fractions} | {0, planned_steps}
    return sorted(steps)


def detach(hidden):
    return tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()


@torch.no_grad()
def evaluate(model: RNNModel, data: torch.Tensor, bptt: int) -> float:
    """Mean cross-entropy (nats per token) over `data` (rows, batch)."""
    model.eval()
    hidden = model.init_hidden(data.shape[1])
    total, count = 0.0, 0
    for start in batch_starts(len(data), bptt):
        inputs, targets = get_batch(data, start, bptt)
        logits, hidden = model(inputs, hidden)
        total += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
        count += targets.numel()
    model.train()
    return total / count


def perplexity(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(loss) if loss < 700 else math.inf


def load_split(token_dir: Path, split: str, limit: int | None = None) -> np.ndarray:
    ids = np.load(Path(token_dir) / f"{split}.npy")
    return ids if limit is None else ids[: limit + 1]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but torch sees no CUDA device")
    return torch.device(name)


# ----------------------------------------------------------------------------- schedule

def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; expected 'sgd' or 'adam'")


def next_lr(schedule: str, lr: float, epoch: int, improved: bool, decay: float, start_epoch: int) -> float:
    """Learning rate for epoch `epoch + 1`, given the one used in `epoch` (1-based).

    plateau: divide by `decay` when the validation loss did not improve;
    step (Zaremba et al. 2014): multiply by `decay` from epoch `start_epoch` on;
    constant: unchanged.
    """
    if schedule == "plateau":
        return lr if improved else lr / decay
    if schedule == "step":
        return lr * decay if epoch + 1 >= start_epoch else lr
    if schedule == "constant":
        return lr
    raise ValueError(f"unknown lr_schedule {schedule!r}")


# ----------------------------------------------------------------------------- state

def rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def fingerprint(hparams: dict) -> str:
    """Identifies what a partial run was computing, so a stale one is never resumed."""
    return hashlib.sha256(json.dumps(hparams, sort_keys=True, default=str).encode()).hexdigest()


def save_state(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path, expected_fingerprint: str) -> dict | None:
    """The saved progress of this exact run, or None (missing, unreadable or stale)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a torn file cannot happen (atomic rename), but never trust it
        print(f"ignoring unreadable resume state {path}: {error}")
        return None
    if state.get("fingerprint") != expected_fingerprint:
        print(f"ignoring resume state {path}: it belongs to other hyperparameters")
        return None
    return state


@dataclasses.dataclass
class Progress:
    """Where a run stands: with the weights, optimizer, hidden state and RNG states, all a resume needs.

    Saved and restored as one record (`asdict`), so a field added here is resumed too.
    """

    lr: float
    epoch: int = 1  # 1-based, the epoch being trained
    batch: int = 0  # windows of this epoch done
    step: int = 0
    tokens: int = 0
    epoch_loss: float = 0.0  # sum of this epoch's step losses
    epoch_steps: int = 0
    best_valid_loss: float | None = None
    last_valid_loss: float | None = None
    last_train_loss: float | None = None
    clipped_steps: int = 0
    metrics: list[dict] = dataclasses.field(default_factory=list)  # one row per step (metrics.csv)
    epochs: list[dict] = dataclasses.field(default_factory=list)  # one row per epoch (epochs.csv)
    train_s: float = 0.0
    wall_s: float = 0.0
    status: str = "ok"
    diverged_step: int | None = None
    done: bool = False
    evaluations: list[dict] = dataclasses.field(default_factory=list)  # task runs: one row per checkpoint


# ----------------------------------------------------------------------------- training

class Trainer:
    """One run's model, optimizer and progress; `run()` trains to the end or to divergence.

    `training` holds the result-defining settings (job_keys.RESULT_KEYS['training']; other
    keys are ignored); how the run executes (device, logging and save cadence) are arguments.
    """

    def __init__(self, cell: dict, training: dict, train_ids: np.ndarray, valid_ids: np.ndarray,
                 test_ids: np.ndarray, vocab_size: int, *, corpus: str = "ptb", level: str = "word",
                 device: str | torch.device = "cpu", log=print, log_every_s: float = LOG_EVERY_S,
                 save_every_s: float = SAVE_EVERY_S):
        self._setup(cell, training, device, log, log_every_s, save_every_s)
        self.bptt = cell["bptt"]
        self.sum_over_time = training.get("loss_reduction", "mean") == "sum_over_time"
        self.hparams = {
            **{key: cell[key] for key in grid_keys()}, "vocab_size": vocab_size, "corpus": corpus,
            "level": level, **{key: training.get(key) for key in RESULT_KEYS["training"]},
        }
        self.train_data = batchify(train_ids, self.batch_size).to(self.device)
        self.valid_data = batchify(valid_ids, EVAL_BATCH_SIZE).to(self.device)
        self.test_data = batchify(test_ids, EVAL_BATCH_SIZE).to(self.device)
        self.starts = batch_starts(len(self.train_data), self.bptt)
        self.steps_per_epoch = steps_per_epoch(
            len(self.train_data), self.bptt, self.batch_size, training.get("max_tokens"))
        self.epochs = cell["epochs"]
        self.tokens_per_step = self.bptt * self.batch_size
        self._build(vocab_size=vocab_size)
        self.hidden = self.model.init_hidden(self.batch_size)

    def _setup(self, cell, training, device, log, log_every_s, save_every_s) -> None:
        """What every run has: its cell, settings, device and logging cadence."""
        self.cell, self.training, self.log = dict(cell), dict(training), log
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.log_every_s, self.save_every_s = log_every_s, save_every_s
        self.arch, self.batch_size, self.clip = cell["arch"], cell["batch_size"], cell["clip"]
        self.spectral_every = training["spectral_every"]

    def _build(self, **shape) -> None:
        """Model (`shape`: build_model's vocabulary, input and output sizes), optimizer, schedule, progress."""
        self.planned_steps = self.steps_per_epoch * self.epochs
        self.checkpoint_at = checkpoint_steps(self.training["checkpoints"], self.planned_steps)
        self.model = build_model(**self.cell, **shape, init_range=self.training.get("init_range")).to(self.device)
        self.params = list(self.model.parameters())
        self.optimizer = make_optimizer(self.cell["optimizer"], self.params, self.cell["lr"])
        self.clock = time.perf_counter  # times the steps for tokens_per_s (the benchmark uses CPU time)
        self.progress = Progress(lr=float(self.cell["lr"]))

    def state_dict(self) -> dict:
        return {
            "fingerprint": fingerprint(self.hparams), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "hidden": self.hidden, "rng": rng_states(),
            "progress": dataclasses.asdict(self.progress),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        hidden = state["hidden"]  # None for a task run: every sequence starts from a zero state
        self.hidden = tuple(h.to(self.device) for h in hidden) if isinstance(hidden, tuple) else (
            hidden if hidden is None else hidden.to(self.device))
        set_rng_states(state["rng"])
        self.progress = Progress(**state["progress"])
        self.set_lr(self.progress.lr)

    def set_lr(self, lr: float) -> None:
        self.progress.lr = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # -- one step
    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of the next training step, time first."""
        return get_batch(self.train_data, self.starts[self.progress.batch], self.bptt)

    def forward_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss per token, as logged; the objective whose gradient is clipped and followed).

        The hidden state comes from the previous window, detached: truncated BPTT.
        """
        self.hidden = detach(self.hidden)
        logits, self.hidden = self.model(inputs, self.hidden)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return loss, loss * len(inputs) if self.sum_over_time else loss

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor):
        """Forward, backward, clip and update; returns (loss, grad_norm) as floats.

        The update is skipped when either is not finite, so the weights stay the last finite ones.
        """
        loss, objective = self.forward_loss(inputs, targets)
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if self.clip is None:
            norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        else:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        loss_value, norm_value = torch.stack([loss.detach(), norm]).tolist()  # the step's only sync
        if math.isfinite(loss_value) and math.isfinite(norm_value):
            self.optimizer.step()
        return loss_value, norm_value

    def spectral_row(self) -> dict:
        row = {}
        for layer, weight in enumerate(self.model.recurrent_weights()):
            stats = spectral_stats(weight, self.arch)
            row[f"sigma_max_l{layer}"] = stats["sigma_max"]
            row[f"spectral_radius_l{layer}"] = stats["spectral_radius"]
        return row

    # -- bookkeeping
    def fraction_done(self) -> float:
        return self.progress.step / self.planned_steps

    def save_checkpoint(self, directory: Path, **extra) -> None:
        p = self.progress
        directory.mkdir(parents=True, exist_ok=True)
        save_checkpoint(directory / f"step_{p.step:08d}.pt", self.model, self.hparams, p.step, p.tokens,
                        progress=self.fraction_done(), epoch=p.epoch, **extra)

    def on_checkpoint(self) -> None:
        """What a run measures at each checkpoint besides saving it (a task run: its test metrics)."""

    def checkpoint(self, directory: Path | None, **extra) -> None:
        """At a checkpoint step: measure (on_checkpoint), then save the weights when there is a directory."""
        self.on_checkpoint()
        if directory is not None:
            self.save_checkpoint(directory, **extra)

    def run(self, partial: Path | None = None) -> None:
        """Train from the current state to the end (or divergence), saving progress under `partial`."""
        p = self.progress
        checkpoint_dir = partial / "checkpoints" if partial is not None else None
        session_start = time.perf_counter()
        wall_offset = p.wall_s
        last_save = last_log = session_start
        log_tokens, log_time = p.tokens, session_start

        def now_wall():
            return wall_offset + time.perf_counter() - session_start

        def save():
            nonlocal last_save
            if partial is not None:
                p.wall_s = now_wall()
                save_state(partial / STATE_FILE, self.state_dict())
                last_save = time.perf_counter()

        if p.step == 0 and not p.metrics:
            p.metrics.append({"step": 0, "epoch": 0, "tokens": 0, "current_lr": p.lr, "wall_s": 0.0,
                              **self.spectral_row()})
            self.checkpoint(checkpoint_dir)
            save()

        while not p.done:
            if p.batch >= self.steps_per_epoch:
                self.end_epoch()
                if p.done and p.step in self.checkpoint_at:
                    self.checkpoint(checkpoint_dir)
                save()
                continue
            start = self.clock()
            inputs, targets = self.next_batch()
            loss, norm = self.train_step(inputs, targets)
            step, p.batch = p.step + 1, p.batch + 1
            clipped = self.clip is not None and norm > self.clip
            row = {"step": step, "epoch": p.epoch, "tokens": p.tokens + inputs.shape[0] * inputs.shape[1],
                   "train_loss": loss, "grad_norm": norm, "clipped": int(clipped), "current_lr": p.lr,
                   "wall_s": now_wall()}
            if not (math.isfinite(loss) and math.isfinite(norm)):
                p.metrics.append(row)
                self.diverge(step, loss, norm, checkpoint_dir)
                save()
                break
            p.step, p.tokens = step, row["tokens"]
            p.epoch_loss += loss
            p.epoch_steps += 1
            p.last_train_loss = loss
            p.clipped_steps += int(clipped)
            if step % self.spectral_every == 0:
                row.update(self.spectral_row())
            p.metrics.append(row)
            p.train_s += self.clock() - start  # training speed: steps and their bookkeeping
            if step in self.checkpoint_at and step != self.planned_steps:
                self.checkpoint(checkpoint_dir)
                save()
            clock = time.perf_counter()
            if clock - last_log >= self.log_every_s:
                speed = (p.tokens - log_tokens) / max(clock - log_time, 1e-9)
                remaining = (self.planned_steps - step) * self.tokens_per_step / max(speed, 1e-9)
                self.log(f"epoch {p.epoch}/{self.epochs} step {step}/{self.planned_steps} "
                         f"({100 * self.fraction_done():.1f}%) loss {loss:.4f} lr {p.lr:g} "
                         f"{speed:,.0f} tokens/s ETA {format_seconds(remaining)}")
                last_log, log_tokens, log_time = clock, p.tokens, clock
            if clock - last_save >= self.save_every_s:
                save()
        p.wall_s = now_wall()

    def validate(self) -> float:
        """The validation loss of the current weights."""
        return evaluate(self.model, self.valid_data, self.bptt)

    def valid_ppl(self, loss: float | None) -> float | None:
        """The validation perplexity column of epochs.csv (a task run has none)."""
        return perplexity(loss)

    def end_epoch(self) -> None:
        p = self.progress
        valid_loss = self.validate()
        improved = p.best_valid_loss is None or valid_loss < p.best_valid_loss
        train_loss = p.epoch_loss / max(p.epoch_steps, 1)
        valid_ppl = self.valid_ppl(valid_loss)
        p.epochs.append({"epoch": p.epoch, "step": p.step, "tokens": p.tokens, "current_lr": p.lr,
                         "train_loss": train_loss, "valid_loss": valid_loss, "valid_ppl": valid_ppl})
        self.log(f"epoch {p.epoch} done: step {p.step} train loss {train_loss:.4f} "
                 + (f"valid ppl {valid_ppl:.6g}" if valid_ppl is not None else f"valid loss {valid_loss:.4g}")
                 + f" lr {p.lr:g}")
        p.last_valid_loss = valid_loss
        if improved:
            p.best_valid_loss = valid_loss
        if p.epoch >= self.epochs:
            p.done = True
            return
        self.set_lr(next_lr(self.training["lr_schedule"], p.lr, p.epoch, improved,
                            self.training["lr_decay"], self.training["decay_start_epoch"]))
        p.epoch, p.batch = p.epoch + 1, 0
        p.epoch_loss, p.epoch_steps = 0.0, 0
        self.hidden = self.model.init_hidden(self.batch_size)

    def diverge(self, step: int, loss: float, norm: float, checkpoint_dir: Path | None) -> None:
        """Stop at the first non-finite loss or gradient norm, keeping the last finite weights."""
        p = self.progress
        p.status, p.diverged_step, p.done = "diverged", step, True
        self.log(f"diverged at step {step}: loss {loss}, gradient norm {norm}; stopping")
        finite = all(torch.isfinite(w).all() for w in self.params)
        if finite:
            p.last_valid_loss = self.validate()
            if p.best_valid_loss is None or p.last_valid_loss < p.best_valid_loss:
                p.best_valid_loss = p.last_valid_loss
            self.checkpoint(checkpoint_dir, status="diverged")

    def summary(self) -> dict:
        """Final metrics; test perplexity of the final weights on every token of `test_ids`."""
        p = self.progress
        test_loss = None
        if p.status == "ok" or all(torch.isfinite(w).all() for w in self.params):
            test_loss = evaluate(self.model, self.test_data, self.bptt)
        epoch_train = p.epoch_loss / p.epoch_steps if p.epoch_steps else p.last_train_loss
        return self._summary({
            "epochs_completed": len(p.epochs), "tokens_seen": p.tokens, "train_loss": finite_or_none(epoch_train),
            "valid_ppl": perplexity(p.last_valid_loss), "best_valid_ppl": perplexity(p.best_valid_loss),
            "test_ppl": perplexity(test_loss),
            "valid_tokens": evaluated_tokens(self.valid_data), "test_tokens": evaluated_tokens(self.test_data),
        })

    def _summary(self, results: dict) -> dict:
        """The summary every run writes, its own `results` in the middle."""
        p = self.progress
        return {
            "run": run_path(self.cell), **self.hparams, "status": p.status, "diverged_step": p.diverged_step,
            "steps": p.step, "planned_steps": self.planned_steps, **results,
            "tokens_per_s": p.tokens / p.train_s if p.train_s > 0 else None,
            "wall_s": p.wall_s, "clipped_fraction": p.clipped_steps / p.step if p.step else 0.0,
            # How it ran (not part of the fingerprint; changing them reruns nothing):
            "device": str(self.device), "threads": torch.get_num_threads(), "log_every_s": self.log_every_s,
            "save_every_s": self.save_every_s,
        }

    def metrics_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.progress.metrics)
        spectral = [f"{kind}_l{layer}" for layer in range(self.cell["num_layers"])
                    for kind in ("sigma_max", "spectral_radius")]
        frame = frame.reindex(columns=[*METRIC_COLUMNS, *spectral])
        frame["clipped"] = frame["clipped"].astype("Int64")  # empty at step 0, 0/1 after
        return frame

    def epochs_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.progress.epochs, columns=list(EPOCH_COLUMNS))

    def extra_outputs(self) -> dict[str, pd.DataFrame]:
        """Tables a run writes besides metrics.csv and epochs.csv, by file name."""
        return {}

    def finished_line(self, summary: dict) -> str:
        return (f"finished: status {summary['status']}, valid ppl {summary['valid_ppl']}, test ppl "
                f"{summary['test_ppl']} ({summary['test_tokens']} tokens), {summary['tokens_per_s'] or 0:,.0f} "
                f"tokens/s, {summary['wall_s']:.1f} s")


class TaskTrainer(Trainer):
    """One task run (rnngrad.tasks): full BPTT through whole sequences, each from a zero state.

    Shares the optimizer, clipping, divergence handling, checkpoints and resume with the
    language-model Trainer; differs in the data (the fresh batch of each step comes from a
    generator seeded by (data seed, run seed, step), so a resumed run draws what it would
    have drawn), the loss (adding: squared error of the last step's output; copy:
    cross-entropy per step, mean over every step and sequence) and the evaluation: at every
    checkpoint the test metrics of rnngrad.tasks.metrics (evaluations.csv). One "epoch" is
    the whole run: `task['steps']` steps, then the validation loss (epochs.csv).

    `task`: the run's task settings (tasks.settings_for: steps, valid_size, test_size,
    data_seed, and copy_length, copy_symbols for the copy task).
    """

    def __init__(self, cell: dict, training: dict, task: dict, *, device: str | torch.device = "cpu", log=print,
                 log_every_s: float = LOG_EVERY_S, save_every_s: float = SAVE_EVERY_S):
        self._setup(cell, training, device, log, log_every_s, save_every_s)
        self.name, self.T = cell["task"], cell["T"]
        self.task = tasks.settings_for(self.name, task)
        self.shape = {key: self.task[key] for key in ("copy_length", "copy_symbols") if key in self.task}
        self.length = tasks.sequence_length(self.name, self.T, **self.shape)
        # Full BPTT over the whole sequence: the IndRNN's bound holds over all of it.
        model_shape = {**tasks.model_shape(self.name, **self.shape), "unroll_steps": self.length}
        self.hparams = {
            **{key: cell[key] for key in cell_keys(cell)}, **model_shape,
            "train_steps": self.task["steps"], **{key: value for key, value in self.task.items() if key != "steps"},
            **{key: training[key] for key in RESULT_KEYS["training"] if key in training},
        }
        self.valid_set, self.test_set = (
            self._tensors(*tasks.eval_set(self.name, self.T, split, self.task[f"{split}_size"], self.task["data_seed"],
                                          **self.shape))
            for split in ("valid", "test"))
        self.steps_per_epoch, self.epochs = self.task["steps"], 1
        self.tokens_per_step = self.length * self.batch_size
        self._build(**model_shape)
        self.hidden = None  # no state carried between steps

    def _tensors(self, inputs: np.ndarray, targets: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch-first arrays -> time-first tensors on the device (adding targets stay (batch,))."""
        inputs = torch.from_numpy(inputs).transpose(0, 1).contiguous().to(self.device)
        targets = torch.from_numpy(targets)
        targets = (targets.t().contiguous() if targets.dim() == 2 else targets).to(self.device)
        return inputs, targets

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = tasks.training_batch(self.name, self.T, self.batch_size, self.task["data_seed"], self.cell["seed"],
                                     self.progress.step, **self.shape)
        return self._tensors(*batch)

    def task_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Adding: MSE of the last step's output; copy: cross-entropy, mean over every step and sequence."""
        if self.name == "adding":
            return F.mse_loss(outputs[-1, :, 0], targets)
        return F.cross_entropy(outputs.flatten(0, 1), targets.flatten())

    def forward_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs, _ = self.model(inputs, self.model.init_hidden(inputs.shape[1]))
        loss = self.task_loss(outputs, targets)
        return loss, loss

    @torch.no_grad()
    def evaluate_set(self, inputs: torch.Tensor, targets: torch.Tensor) -> dict:
        """tasks.metrics of the current weights on a fixed set, EVAL_CHUNK sequences per forward pass."""
        self.model.eval()
        parts = []
        for start in range(0, inputs.shape[1], EVAL_CHUNK):
            chunk = inputs[:, start:start + EVAL_CHUNK]
            outputs, _ = self.model(chunk, self.model.init_hidden(chunk.shape[1]))
            if self.name == "adding":
                parts.append(outputs[-1, :, 0].double().cpu())
            else:  # (sequences, steps, tokens)
                parts.append(F.log_softmax(outputs.double(), dim=-1).transpose(0, 1).cpu())
        self.model.train()
        batch_first = targets.t() if targets.dim() == 2 else targets
        return tasks.metrics(self.name, torch.cat(parts).numpy(), batch_first.cpu().numpy(), self.T, **self.shape)

    def validate(self) -> float:
        return self.evaluate_set(*self.valid_set)["loss"]

    def valid_ppl(self, loss: float | None) -> None:
        return None

    def on_checkpoint(self) -> None:
        """The test metrics of this checkpoint's weights (one row per step; a rewrite replaces it)."""
        p = self.progress
        result = self.evaluate_set(*self.test_set)
        row = {"step": p.step, "sequences": p.step * self.batch_size, "progress": self.fraction_done(),
               "test_loss": result["loss"], "baseline": result["baseline"], "test_ratio": result["ratio"],
               "test_accuracy": result["accuracy"], "solved": result["solved"]}
        p.evaluations = [r for r in p.evaluations if r["step"] != p.step] + [row]
        self.log(f"checkpoint at step {p.step}: test loss {result['loss']:.4g} ({result['ratio']:.3f} x baseline), "
                 f"accuracy {result['accuracy']:.3f}{', solved' if result['solved'] else ''}")

    def summary(self) -> dict:
        """The last checkpoint's test metrics (the final weights, or the last finite ones of a diverged run)."""
        p = self.progress
        final = p.evaluations[-1] if p.evaluations else {}
        first_solved = next((row["step"] for row in p.evaluations if row["solved"]), None)
        return self._summary({
            "tokens_seen": p.tokens, "sequences_seen": p.step * self.batch_size,
            "train_loss": finite_or_none(p.last_train_loss), "valid_loss": finite_or_none(p.last_valid_loss),
            "test_loss": finite_or_none(final.get("test_loss")), "baseline": tasks.baseline(self.name, self.T,
                                                                                           **self.shape),
            "test_ratio": finite_or_none(final.get("test_ratio")), "test_accuracy": final.get("test_accuracy"),
            "solved": bool(final.get("solved", False)), "first_solved_step": first_solved,
            "test_sequences": self.task["test_size"],
        })

    def extra_outputs(self) -> dict[str, pd.DataFrame]:
        return {"evaluations.csv": pd.DataFrame(self.progress.evaluations, columns=list(EVALUATION_COLUMNS))}

    def finished_line(self, summary: dict) -> str:
        return (f"finished: status {summary['status']}, test loss {summary['test_loss']} "
                f"({summary['test_ratio']} x baseline), solved {summary['solved']} (first at step "
                f"{summary['first_solved_step']}), {summary['tokens_per_s'] or 0:,.0f} tokens/s, "
                f"{summary['wall_s']:.1f} s")


def evaluated_tokens(data: torch.Tensor) -> int:
    """Tokens whose loss `evaluate` averages: every row but the last is an input, times the columns."""
    return (len(data) - 1) * data.shape[1]


def finite_or_none(value):
    return value if value is not None and math.isfinite(value) else None


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ----------------------------------------------------------------------------- one job

def train_run(cell: dict, training: dict, token_dir, run_dir, *, corpus: str = "ptb", level: str = "word",
              task: dict | None = None, threads: int = 1, device: str = "auto", log_every_s: float = LOG_EVERY_S,
              save_every_s: float = SAVE_EVERY_S) -> dict:
    """Train one grid cell into `run_dir`; resume from `run_dir/.partial` when it holds this run's progress.

    `training`: the result-defining settings (see Trainer); `threads`, `device`,
    `log_every_s` and `save_every_s` say how the job runs and go to the summary only.
    Validation each epoch reads at most `eval_max_tokens` tokens; the final test
    perplexity reads the whole test split. With `task` (the run's task settings; then
    `token_dir`, `corpus` and `level` are not used), a TaskTrainer trains on the cell's
    task, and evaluations.csv holds its test metrics at every checkpoint. Writes
    summary.json, metrics.csv, epochs.csv (evaluations.csv) and checkpoints/step_*.pt only
    once training has finished (or diverged); returns the summary.
    """
    torch.set_num_threads(threads)
    run_dir = Path(run_dir)
    partial = run_dir / PARTIAL_DIR
    execution = {"device": device, "log_every_s": log_every_s, "save_every_s": save_every_s}
    if task is not None:
        trainer = TaskTrainer(cell, training, task, **execution)
    else:
        token_dir = Path(token_dir)
        stats = json.loads((token_dir / "stats.json").read_text())
        trainer = Trainer(
            cell, training, load_split(token_dir, "train"),
            load_split(token_dir, "valid", training.get("eval_max_tokens")), load_split(token_dir, "test"),
            stats["vocab_size"], corpus=corpus, level=level, **execution,
        )
    print(f"run {run_path(cell)}: {trainer.planned_steps} steps ({trainer.steps_per_epoch} per epoch), "
          f"checkpoints at steps {trainer.checkpoint_at}, device {trainer.device}, {threads} thread(s)")
    state = load_state(partial / STATE_FILE, fingerprint(trainer.hparams))
    if state is not None:
        trainer.load_state_dict(state)
        print(f"resuming from step {trainer.progress.step} (epoch {trainer.progress.epoch}) saved in {partial}")
    else:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    trainer.run(partial)
    summary = trainer.summary()
    finalise(trainer, summary, partial, run_dir)
    print(trainer.finished_line(summary))
    return summary


def finalise(trainer: Trainer, summary: dict, partial: Path, run_dir: Path) -> None:
    """Put the declared outputs in place; the summary goes last, as it marks a finished run."""
    write_csv(run_dir / "metrics.csv", trainer.metrics_frame())
    write_csv(run_dir / "epochs.csv", trainer.epochs_frame())
    for name, frame in trainer.extra_outputs().items():
        write_csv(run_dir / name, frame)
    checkpoints = run_dir / "checkpoints"
    shutil.rmtree(checkpoints, ignore_errors=True)
    checkpoints.mkdir(parents=True)
    for path in sorted((partial / "checkpoints").glob("step_*.pt")):
        os.link(path, checkpoints / path.name)  # a link, so a crash here leaves the partial run intact
    write_json(run_dir / "summary.json", summary)
    shutil.rmtree(partial)
