"""`snakemake -n` builds the whole DAG for every shipped config.

The Snakefile's `configfile:` is config/config.yaml; a `--configfile` is deep-merged on
top of it (its keys win, keys it leaves out keep config.yaml's values), so the grid of
config/test.yaml is config.yaml's grid updated with test.yaml's lists.
"""

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rnngrad.config import validate_config
from rnngrad.grid import expand_grid

ROOT = Path(__file__).resolve().parents[1]


def merged(base: dict, override: dict) -> dict:
    """Snakemake's merge of a --configfile into the Snakefile's configfile."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(result.get(key), dict)
        result[key] = merged(result[key], value) if nested else value
    return result


def dry_run(workdir: Path, *args: str) -> dict:
    """Job counts of a dry run, e.g. {'train_model': 12, ...}."""
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
               "--dry-run", "--cores", "1", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stats = done.stdout.split("Job stats:")[-1]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)\s*$", stats, re.MULTILINE)}


@pytest.mark.parametrize("configfile", [None, "config/test.yaml"])
def test_dry_run_builds_the_dag(tmp_path, configfile):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    args = []
    if configfile:
        config = merged(config, yaml.safe_load((ROOT / configfile).read_text()))
        args = ["--configfile", str(ROOT / configfile)]
    config = validate_config(config)
    jobs = dry_run(tmp_path, *args)
    assert jobs["train_model"] == len(expand_grid(config["grid"], config["exclude"]))
    assert jobs["download_corpus"] == 1 and jobs["tokenise_corpus"] >= 1
    assert jobs["all"] == 1


def test_dry_run_of_the_corpus_target(tmp_path):
    assert dry_run(tmp_path, "corpus") == {"corpus": 1, "download_corpus": 1, "tokenise_corpus": 2, "total": 4}


def test_bad_config_fails_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  arch: [lstn]\n")
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
               "--dry-run", "--configfile", str(bad)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "config key grid.arch.0: 'lstn' is not allowed" in done.stdout + done.stderr
