"""The cluster path against a real SLURM: `snakemake --profile profiles/slurm`.

Needs a reachable SLURM with accounting (`sinfo` and `sacct` work), e.g. the one-node
cluster of `sudo bash ci/slurm/start.sh`, and the plugin (`pip install -e ".[slurm]"`).
Skipped when `sinfo` fails, unless RNNGRAD_REQUIRE_SLURM=1 (as in .ci/run): then it fails.

A tiny config runs twice, through SLURM and locally; every heavy job must show up in
`sacct` as COMPLETED with the rule's name, the threads, memory and time that the rule
asked for, and the tables of both runs must be equal. Then two faults: a training job
cancelled with `scancel` and one killed by its time limit must each be noticed, resubmitted
and resumed, and end with the numbers of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from rnngrad import resources as res
from rnngrad.config import validate_config
from rnngrad.grid import expand_grid, run_path
from rnngrad.training.loop import Trainer

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
SLURM_RULES = {"train_model", "probe_gradients"}  # everything else is a localrule
TARGETS = ["models", "curves"]  # runs.csv and gradient_summary.csv (figures are local)
# Columns that measure the machine, not the model.
TIMING = {"wall_s", "tokens_per_s", "device"}
# Poll SLURM every 2 s instead of the plugin's 40 s and more: a test waits on each job.
FAST = ["--jobs", "4", "--latency-wait", "5", "--slurm-init-seconds-before-status-checks", "2",
        "--seconds-between-status-checks", "2", "--max-status-checks-per-second", "2"]
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)")


def _plugin_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None


def _slurm_problem() -> str | None:
    """Why the cluster test cannot run here, or None."""
    if not _plugin_installed():
        return 'snakemake-executor-plugin-slurm is not installed (pip install -e ".[slurm]")'
    for command in (["sinfo", "-h"], ["sacct", "-n", "-X", "-S", "now"]):
        if shutil.which(command[0]) is None:
            return f"`{command[0]}` is not on PATH"
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed: {done.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def slurm():
    problem = _slurm_problem()
    if problem:
        message = f"no usable SLURM cluster: {problem}; start one with `sudo bash ci/slurm/start.sh`"
        if os.environ.get("RNNGRAD_REQUIRE_SLURM") == "1":
            pytest.fail(f"RNNGRAD_REQUIRE_SLURM=1 but {message}")
        pytest.skip(message)


def tiny_config(tmp: Path, name: str, grid: dict | None = None, training: dict | None = None) -> Path:
    """config/test.yaml cut to two archs (a vanilla and a gated one), data and results in tmp;
    `grid` and `training` update those sections."""
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    config["grid"].update({"arch": ["rnn_tanh", "lstm"], "init_scale": [1.0], **(grid or {})})
    config["training"].update({"threads": 1, **(training or {})})
    config["probe"]["threads"] = 1
    config["data_dir"] = str(tmp / name / "data")
    config["results_dir"] = "results"
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_snakemake(args: list[str], directory: Path, nice: int = 0) -> subprocess.Popen:
    """Snakemake in `directory`; `nice` > 0 lowers its CPU priority (a reference run that
    must not slow down the SLURM jobs beside it)."""
    directory.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [*(["nice", "-n", str(nice)] if nice else []), *SNAKEMAKE, "--directory", str(directory), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def run_snakemake(args: list[str], directory: Path, timeout: int = 600) -> str:
    process = start_snakemake(args, directory)
    try:
        log, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()  # our own child, by its pid
        log, _ = process.communicate()
    assert process.returncode == 0, log[-6000:]
    return log


def sacct(job_ids: list[str]) -> pd.DataFrame:
    fields = ["JobID", "JobName", "State", "AllocCPUS", "ReqMem", "Timelimit", "Comment"]
    done = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-j", ",".join(job_ids), f"--format={','.join(fields)}"],
        capture_output=True, text=True, check=True,
    )
    rows = [line.split("|", len(fields) - 1) for line in done.stdout.splitlines() if line]
    return pd.DataFrame(rows, columns=fields)


def minutes(timelimit: str) -> int:
    """SLURM time limit ([D-]HH:MM:SS) in minutes."""
    days, _, clock = timelimit.rpartition("-")
    hours, mins, secs = (int(x) for x in clock.split(":"))
    return int(days or 0) * 1440 + hours * 60 + mins + (secs > 0)


def tables(results: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for name in ("runs", "gradient_summary", "gradient_curves"):
        frame = pd.read_csv(results / "tables" / f"{name}.csv")
        frame = frame.drop(columns=[c for c in frame.columns if c in TIMING])
        out[name] = frame.sort_values(list(frame.columns[:20])).reset_index(drop=True)
    return out


@pytest.mark.slurm
@pytest.mark.slow
def test_grid_runs_through_slurm_and_matches_local_run(slurm, tmp_path):
    config_path = tiny_config(tmp_path, "slurm")
    config = validate_config(yaml.safe_load(config_path.read_text()))
    cells = expand_grid(config["grid"], config["exclude"])

    # The local reference runs meanwhile (own data dir, so the two never tokenise into
    # the same files): the SLURM run spends most of its time waiting on the scheduler.
    t0 = time.monotonic()
    local_run = start_snakemake(
        [*TARGETS, "--cores", "1", "--configfile", str(tiny_config(tmp_path, "local"))], tmp_path / "local"
    )
    try:
        log = run_snakemake(
            [*TARGETS, "--profile", str(REPO / "profiles" / "slurm"), "--configfile", str(config_path), *FAST],
            tmp_path / "slurm",
        )
        t_slurm = time.monotonic() - t0
    finally:
        local_log, _ = local_run.communicate(timeout=600)
    assert local_run.returncode == 0, local_log[-6000:]
    print(f"SLURM run {t_slurm:.0f} s, both runs {time.monotonic() - t0:.0f} s")

    # Every heavy job was submitted: one SLURM job per rule and grid cell.
    submitted = SUBMITTED.findall(log)
    assert len(submitted) == len(SLURM_RULES) * len(cells), log[-4000:]
    for job_id, slurm_log in submitted:
        assert Path(slurm_log.rstrip(").")).is_file(), f"no SLURM log for job {job_id}"

    # ... and SLURM's accounting saw each one finish, with the rule's resources.
    stats = res.corpus_stats(Path(config["data_dir"]) / "tokens" / "ptb-char" / "stats.json", "char")
    expected_runtime = {
        "train_model": {run_path(c): res.training_runtime(c, config["training"], stats, 1) for c in cells},
        "probe_gradients": {
            run_path(c): res.probe_runtime(c, config["probe"], config["training"], stats, 1) for c in cells
        },
    }
    expected_mem = {
        "train_model": {run_path(c): res.training_mem_mb(c, config["training"], stats) for c in cells},
        "probe_gradients": {
            run_path(c): res.probe_mem_mb(c, config["probe"], config["training"], stats) for c in cells
        },
    }
    jobs = sacct([job_id for job_id, _ in submitted])
    assert sorted(jobs.JobID) == sorted(job_id for job_id, _ in submitted)
    assert set(jobs.State) == {"COMPLETED"}, jobs.to_string()
    assert jobs.JobName.nunique() == 1, "one Snakemake run (its uuid names every job)"
    seen = {rule: set() for rule in SLURM_RULES}
    for job in jobs.itertuples():
        match = re.fullmatch(r"rule_(\w+?)_wildcards_(.+)", job.Comment)
        assert match and match.group(1) in SLURM_RULES, job.Comment
        rule, wildcards = match.groups()
        run = next(r for r in expected_runtime[rule] if r.replace("/", "_") == wildcards)
        seen[rule].add(run)
        threads = config["training" if rule == "train_model" else "probe"]["threads"]
        assert int(job.AllocCPUS) == threads
        assert minutes(job.Timelimit) == expected_runtime[rule][run]
        assert int(job.ReqMem.rstrip("M")) == expected_mem[rule][run]
    assert all(seen[rule] == set(expected_runtime[rule]) for rule in SLURM_RULES), seen

    # Same numbers as the local run (CPU, one thread each: training is deterministic).
    local, cluster = tables(tmp_path / "local" / "results"), tables(tmp_path / "slurm" / "results")
    for name in local:
        assert len(local[name]) > 0
        pd.testing.assert_frame_equal(cluster[name], local[name], check_exact=False, rtol=1e-9, obj=name)
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "slurm" / "results").rglob("summary.json")]
    assert len(summaries) == len(cells) and all(s["status"] in ("ok", "diverged") for s in summaries)


def test_paper_dag_builds_quickly_with_slurm_profile(tmp_path):
    """The paper grid's DAG (dry run) through the SLURM profile, in seconds, no cluster needed."""
    paper = REPO / "config" / "paper.yaml"
    if not paper.exists():
        pytest.skip("config/paper.yaml does not exist yet")
    if not _plugin_installed():
        pytest.skip('snakemake-executor-plugin-slurm is not installed (pip install -e ".[slurm]")')
    t0 = time.monotonic()
    log = run_snakemake(
        ["-n", "--profile", str(REPO / "profiles" / "slurm"), "--configfile", str(paper),
         "--config", f"results_dir={tmp_path / 'results'}", f"data_dir={tmp_path / 'data'}"],
        tmp_path, timeout=300,
    )
    elapsed = time.monotonic() - t0
    config = validate_config(yaml.safe_load(paper.read_text()))
    n_cells = len(expand_grid(config["grid"], config["exclude"]))
    assert re.search(rf"^train_model\s+{n_cells}$", log, re.M), log[-3000:]
    assert re.search(rf"^probe_gradients\s+{n_cells}$", log, re.M), log[-3000:]
    assert elapsed < 60, f"dry run of {n_cells} cells took {elapsed:.0f} s"


