"""Helpers shared by the test files: one torch thread, Snakemake in a temporary directory or a private checkout."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"


@pytest.fixture(autouse=True)
def no_leftover_archs():
    """A test that validates a config naming arch_files registers its archs in this process: remove
    them after it, so that no later test sees a registry (and schema) the shipped configs do not."""
    from rnngrad import archs

    before = set(archs.user_names())
    yield
    for name in set(archs.user_names()) - before:
        archs.unregister(name)


@pytest.fixture
def one_thread():
    """Bitwise-reproducible CPU numbers: one intra-op thread."""
    torch.set_num_threads(1)


def run_snakemake(workdir: Path, *args: str, snakefile: Path = SNAKEFILE, cores: int = 2,
                  timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    """`snakemake -s snakefile --directory workdir --cores N args...`; asserts success when `check`.

    Put targets before `--configfile` (it takes several values).
    """
    command = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(workdir),
               "--cores", str(cores), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def job_counts(output: str) -> dict[str, int]:
    """Jobs per rule from Snakemake's 'Job stats' table ({} when there is nothing to do)."""
    if "Job stats:" not in output:
        return {}
    stats = output.split("Job stats:")[-1]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)\s*$", stats, re.MULTILINE)}


def private_checkout(destination: Path) -> Path:
    """The workflow and package copied, so a test can edit the code without touching the repo.

    The Snakefile puts its own src/ first on the jobs' PYTHONPATH, so jobs import the copy.
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for part in ("workflow", "config", "envs", "src/rnngrad"):
        shutil.copytree(ROOT / part, destination / part, ignore=ignore)
    shutil.copy2(ROOT / "Snakefile", destination / "Snakefile")
    return destination / "Snakefile"


def tiny_grid(root: Path) -> tuple[Path, Path, Path, dict]:
    """A private checkout under `root` and a work dir holding the config file of a tiny grid
    (config/test.yaml with a tanh RNN and an LSTM at init scale 0.5; the repo's shared,
    deterministic tokens): (snakefile, work dir, config file, config)."""
    snakefile = private_checkout(root / "repo")
    work = root / "work"
    work.mkdir()
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config["grid"].update(arch=["rnn_tanh", "lstm"], init_scale=[0.5])
    config["results_dir"] = "results"
    config["data_dir"] = str(ROOT / "data")
    configfile = work / "grid.yaml"
    configfile.write_text(yaml.safe_dump(config))
    return snakefile, work, configfile, config


def launch_training(cell: dict, settings: dict, token_dir, run_dir, save_every_s: float = 60.0,
                    task: dict | None = None) -> subprocess.Popen:
    """train_run in a child process (one thread, CPU), so a test can SIGKILL it; `task` for a task run."""
    code = (
        "import json, sys, torch; from rnngrad.training import train_run; "
        "cell, settings, tokens, run, every, task = json.loads(sys.argv[1]); "
        "train_run(cell, settings, tokens, run, task=task, threads=1, device='cpu', save_every_s=every)"
    )
    payload = json.dumps([cell, settings, None if token_dir is None else str(token_dir), str(run_dir), save_every_s,
                          task])
    return subprocess.Popen([sys.executable, "-c", code, payload], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def saved_step(state_path) -> int | None:
    """The step of a run's resume state, None while there is none (or it is being replaced)."""
    try:
        return torch.load(state_path, weights_only=False)["progress"]["step"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return None


def kill_and_resume(cell: dict, settings: dict, token_dir, root: Path, kill_after: int,
                    task: dict | None = None) -> tuple[Path, Path, int]:
    """Train `cell` uninterrupted into root/reference; train it again into root/killed, saving
    after every step, SIGKILL it once it has saved step `kill_after`, and rerun it to the end.

    Returns (reference dir, killed-and-resumed dir, the step the rerun resumed from).
    """
    import signal
    import time

    reference = launch_training(cell, settings, token_dir, root / "reference", task=task)
    assert reference.wait(timeout=300) == 0, reference.stdout.read().decode()
    run_dir = root / "killed"
    state_path = run_dir / ".partial" / "state.pt"
    process = launch_training(cell, settings, token_dir, run_dir, save_every_s=0.0, task=task)
    deadline = time.monotonic() + 120
    while (saved_step(state_path) or 0) < kill_after and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run_dir / "summary.json").exists()
    resumed = launch_training(cell, settings, token_dir, run_dir, task=task)
    output = resumed.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 0 and "resuming from step " in output, output
    return root / "reference", run_dir, int(output.split("resuming from step ")[1].split()[0])
