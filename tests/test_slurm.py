"""The cluster path against a real SLURM: `snakemake --profile profiles/slurm`.

Needs a reachable SLURM with accounting (`sinfo` and `sacct` work), e.g. the one-node
cluster of `sudo bash ci/slurm/start.sh`, and the plugin (`pip install -e ".[slurm]"`).
Skipped when `sinfo` fails, unless RNNGRAD_REQUIRE_SLURM=1 (as in .ci/run): then it fails.

A tiny config runs twice, through SLURM and locally; every heavy job must show up in
`sacct` as COMPLETED with the rule's name, the threads, memory and time that the rule
asked for, and the tables of both runs must be equal.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rnngrad import resources as res
from rnngrad.config import validate_config
from rnngrad.grid import expand_grid, run_path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
SLURM_RULES = {"train_model", "probe_gradients"}  # everything else is a localrule
TARGETS = ["models", "curves"]  # runs.csv and gradient_summary.csv (figures are local)
# Columns that measure the machine, not the model.
TIMING = {"wall_s", "tokens_per_s", "device"}


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


def tiny_config(tmp: Path, name: str) -> Path:
    """config/test.yaml cut to two archs (a vanilla and a gated one), data and results in tmp."""
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    config["grid"].update(arch=["rnn_tanh", "lstm"], init_scale=[1.0])
    config["training"]["threads"] = 1
    config["probe"]["threads"] = 1
    config["data_dir"] = str(tmp / name / "data")
    config["results_dir"] = "results"
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_snakemake(args: list[str], directory: Path) -> subprocess.Popen:
    directory.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [*SNAKEMAKE, "--directory", str(directory), *args],
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
            [*TARGETS, "--profile", str(REPO / "profiles" / "slurm"), "--configfile", str(config_path),
             "--jobs", "4", "--latency-wait", "5", "--slurm-init-seconds-before-status-checks", "2",
             "--seconds-between-status-checks", "2", "--max-status-checks-per-second", "2"],
            tmp_path / "slurm",
        )
        t_slurm = time.monotonic() - t0
    finally:
        local_log, _ = local_run.communicate(timeout=600)
    assert local_run.returncode == 0, local_log[-6000:]
    print(f"SLURM run {t_slurm:.0f} s, both runs {time.monotonic() - t0:.0f} s")

    # Every heavy job was submitted: one SLURM job per rule and grid cell.
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)", log)
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
