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

Where each part lives: batches.py (the corpus in columns and windows, evaluation), schedule.py
(optimizer, lr schedules, checkpoint steps), resume.py (the saved progress), loop.py (Trainer: the
loop), task.py (TaskTrainer: a task run), job.py (train_run: the job).
"""

from rnngrad.training.batches import (
    EVAL_BATCH_SIZE,
    batch_starts,
    batchify,
    detach,
    evaluate,
    evaluated_tokens,
    get_batch,
    load_split,
    perplexity,
    steps_per_epoch,
)
from rnngrad.training.job import finalise, train_run
from rnngrad.training.loop import (
    EPOCH_COLUMNS,
    LOG_EVERY_S,
    METRIC_COLUMNS,
    SAVE_EVERY_S,
    Trainer,
    finite_or_none,
    format_seconds,
    resolve_device,
)
from rnngrad.training.resume import (
    PARTIAL_DIR,
    STATE_FILE,
    Progress,
    fingerprint,
    load_state,
    rng_states,
    save_state,
    set_rng_states,
)
from rnngrad.training.schedule import checkpoint_steps, make_optimizer, next_lr
from rnngrad.training.task import EVAL_CHUNK, EVALUATION_COLUMNS, TaskTrainer

__all__ = ["batch_starts", "batchify", "checkpoint_steps", "detach", "EPOCH_COLUMNS", "EVAL_BATCH_SIZE",
           "EVAL_CHUNK", "evaluate", "evaluated_tokens", "EVALUATION_COLUMNS", "finalise", "fingerprint",
           "finite_or_none", "format_seconds", "get_batch", "load_split", "load_state", "LOG_EVERY_S",
           "make_optimizer", "METRIC_COLUMNS", "next_lr", "PARTIAL_DIR", "perplexity", "Progress",
           "resolve_device", "rng_states", "SAVE_EVERY_S", "save_state", "set_rng_states", "STATE_FILE",
           "steps_per_epoch", "TaskTrainer", "train_run", "Trainer"]
