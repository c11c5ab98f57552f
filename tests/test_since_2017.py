"""The remedies since 2017 in the pipeline: config/test_since_2017.yaml end to end (every new arch
trained and probed on the three long-range tasks, in the table and every task figure in its colour,
the dependency of selective copying read per sequence), and config/since_2017.yaml, the measured
grid, is what the issue asks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, run_snakemake
from test_remedies import assert_every_task_figure_names_the_remedies

from rnngrad import archs
from rnngrad.config import validate_config
from rnngrad.grid import expand_grid

SINCE_2017 = ("exprnn", "antisymmetric_rnn", "lem", "mingru", "s6")
TASKS = ("adding", "copy", "selective_copy")


def load(name: str) -> dict:
    return validate_config(yaml.safe_load((ROOT / "config" / name).read_text()))


def test_the_measured_config_has_every_arch_on_the_three_tasks():
    config = load("since_2017.yaml")
    seed_archs = {"rnn_tanh", "irnn", "lstm", "gru"}
    assert seed_archs | {"orthogonal_rnn", "indrnn", "lru"} | set(SINCE_2017) == set(config["grid"]["arch"])
    assert set(config["task"]["name"]) == set(TASKS)
    cells = expand_grid(config["grid"], config["exclude"], config["task"], config["arch_grid"])
    every_arch = {("adding", 100), ("copy", 100), ("selective_copy", 50), ("selective_copy", 100)}
    for task, T in every_arch:
        assert {cell["arch"] for cell in cells if (cell["task"], cell["T"]) == (task, T)} == set(config["grid"]["arch"])
    # T = 500 for the archs that solve adding at T = 100, and expRNN and the LRU on copy (docs/results.md)
    longer = {(cell["task"], cell["arch"]) for cell in cells if cell["T"] == 500}
    assert longer == {("adding", arch) for arch in ("irnn", "lstm", "gru", "lem", "mingru", "s6")} | {
        ("copy", "exprnn"), ("copy", "lru")}
    assert {(cell["task"], cell["T"]) for cell in cells} == every_arch | {("adding", 500), ("copy", 500)}


@pytest.mark.slow
def test_the_tiny_since_2017_pipeline_trains_probes_and_draws_every_new_arch(tmp_path):
    name = ROOT / "config" / "test_since_2017.yaml"
    run_snakemake(tmp_path, "--configfile", str(name))
    config = load("test_since_2017.yaml")
    tables = tmp_path / config["results_dir"] / "tables"
    runs = pd.read_csv(tables / "runs.csv")
    assert len(runs) == len(expand_grid(config["grid"], config["exclude"], config["task"])) == 21
    assert (runs["status"] == "ok").all()
    summary = pd.read_csv(tables / "gradient_summary.csv")
    for arch in SINCE_2017:
        for task in TASKS:
            probed = summary[(summary["arch"] == arch) & (summary["task"] == task) & (summary["state"] == "h")]
            assert len(probed) and np.isfinite(probed["dep_lag_median"]).all(), (arch, task)
    # selective copying: each sequence's own lag of its last symbol, within [copy_length + 1, T + 1]
    selective = summary[(summary["task"] == "selective_copy") & (summary["state"] == "h")]
    assert (selective["dep_lag_min"] >= 4).all() and (selective["dep_lag_max"] <= 9).all()
    assert (selective["dep_lag_min"] < selective["dep_lag_max"]).any(), "the lag varies from sequence to sequence"
    lem = summary[(summary["arch"] == "lem")]
    assert {"h", "z"} <= set(lem["state"]), "both of LEM's states probed"
    assert set(pd.read_csv(tables / "long_range.csv")["task"]) == set(TASKS)
    assert_every_task_figure_names_the_remedies(tables, SINCE_2017)
    assert all(archs.get(arch).family == "remedy" for arch in SINCE_2017)
