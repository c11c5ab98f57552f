"""`snakemake -n` builds the whole DAG for every shipped config.

The Snakefile's `configfile:` is config/config.yaml; a `--configfile` is deep-merged on
top of it (its keys win, keys it leaves out keep config.yaml's values), so the grid of
config/test.yaml is config.yaml's grid updated with test.yaml's lists.
"""

import copy
from pathlib import Path

import pytest
import yaml
from conftest import job_counts, run_snakemake

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
    return job_counts(run_snakemake(workdir, "--dry-run", *args, cores=1, timeout=300).stdout)


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
    done = run_snakemake(tmp_path, "--dry-run", "--configfile", str(bad), timeout=300, check=False)
    assert done.returncode != 0
    assert "config key grid.arch.0: 'lstn' is not allowed" in done.stdout + done.stderr
