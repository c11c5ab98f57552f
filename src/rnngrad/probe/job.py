"""The probe job: every checkpoint of one run, probed on the same windows, written as four CSVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rnngrad.grid import run_columns
from rnngrad.io import write_csv
from rnngrad.model import load_checkpoint
from rnngrad.probe.gradients import probe_model
from rnngrad.probe.summary import TABLES, summarise_probe
from rnngrad.probe.windows import make_windows, task_windows


def probe_run(checkpoint_dir, tokens_path, probe_config: dict, outputs: dict, threads: int = 1) -> dict:
    """Probe every checkpoint of one run; write the four per-run CSVs.

    outputs: {'curves', 'summary', 'contributions', 'jacobians'} -> path. Checkpoints
    whose weights are not finite (a diverged run) are skipped with a message. A task
    run (its checkpoints' hparams name a task) is probed on its test sequences
    (task_windows; `tokens_path` is not read). Returns the tables as DataFrames.
    """
    torch.set_num_threads(threads)
    tables = {name: [] for name in TABLES}
    paths = sorted(Path(checkpoint_dir).glob("step_*.pt"))
    if not paths:
        raise FileNotFoundError(f"no checkpoints step_*.pt in {checkpoint_dir}")
    windows = None
    for path in paths:
        model, checkpoint = load_checkpoint(path)
        if windows is None:  # the same windows for every checkpoint of the run
            if "task" in checkpoint["hparams"]:
                windows, targets, task, dependency = task_windows(checkpoint["hparams"], probe_config["windows"])
                burn_in = 0
            else:
                burn_in, targets, task, dependency = probe_config["burn_in"], None, None, None
                windows = make_windows(np.load(tokens_path), probe_config["windows"], burn_in,
                                       probe_config["max_lag"], probe_config["seed"])
        # The weights the model runs with: finite parameters can still give a non-finite
        # materialised W_hh (orthogonal RNN: base expm(A)) or lambda (LRU: exp(i exp(theta_log))).
        running = list(model.plain_state_dict().values()) + [w.detach() for w in model.recurrent_weights()]
        if not all(torch.isfinite(w).all() for w in running):
            print(f"{path.name}: weights are not finite (diverged); not probed", flush=True)
            continue
        result = probe_model(model, windows, burn_in, probe_config["jacobian_windows"], task=task, targets=targets)
        keys = {**run_columns(checkpoint["hparams"]), "step": checkpoint["step"],
                "tokens_seen": checkpoint["tokens_seen"], "progress": checkpoint.get("progress")}
        print(f"{path.name}: median loss {np.median(result['loss']):.3f}", flush=True)
        for name, frame in summarise_probe(result, model, probe_config, dependency).items():
            wanted = keys if name in ("curves", "summary") else {k: v for k, v in keys.items() if k != "tokens_seen"}
            frame = frame.copy()
            for column, value in reversed(list(wanted.items())):
                frame.insert(0, column, [value] * len(frame))
            tables[name].append(frame)
    frames = {name: pd.concat(parts, ignore_index=True) if parts else pd.DataFrame() for name, parts in tables.items()}
    for name in TABLES:
        write_csv(outputs[name], frames[name])
    return frames
