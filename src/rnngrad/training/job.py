"""The train_model job: one grid cell trained into its run directory, resumed from `.partial/` when
that holds its progress; the declared outputs appear only once it has finished.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from rnngrad.grid import run_path
from rnngrad.io import write_csv, write_json
from rnngrad.training.batches import load_split
from rnngrad.training.loop import LOG_EVERY_S, SAVE_EVERY_S, Trainer
from rnngrad.training.resume import PARTIAL_DIR, STATE_FILE, fingerprint, load_state
from rnngrad.training.task import TaskTrainer


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