class Output:
    """A running process's output, line by line with the wall-clock time each line arrived."""

    def __init__(self, process: subprocess.Popen):
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self.reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append((time.time(), line))

    def text(self) -> str:
        return "".join(line for _, line in list(self.lines))

    def first(self, pattern: str) -> tuple[float, re.Match] | None:
        """(arrival time, match) of the first line that matches `pattern`."""
        for arrived, line in list(self.lines):
            if found := re.search(pattern, line):
                return arrived, found
        return None


def saved_progress(partial: Path) -> bool:
    """The run has saved its resume state after a checkpoint past step 0 (the state is
    written right after each checkpoint, so it is at least as new as that checkpoint)."""
    state = partial / "state.pt"
    later = [p for p in (partial / "checkpoints").glob("step_*.pt") if p.name != "step_00000000.pt"]
    try:
        return bool(later) and state.stat().st_mtime >= min(p.stat().st_mtime for p in later)
    except FileNotFoundError:  # between the atomic renames
        return False


def jobs_of(run: str, output: str) -> list[str]:
    """SLURM job ids that Snakemake submitted for `run`'s training, in order."""
    folder = "rule_train_model/" + run.replace("/", "_") + "/"
    return [job_id for job_id, log in SUBMITTED.findall(output) if folder in log]


