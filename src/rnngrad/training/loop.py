"""The training loop (Trainer): a language model with truncated BPTT, one step after another, with
clipping, divergence as a result, checkpoints, metrics and the saves a resume needs (the
package docstring, rnngrad.training, says how it all fits)."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from rnngrad.grid import grid_keys, run_path
from rnngrad.job_keys import RESULT_KEYS
from rnngrad.model import build_model, save_checkpoint, spectral_stats
from rnngrad.training.batches import (
    EVAL_BATCH_SIZE,
    batch_starts,
    batchify,
    detach,
    evaluate,
    evaluated_tokens,
    get_batch,
    perplexity,
    steps_per_epoch,
)
from rnngrad.training.resume import STATE_FILE, Progress, fingerprint, rng_states, save_state, set_rng_states
from rnngrad.training.schedule import checkpoint_steps, group_lr, make_optimizer, next_lr

SAVE_EVERY_S = 60.0


LOG_EVERY_S = 5.0


# `current_lr`, not `lr`: tables put these beside the grid keys, whose `lr` is the initial one.
METRIC_COLUMNS = ("step", "epoch", "tokens", "train_loss", "grad_norm", "clipped", "current_lr", "wall_s")


EPOCH_COLUMNS = ("epoch", "step", "tokens", "current_lr", "train_loss", "valid_loss", "valid_ppl")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but torch sees no CUDA device")
    return torch.device(name)


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
        spec = self.model.spec  # the arch's groups: expRNN's A trains at a lower lr
        groups = spec.parameter_groups(self.model, spec.options(self.cell))
        self.optimizer = make_optimizer(self.cell["optimizer"], groups, self.cell["lr"])
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
            group["lr"] = group_lr(group, lr)

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


def finite_or_none(value):
    return value if value is not None and math.isfinite(value) else None


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
