"""The learning-rate sweep's table: validation perplexity of every finished run, by arch and learning rate.

    snakemake models --cores 2 --configfile config/lr_sweep.yaml
    python benchmarks/lr_sweep.py results/lr_sweep

Reads each run's summary.json (rnngrad.training: `status`, `valid_ppl`, `diverged_step`)
and prints one row per arch (and its own hyperparameters where the sweep varies them),
one column per learning rate: the validation perplexity after the run's tokens, `div@s`
for a run that diverged at step s. The best learning rate of each row is starred.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from rnngrad import archs
from rnngrad.grid import parse_run_path


def read_runs(results: Path) -> list[dict]:
    rows = []
    for summary in sorted((results / "runs").rglob("summary.json")):
        run = summary.parent.relative_to(results / "runs").as_posix()
        cell, values = parse_run_path(run), json.loads(summary.read_text())
        own = {key: cell[key] for key in archs.get(cell["arch"]).hyperparameters}
        rows.append({"arch": cell["arch"], "own": own, "lr": cell["lr"], "optimizer": cell["optimizer"],
                     "status": values.get("status"), "valid_ppl": values.get("valid_ppl"),
                     "diverged_step": values.get("diverged_step")})
    return rows


def table(rows: list[dict]) -> str:
    rates = sorted({row["lr"] for row in rows}, reverse=True)
    groups: dict[tuple, dict] = {}
    for row in rows:
        label = " ".join([row["arch"], row["optimizer"]] + [f"{k}={v}" for k, v in row["own"].items()
                                                            if len({str(r["own"].get(k)) for r in rows
                                                                    if r["arch"] == row["arch"]}) > 1])
        groups.setdefault((archs.names().index(row["arch"]), label), {})[row["lr"]] = row
    lines = [f"{'arch':<44}" + "".join(f"{'lr ' + format(rate, 'g'):>12}" for rate in rates)]
    for (_, label), by_rate in sorted(groups.items()):
        finite = {rate: row["valid_ppl"] for rate, row in by_rate.items()
                  if row["status"] == "ok" and row["valid_ppl"] is not None and math.isfinite(row["valid_ppl"])}
        best = min(finite, key=finite.get) if finite else None
        cells = []
        for rate in rates:
            row = by_rate.get(rate)
            if row is None:
                cells.append("")
            elif row["status"] != "ok":
                cells.append(f"div@{row['diverged_step']}")
            else:
                shown = f"{row['valid_ppl']:.0f}" if row["valid_ppl"] < 1e5 else f"{row['valid_ppl']:.1e}"
                cells.append(shown + ("*" if rate == best else ""))
        lines.append(f"{label:<44}" + "".join(f"{cell:>12}" for cell in cells))
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(read_runs(Path(sys.argv[1] if len(sys.argv) > 1 else "results/lr_sweep"))))
