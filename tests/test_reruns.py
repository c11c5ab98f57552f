"""What a change reruns on a finished grid: how a job runs reruns nothing; what defines its results reruns it.

One tiny grid (config/test.yaml, two archs, one init scale) is run to the end once in a
private checkout; each test then changes one thing and counts the jobs of `snakemake -n`.
"""

from __future__ import annotations

import ast
import copy
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, job_counts, run_snakemake, tiny_grid

from rnngrad import archs
from rnngrad.figures import FIGURES, figures_for
from rnngrad.grid import expand_grid, run_path
from rnngrad.job_code import imported_modules, job_code
from rnngrad.job_keys import EXECUTION_KEYS, RESULT_KEYS
from rnngrad.model import damaged_checkpoint_message

pytestmark = pytest.mark.slow

SCRIPTS = ROOT / "workflow" / "scripts"
TRAINING_TABLES = {"runs", "epochs", "training_steps"}
PROBE_TABLES = {"gradient_curves", "gradient_summary", "temporal_contributions", "jacobian_steps"}
CORPUS_FIGURES = figures_for("corpus")  # what a language-model grid draws
# Rules that write no file of their own: scheduled whenever anything below them is.
TARGETS = {"all": 1}


def figures_reading(tables: set[str]) -> int:
    return sum(bool(set(FIGURES[name].tables) & tables) for name in CORPUS_FIGURES)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A finished tiny grid: (snakefile of the private checkout, work dir, its config file's contents)."""
    snakefile, work, configfile, config = tiny_grid(tmp_path_factory.mktemp("reruns"))
    run_snakemake(work, "--configfile", str(configfile), snakefile=snakefile)
    return snakefile, work, config


def cells(grid) -> list[dict]:
    """The grid's runs, read from its effective config (the config file merged with config.yaml and defaults)."""
    effective = yaml.safe_load((grid[1] / "results" / "config.yaml").read_text())
    return expand_grid(effective["grid"], effective["exclude"])


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def dry_run(grid, *args: str, config: dict | None = None) -> tuple[dict, str]:
    """(jobs per rule, stdout) of `snakemake -n` on the finished grid, with `config` if given."""
    snakefile, work, base = grid
    configfile = write_config(work / "changed.yaml", config if config is not None else base)
    done = run_snakemake(work, "-n", *args, "--configfile", str(configfile), snakefile=snakefile)
    jobs = job_counts(done.stdout)
    jobs.pop("total", None)
    return jobs, done.stdout


def changed(config: dict, section: str, **values) -> dict:
    config = copy.deepcopy(config)
    config[section].update(values)
    return config


def scheduled_runs(stdout: str, rule: str) -> set[str]:
    """The `run` wildcard of every job of `rule` in a dry run's job list."""
    runs = set()
    for block in stdout.split("\n\n"):
        if re.search(rf"^(local)?rule {rule}:", block.strip(), re.MULTILINE):
            runs |= set(re.findall(r"wildcards: run=(\S+)", block))
    return runs


def test_every_training_and_probe_key_is_classified_once():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    for section in ("training", "probe", "task"):
        keys = set(schema["properties"][section]["properties"])
        result, execution = set(RESULT_KEYS[section]), set(EXECUTION_KEYS[section])
        assert not result & execution, section
        assert result | execution == keys, f"{section}: unclassified {keys - result - execution}"


def test_a_finished_grid_has_nothing_to_do(grid):
    assert dry_run(grid)[0] == {}


def test_a_finished_grid_moved_with_its_checkout_has_nothing_to_do(grid, tmp_path):
    """`mv` or `rsync -a` of a finished grid (checkout, results and .snakemake/) to another directory."""
    snakefile, work, config = grid
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(snakefile.parent.parent, moved, symlinks=True)  # copy2: modification times kept
    moved_grid = (moved / snakefile.parent.name / "Snakefile", moved / work.name, config)
    assert dry_run(moved_grid)[0] == {}


def test_code_inputs_are_every_module_a_job_executes_named_relative_to_the_work_dir(grid):
    """The shared modules a job's script imports, and for a training or probe job its own arch's file only."""
    _, stdout = dry_run(grid, "--forceall")
    for rule, script in (("train_model", "train_model.py"), ("probe_gradients", "probe_gradients.py"),
                         ("collect_runs", "collect_runs.py"), ("make_tables", "make_tables.py")):
        jobs = re.split(r"^\[.*\]$", stdout, flags=re.MULTILINE)  # each job's block starts with its date
        blocks = [b for b in jobs if re.search(rf"^(local)?rule {rule}:", b.strip(), re.MULTILINE)]
        assert blocks, rule
        for block in blocks:
            inputs = re.search(r"^\s*input: (.*)$", block, re.MULTILINE).group(1).split(", ")
            code = {path for path in inputs if "rnngrad" in path}
            assert all(not os.path.isabs(path) for path in code), code
            expected = set(job_code(SCRIPTS / script))
            if rule in ("train_model", "probe_gradients"):
                arch = re.search(r"wildcards: run=arch~([^/]+)/", block).group(1)
                expected |= {f"archs/{arch}.py", *job_code(archs.arch_file(arch))}
            assert {path.split("src/rnngrad/")[1] for path in code} == expected, rule


@pytest.mark.parametrize("script", sorted(path.name for path in (ROOT / "workflow" / "scripts").glob("*.py")))
def test_job_code_is_what_importing_the_script_loads(script):
    """The static import closure against what a fresh interpreter actually loads: the same, but for the
    registry's arch files, which the registry loads by listing its directory (a job's code input
    names its own arch's file only)."""
    entries = sorted(imported_modules(SCRIPTS / script))
    code = f"import sys; import {', '.join(entries)}; print(sorted(m for m in sys.modules if m.startswith('rnngrad')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}).stdout
    files = set()
    for module in ast.literal_eval(loaded):
        path = ROOT / "src" / Path(*module.split("."))
        files.add((path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).relative_to(
            ROOT / "src" / "rnngrad").as_posix())
    arch_files = {f"archs/{name}.py" for name in archs.BUILT_IN_ORDER}
    code = set(job_code(SCRIPTS / script))
    assert not code & arch_files
    assert code == files - arch_files
    assert files & arch_files in (set(), arch_files)  # the registry loads every built-in arch, or none


def test_an_edited_file_is_parsed_again(tmp_path):
    """imported_modules parses each file once per process (the DAG asks it for every job), but a
    file that changes is read again: its new imports count."""
    user_file = tmp_path / "my_cell.py"
    user_file.write_text("from rnngrad import tasks\n")
    assert imported_modules(user_file) == {"rnngrad", "rnngrad.tasks"}
    user_file.write_text("from rnngrad.archs import base\nimport rnngrad.grid\n")
    assert imported_modules(user_file) == {"rnngrad.archs", "rnngrad.archs.base", "rnngrad.grid"}


@pytest.mark.parametrize("section,key,value", [
    ("training", "threads", 2), ("training", "log_every_s", 30), ("training", "device", "cpu"),
    ("probe", "threads", 2),
])
def test_how_a_job_runs_reruns_nothing(grid, section, key, value):
    config = grid[2]
    assert config[section].get(key) != value
    assert dry_run(grid, config=changed(config, section, **{key: value}))[0] == {}


@pytest.mark.parametrize("key,value", [("max_tokens", 3000), ("checkpoints", [0.0, 0.5, 1.0])])
def test_result_defining_training_keys_rerun_every_run(grid, key, value):
    config = grid[2]
    jobs, _ = dry_run(grid, config=changed(config, "training", **{key: value}))
    runs = len(cells(grid))
    assert jobs == {"write_config": 1, "train_model": runs, "probe_gradients": runs, "collect_runs": 1,
                    "collect_curves": 1, "make_tables": 1, "plot_figure": len(CORPUS_FIGURES), **TARGETS}


def test_the_lr_of_one_arch_reruns_that_run_only(grid):
    config = copy.deepcopy(grid[2])
    config["grid"]["lr"] = [1.0, 0.5]
    config["exclude"] = [{"arch": "lstm", "lr": 1.0}, {"arch": "rnn_tanh", "lr": 0.5}]
    jobs, stdout = dry_run(grid, config=config)
    assert jobs == {"write_config": 1, "train_model": 1, "probe_gradients": 1, "collect_runs": 1,
                    "collect_curves": 1, "make_tables": 1, "plot_figure": len(CORPUS_FIGURES), **TARGETS}
    lstm = [run_path({**cell, "lr": 0.5}) for cell in cells(grid) if cell["arch"] == "lstm"]
    assert scheduled_runs(stdout, "train_model") == scheduled_runs(stdout, "probe_gradients") == set(lstm)


def test_probe_windows_rerun_every_probe_and_no_training(grid):
    config = grid[2]
    jobs, _ = dry_run(grid, config=changed(config, "probe", windows=config["probe"]["windows"] + 1))
    assert jobs == {"write_config": 1, "probe_gradients": len(cells(grid)), "collect_curves": 1,
                    "make_tables": 1, "plot_figure": figures_reading(PROBE_TABLES), **TARGETS}


def test_editing_collection_code_reruns_only_collection_and_what_reads_it(grid):
    snakefile = grid[0]
    module = snakefile.parent / "src" / "rnngrad" / "collect.py"
    original, stat = module.read_text(), module.stat()
    try:
        # Newer than every output and a new checksum (a bare touch reruns nothing).
        module.write_text(original.replace('"""Grid-wide tables', '"""Grid-wide (edited) tables'))
        os.utime(module, (stat.st_atime, time.time() + 3600))  # whenever the checkout was made
        jobs, _ = dry_run(grid)
    finally:
        module.write_text(original)
        os.utime(module, (stat.st_atime, stat.st_mtime))
    assert jobs == {"collect_runs": 1, "collect_curves": 1, "make_tables": 1,
                    "plot_figure": figures_reading(TRAINING_TABLES | PROBE_TABLES), **TARGETS}


def test_the_damaged_checkpoint_advice_retrains_exactly_that_run(grid):
    """The --forcerun target that load_checkpoint's error names reruns that run and what depends on it."""
    run = run_path(cells(grid)[0])
    checkpoint = Path("results") / "runs" / run / "checkpoints" / "step_00000000.pt"  # as the probe job sees it
    message = damaged_checkpoint_message(checkpoint, RuntimeError("failed finding central directory"))
    target = re.search(r"--forcerun (\S+)`", message).group(1)
    jobs, stdout = dry_run(grid, "--forcerun", target)
    assert jobs == {"train_model": 1, "probe_gradients": 1, "collect_runs": 1, "collect_curves": 1,
                    "make_tables": 1, "plot_figure": len(CORPUS_FIGURES), **TARGETS}
    assert scheduled_runs(stdout, "train_model") == {run}


def edited(module: Path, text: str):
    """Write `text` to `module` with a modification time after every output, and give a restorer."""
    original, stat = module.read_text(), module.stat()
    module.write_text(text)
    os.utime(module, (stat.st_atime, time.time() + 3600))

    def restore():
        module.write_text(original)
        os.utime(module, (stat.st_atime, stat.st_mtime))

    return restore


def test_editing_one_arch_file_reruns_only_that_archs_runs_and_what_follows(grid):
    snakefile = grid[0]
    module = snakefile.parent / "src" / "rnngrad" / "archs" / "lstm.py"
    restore = edited(module, module.read_text().replace('"""LSTM (Hochreiter', '"""The LSTM (Hochreiter'))
    try:
        jobs, stdout = dry_run(grid)
    finally:
        restore()
    lstm = {run_path(cell) for cell in cells(grid) if cell["arch"] == "lstm"}
    assert lstm and scheduled_runs(stdout, "train_model") == scheduled_runs(stdout, "probe_gradients") == lstm
    assert jobs == {"train_model": len(lstm), "probe_gradients": len(lstm), "collect_runs": 1, "collect_curves": 1,
                    "make_tables": 1, "plot_figure": len(CORPUS_FIGURES), **TARGETS}


def test_adding_an_arch_or_a_hyperparameter_of_one_renames_and_retrains_nothing(grid):
    """A new arch file in the package, and a new hyperparameter of the LSTM (its default the LSTM as it
    was): no run's path changes, and nothing but the edited arch's own runs (its file is their code) reruns."""
    snakefile, work, config = grid
    package = snakefile.parent / "src" / "rnngrad" / "archs"
    new_arch = package / "leaky_rnn.py"
    shutil.copy2(ROOT / "examples" / "leaky_rnn.py", new_arch)
    lstm = package / "lstm.py"
    restore = edited(lstm, lstm.read_text().replace(
        '    hyperparameters = {\n', '    hyperparameters = {\n        "lstm_peepholes": {"type": "number", '
        '"default": 0.0, "description": "a new one, off by default"},\n'))
    try:
        code = "from rnngrad import archs; print(archs.names(), archs.get('lstm').hyperparameters)"
        listing = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env={**os.environ, "PYTHONPATH": str(snakefile.parent / "src")})
        assert "leaky_rnn" in listing.stdout and "lstm_peepholes" in listing.stdout
        new_config = copy.deepcopy(config)
        new_config["grid"]["arch"] = [*config["grid"]["arch"], "leaky_rnn"]
        new_config["exclude"] = [{"arch": "leaky_rnn"}]  # in the registry and the schema, not trained here
        _, stdout = dry_run(grid, config=new_config)
        os.utime(lstm, (lstm.stat().st_atime, lstm.stat().st_mtime - 7200))  # the same edit, older than the outputs
        untouched, _ = dry_run(grid, config=new_config)
    finally:
        restore()
        new_arch.unlink()
    lstm_runs = {run_path(cell) for cell in cells(grid) if cell["arch"] == "lstm"}
    assert scheduled_runs(stdout, "train_model") == lstm_runs  # on the code trigger: their arch's file changed
    # Only the effective config is rewritten (it lists the new arch and key): no training, probe or figure.
    assert untouched == {"write_config": 1, **TARGETS}, "the new arch and hyperparameter rename and rerun nothing"
