"""Do the cluster requests fit? Requested vs measured wall time and peak memory of a finished grid.

Snakemake's `benchmark:` directive records, for every `train_model` and `probe_gradients`
job, its script's wall time (`s`, seconds) and peak resident memory (`max_rss`, MB) in
`<results>/benchmarks/<rule>/<run>.tsv`. This script recomputes what each job asks SLURM
for on its first attempt (src/rnngrad/resources.py, from the same config and corpus
statistics) and prints estimate / measured and request / measured for each rule:

    snakemake --cores 2 models curves --configfile config/paper.yaml benchmarks/resource_fit.yaml
    python benchmarks/resource_fit.py results/resource_fit \
        --config config/paper.yaml benchmarks/resource_fit.yaml

- `time`, `mem`: the estimate of the script, safety factor included, over what the
  benchmark measured: >= 1 covers the job, the calibration aims at <= 2.
- `runtime`, `mem_mb`: the request itself over the same measurement. It adds what a
  cluster job needs beyond its script (two Snakemake processes, resources.SNAKEMAKE_MB
  and SNAKEMAKE_S) and is whole minutes with a floor (MIN_RUNTIME_MIN): far above 2 for
  jobs of seconds, close to `time` and `mem` for long and large ones.

A job resumed after a failure was benchmarked on its last attempt only: run this on a
grid that ran through once. On a machine busy with other work the measured times grow
and the time ratios shrink: `cpu_%` (Snakemake's mean_load, the CPU the job used in
percent of one core) well below 100 x threads says the job waited for a core.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import yaml

from rnngrad import resources as res
from rnngrad.config import validate_config
from rnngrad.grid import expand_grid, run_path

RULES = ("train_model", "probe_gradients")


def requests(rule: str, cell: dict, config: dict, stats: dict) -> dict:
    """Script estimates (safety factors included) and first-attempt requests of one job,
    as workflow/rules/resources.smk computes them."""
    training, probe = config["training"], config["probe"]
    if rule == "train_model":
        threads = training["threads"]
        return {"estimate_s": res.training_seconds(cell, training, stats, threads) * res.SAFETY,
                "estimate_mb": res.training_script_mb(cell, training, stats) * res.MEM_SAFETY,
                "runtime_min": res.training_runtime(cell, training, stats, threads),
                "mem_mb": res.training_mem_mb(cell, training, stats)}
    threads = probe["threads"]
    return {"estimate_s": res.probe_seconds(cell, probe, training, stats, threads) * res.SAFETY,
            "estimate_mb": res.probe_script_mb(cell, probe, training, stats) * res.MEM_SAFETY,
            "runtime_min": res.probe_runtime(cell, probe, training, stats, threads),
            "mem_mb": res.probe_mem_mb(cell, probe, training, stats)}


def update(config: dict, changes: dict) -> None:
    """Merge `changes` into `config`, sections key by key (as Snakemake merges config files)."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            update(config[key], value)
        else:
            config[key] = value


def fit_table(results: Path, config: dict, stats: dict) -> pd.DataFrame:
    """One row per benchmarked job: measured s and max_rss, requests, and their ratios."""
    rows = []
    for cell in expand_grid(config["grid"], config["exclude"]):
        run = run_path(cell)
        for rule in RULES:
            path = results / "benchmarks" / rule / f"{run}.tsv"
            if not path.is_file():
                continue
            measured = pd.read_csv(path, sep="\t").iloc[-1]  # the last of any repeats
            asked = requests(rule, cell, config, stats)
            rows.append({
                "rule": rule, "run": run, "s": measured["s"], "max_rss": measured["max_rss"],
                "cpu_%": measured["mean_load"],  # < 100 / thread: the job did not have its cores to itself
                **{f"asked_{key}": value for key, value in asked.items()},
                "time": asked["estimate_s"] / measured["s"],
                "mem": asked["estimate_mb"] / measured["max_rss"],
                "runtime": asked["runtime_min"] * 60 / measured["s"],
                "mem_mb": asked["mem_mb"] / measured["max_rss"],
            })
    if not rows:
        raise SystemExit(f"no benchmark files under {results / 'benchmarks'}: run the grid first "
                         "(rules train_model and probe_gradients write them)")
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """min / median / max of each ratio per rule."""
    ratios = ["time", "mem", "runtime", "mem_mb"]
    out = table.groupby("rule")[ratios].agg(["min", "median", "max"])
    out.insert(0, ("jobs", ""), table.groupby("rule").size())
    out.insert(1, ("cpu_%", "median"), table.groupby("rule")["cpu_%"].median())
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="results_dir of a finished grid")
    parser.add_argument("--config", type=Path, nargs="+", help="the grid's --configfile file(s): "
                        "as Snakemake, each updates the ones before it (default: "
                        "<results>/config.yaml, the effective config that `snakemake all` writes)")
    parser.add_argument("--data-dir", type=Path, help="where the corpus was tokenised (default: the config's)")
    parser.add_argument("--jobs", action="store_true", help="also print every job")
    args = parser.parse_args(argv)

    # As Snakemake: each --configfile over the ones before it (config/config.yaml is read only without one).
    config = {}
    for path in args.config or [args.results / "config.yaml"]:
        if not path.is_file():
            raise SystemExit(f"config {path} does not exist: pass the grid's config with --config")
        update(config, yaml.safe_load(path.read_text()) or {})
    config = validate_config(config)
    data_dir = args.data_dir or Path(config["data_dir"])
    level = config["corpus"]["level"]
    stats_path = data_dir / "tokens" / f"{config['corpus']['name']}-{level}" / "stats.json"
    if not stats_path.is_file():
        raise SystemExit(f"{stats_path} does not exist: pass the grid's data directory with --data-dir")
    stats = res.corpus_stats(stats_path, level)

    table = fit_table(args.results, config, stats)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    if args.jobs:
        print(table.drop(columns="run").round(2).to_string(index=False))
        print()
    print("estimate / measured (time, mem: the script; >= 1 covers it, goal <= 2) and "
          "first-attempt request / measured (runtime, mem_mb):")
    print(summary(table).round(2).to_string())
    uncovered = table[(table.runtime < 1) | (table.mem_mb < 1)]
    if len(uncovered):
        print(f"\n{len(uncovered)} job(s) asked for less than they used:")
        print(uncovered[["rule", "run", "s", "asked_runtime_min", "max_rss", "asked_mem_mb"]].to_string(index=False))
    print(f"\ntotal: {table.s.sum() / 3600:.2f} h measured, {table.asked_runtime_min.sum() / 60:.2f} h requested; "
          f"largest job {table.max_rss.max():.0f} MB measured, {table.asked_mem_mb.max():.0f} MB requested")


if __name__ == "__main__":
    main()