def sacct_times(job_id: str) -> dict:
    done = subprocess.run(["sacct", "-X", "-P", "-n", "-j", job_id, "--format=State,Timelimit,Start,End"],
                          capture_output=True, text=True, check=True)
    state, limit, start, end = done.stdout.strip().split("|")
    return {"state": state, "minutes": minutes(limit),
            "start": datetime.fromisoformat(start).timestamp(), "end": datetime.fromisoformat(end).timestamp()}


def run_results(run_dir: Path) -> dict[str, pd.DataFrame | dict]:
    """What a run computed: its metrics, epochs, summary and final weights, without wall times."""
    summary = json.loads((run_dir / "summary.json").read_text())
    last = sorted((run_dir / "checkpoints").glob("step_*.pt"))[-1]
    return {
        "metrics": pd.read_csv(run_dir / "metrics.csv").drop(columns="wall_s"),
        "epochs": pd.read_csv(run_dir / "epochs.csv"),
        "summary": {k: v for k, v in summary.items() if k not in TIMING},
        "weights": torch.load(last, weights_only=True)["state_dict"],
    }


def tokens_in(seconds: float, cell: dict, training: dict, vocab_size: int = 51) -> int:
    """Training tokens that `cell` gets through in `seconds` on this machine at its fastest (the
    best of three measurements: a shared machine's noise only slows it down), one thread (the
    jobs' setting), measured with the trainer the jobs run on random tokens of the char vocabulary."""
    steps = 1000
    tokens = steps * cell["bptt"] * cell["batch_size"]
    ids = np.random.default_rng(0).integers(0, vocab_size, tokens + 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    speeds = []
    try:
        for _ in range(3):
            trainer = Trainer(cell, {**training, "max_tokens": tokens, "checkpoints": [1.0]}, ids, ids[:200],
                              ids[:200], vocab_size, device="cpu", log=lambda line: None, log_every_s=1e9)
            trainer.run(partial=None)
            assert trainer.progress.step == steps, trainer.progress.status
            speeds.append(trainer.progress.tokens / trainer.progress.train_s)
    finally:
        torch.set_num_threads(threads)
    return int(seconds * max(speeds))


@pytest.mark.slurm
@pytest.mark.slow
def test_cancelled_and_timed_out_training_is_retried_and_resumes(slurm, tmp_path):
    """Two training runs through SLURM: one is `scancel`ed mid-run, the other outlives its
    1-minute time limit (runtime 4^(attempt-1): 1, then 4, then 16 minutes, so that a retry
    on a busy machine is not cut off just as it finishes: Snakemake would then delete the
    finished outputs and the next attempt would start over). Snakemake must see each job
    end within 3 minutes, resubmit it, and the run must resume from its last save and end
    with the numbers of an uninterrupted run."""
    # The epoch's size is measured on this machine, one job alone, so that the runs train for
    # 20 s (1 epoch) and 120 s (6 epochs) at its fastest: the long run outlives SLURM's
    # 1-minute limit (enforced within 30 s of it) even then, and its resumed retry fits the
    # 4 minutes of the second attempt while sharing the CPUs (the runs here took up to 1.5x
    # longer beside the reference run; a third attempt has 16 minutes). Checkpoints (each
    # one also saves the resume state, as does every epoch end) every 10 % of the steps.
    grid = {"arch": ["rnn_tanh"], "epochs": [1, 6]}
    training = {"checkpoints": [step / 10 for step in range(11)]}
    config = validate_config(yaml.safe_load(tiny_config(tmp_path, "slurm", grid, training).read_text()))
    cells = sorted(expand_grid(config["grid"], config["exclude"]), key=lambda c: c["epochs"])
    training["max_tokens"] = tokens_in(20.0, cells[0], config["training"])
    config_path = tiny_config(tmp_path, "slurm", grid, training)
    short, long = (run_path(c) for c in cells)
    results = tmp_path / "slurm" / "results" / "runs"

    # The uninterrupted reference, at low priority so that it does not slow the SLURM jobs.
    reference = start_snakemake(
        ["models", "--cores", "1", "--configfile", str(tiny_config(tmp_path, "local", grid, training))],
        tmp_path / "local", nice=19,
    )
    cluster = start_snakemake(
        ["models", "--profile", str(REPO / "profiles" / "slurm"), "--configfile", str(config_path), *FAST,
         "--set-resources", "train_model:runtime=4 ** (attempt - 1)"],
        tmp_path / "slurm",
    )
    output = Output(cluster)
    try:
        deadline = time.monotonic() + 300
        while not saved_progress(results / short / ".partial"):
            assert cluster.poll() is None and time.monotonic() < deadline, output.text()[-4000:]
            time.sleep(0.2)
        cancelled = jobs_of(short, output.text())[0]
        subprocess.run(["scancel", cancelled], check=True)
        t_cancel = time.time()
        cluster.wait(timeout=900)
    finally:
        if cluster.poll() is None:
            cluster.kill()  # our own child, by its pid
        reference_log, _ = reference.communicate(timeout=600)
        output.reader.join(timeout=10)
    log = output.text()
    assert cluster.returncode == 0, log[-6000:]
    assert reference.returncode == 0, reference_log[-4000:]

    # Snakemake saw the cancelled job fail within 3 minutes and submitted it again.
    noticed = output.first(rf"SLURM-job '{cancelled}' failed, SLURM status is: 'CANCELLED'")
    assert noticed, log[-4000:]
    assert noticed[0] - t_cancel < 180, f"cancellation noticed after {noticed[0] - t_cancel:.0f} s"
    short_jobs = [sacct_times(job_id) for job_id in jobs_of(short, log)]
    assert jobs_of(short, log)[0] == cancelled and short_jobs[0]["state"].startswith("CANCELLED"), short_jobs
    assert short_jobs[-1]["state"] == "COMPLETED" and len(short_jobs) >= 2, short_jobs

    # The long run's first job hit its time limit; each retry asked for more time.
    long_jobs = [sacct_times(job_id) for job_id in jobs_of(long, log)]
    assert long_jobs[0]["state"] == "TIMEOUT", long_jobs
    assert [job["minutes"] for job in long_jobs] == [4**k for k in range(len(long_jobs))], long_jobs
    assert long_jobs[-1]["state"] == "COMPLETED" and len(long_jobs) >= 2, long_jobs
    timed_out = output.first(rf"SLURM-job '{jobs_of(long, log)[0]}' failed, SLURM status is: 'TIMEOUT'")
    assert timed_out, log[-4000:]
    assert timed_out[0] - long_jobs[0]["end"] < 180, "time-out noticed after 3 minutes"
    print(f"cancellation noticed after {noticed[0] - t_cancel:.0f} s, time-out after "
          f"{timed_out[0] - long_jobs[0]['end']:.0f} s; attempts: {len(short_jobs)} (cancelled run), "
          f"{len(long_jobs)} (timed-out run); {training['max_tokens']:,} tokens per epoch")

    for cell in cells:
        run = run_path(cell)
        # The last attempt resumed from a save past step 0 ...
        train_log = (tmp_path / "slurm" / "results" / "logs" / "train_model" / f"{run}.log").read_text()
        resumed = re.search(r"resuming from step (\d+)", train_log)
        assert resumed, train_log[-2000:]
        summary = json.loads((results / run / "summary.json").read_text())
        assert 0 < int(resumed.group(1)) < summary["planned_steps"], (run, resumed.group(0))
        # ... and ended exactly where the uninterrupted run did.
        got, want = run_results(results / run), run_results(tmp_path / "local" / "results" / "runs" / run)
        for name in ("metrics", "epochs"):
            pd.testing.assert_frame_equal(got[name], want[name], check_exact=True, obj=f"{run} {name}")
        assert got["summary"] == want["summary"]
        assert got["weights"].keys() == want["weights"].keys()
        assert all(torch.equal(got["weights"][k], want["weights"][k]) for k in want["weights"]), run
