"""A task run (rnngrad.tasks): the training loop on whole sequences drawn fresh at every step, with its
test metrics at every checkpoint.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from rnngrad import tasks
from rnngrad.grid import cell_keys
from rnngrad.job_keys import RESULT_KEYS
from rnngrad.training.loop import LOG_EVERY_S, SAVE_EVERY_S, Trainer, finite_or_none

# A task run's test metrics at each checkpoint (evaluations.csv; rnngrad.tasks.metrics).
EVALUATION_COLUMNS = ("step", "sequences", "progress", "test_loss", "baseline", "test_ratio", "test_accuracy",
                      "solved")


EVAL_CHUNK = 500  # sequences per forward pass when a task run evaluates


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
        """Adding: MSE of the last step's output; copy and selective copy: cross-entropy, mean over every
        step and sequence."""
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
