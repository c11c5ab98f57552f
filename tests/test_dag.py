"""Every shipped config means what its file says, and `snakemake -n` builds its whole DAG.

The Snakefile reads config/config.yaml only when no `--configfile` is given: a shipped
config is the whole config, keys it leaves out taking the schema's defaults, never a
patch on top of the default config.
"""

from pathlib import Path

import pytest
import yaml
from conftest import job_counts, run_snakemake

from rnngrad import archs
from rnngrad.config import load_schema, validate_config
from rnngrad.grid import expand_grid

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(path.name for path in (ROOT / "config").glob("*.yaml"))


def with_schema_defaults(schema: dict, value: dict, kind: str | None = None) -> dict:
    """`value` with every key it leaves out set to the schema's default, section by section.

    A key the schema marks `x-only: corpus` or `x-only: task` gets its default only in a
    config of that kind (a task config is one with a `task` section).
    """
    kind = kind or ("task" if "task" in value else "corpus")
    filled = dict(value)
    for name, subschema in schema.get("properties", {}).items():
        if name not in filled and "default" in subschema and subschema.get("x-only", kind) == kind:
            filled[name] = subschema["default"]
        if "properties" in subschema and isinstance(filled.get(name), dict):
            filled[name] = with_schema_defaults(subschema, filled[name], kind)
    return filled


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_effective_config_is_the_file_plus_schema_defaults(tmp_path, name):
    """The config Snakemake builds from each shipped file, as results/<...>/config.yaml records it."""
    path = ROOT / "config" / name
    written = yaml.safe_load(path.read_text())
    args = [] if name == "config.yaml" else ["--configfile", str(path)]
    target = f"{written['results_dir']}/config.yaml"
    run_snakemake(tmp_path, target, *args, cores=1, timeout=300)
    effective = yaml.safe_load((tmp_path / target).read_text())
    before = set(archs.user_names())
    archs.load_arch_files(written.get("arch_files", []))  # its own archs' keys are in its schema
    try:
        assert effective == with_schema_defaults(load_schema(), written)
    finally:
        for name in set(archs.user_names()) - before:
            archs.unregister(name)


def test_paper_config_is_what_its_header_and_the_readme_say():
    config = validate_config(yaml.safe_load((ROOT / "config" / "paper.yaml").read_text()))
    runs = len(expand_grid(config["grid"], config["exclude"], arch_grid=config["arch_grid"]))
    header = (ROOT / "config" / "paper.yaml").read_text()
    assert f"({runs} training runs" in header
    readme_line = next(line for line in (ROOT / "README.md").read_text().splitlines() if "config/paper.yaml` |" in line)
    assert f"({runs} runs, {config['grid']['epochs'][0]} epochs each)" in readme_line
    assert config["probe"]["windows"] == 256 and config["probe"]["max_lag"] == 100
    assert config["training"]["loss_reduction"] == "sum_over_time"


def dry_run(workdir: Path, *args: str) -> dict:
    """Job counts of a dry run, e.g. {'train_model': 12, ...}."""
    return job_counts(run_snakemake(workdir, "--dry-run", *args, cores=1, timeout=300).stdout)


@pytest.mark.parametrize("configfile", [None, "config/test.yaml"])
def test_dry_run_builds_the_dag(tmp_path, configfile):
    config = validate_config(yaml.safe_load((ROOT / (configfile or "config/config.yaml")).read_text()))
    args = ["--configfile", str(ROOT / configfile)] if configfile else []
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
