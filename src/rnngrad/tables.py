"""The paper's tables, from the tidy tables: each written as CSV, Markdown and LaTeX.

- `perplexity_table`: final validation and test perplexity per grid cell (mean +- sd over
  seeds), beside a published anchor where the cell's config matches one.
- `gradient_fit_table`: fitted slope of log10 g(k) and gradient horizon per grid cell, at
  initialisation and after training (top layer, hidden state h).
- `long_range_table` (task runs): per task, T and cell, the final test loss against the
  task's baseline, seed by seed, how many seeds solved it and from which step, and the
  gradient that reached the dependency at initialisation.
Markdown and LaTeX are written here (no `tabulate` dependency); the CSV keeps the raw
numbers, the text formats show "mean ± sd".
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from rnngrad.grid import TASK_KEYS, format_value, grid_keys
from rnngrad.io import write_csv, write_text
from rnngrad.selection import (
    STAGES,
    at_stage,
    cell_axes,
    censored_median,
    diverged_runs,
    group_cells,
    is_censored,
    numeric,
    sorted_cells,
    top_layer_state,
    with_cells,
)

# Published results a grid cell can be compared with: the config it must match
# (grid keys, plus corpus/training keys when runs.csv has them) and the numbers.
ANCHORS = (
    {
        "name": "Zaremba et al. 2014, small non-regularised LSTM",
        "match": {"arch": "lstm", "hidden_size": 200, "num_layers": 2, "init": "uniform", "init_scale": 0.1,
                  "optimizer": "sgd", "lr": 1.0, "clip": 5.0, "bptt": 20, "batch_size": 20, "epochs": 13,
                  "corpus": "ptb", "level": "word", "init_range": 0.1},
        "valid_ppl": 120.7,
        "test_ppl": 114.5,
    },
)
PAPER_TABLES = ("perplexity", "gradient_fits")
TASK_TABLES = ("long_range",)


def tables_for(kind: str) -> tuple[str, ...]:
    """The tables make_tables writes for runs of kind `kind` ('corpus' or 'task')."""
    return TASK_TABLES if kind == "task" else PAPER_TABLES


def _anchor_for(row: dict, columns) -> dict | None:
    for anchor in ANCHORS:
        if all(key not in columns or _same(row.get(key), value) for key, value in anchor["match"].items()):
            return anchor
    return None


def _same(a, b) -> bool:
    if isinstance(b, float) and a is not None:
        try:
            return math.isclose(float(a), b)
        except (TypeError, ValueError):
            return False
    return a == b


def perplexity_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per grid cell: seeds, diverged runs, valid/test perplexity mean and sd, anchors."""
    runs = numeric(with_cells(runs), ["valid_ppl", "test_ppl"])
    keys = cell_axes(runs)
    rows = []
    for cell, group in group_cells(runs, keys):
        ok = group[group["status"] == "ok"]
        row = {**cell, "seeds": len(group), "diverged": int((group["status"] == "diverged").sum())}
        for metric in ("valid_ppl", "test_ppl"):
            values = ok[metric].dropna()
            row[f"{metric}_mean"] = values.mean() if len(values) else np.nan
            row[f"{metric}_sd"] = values.std(ddof=1) if len(values) > 1 else np.nan
        anchor = _anchor_for(group.iloc[0].to_dict(), runs.columns)
        row["anchor"] = anchor["name"] if anchor else ""
        row["anchor_valid_ppl"] = anchor["valid_ppl"] if anchor else np.nan
        row["anchor_test_ppl"] = anchor["test_ppl"] if anchor else np.nan
        rows.append(row)
    return sorted_cells(pd.DataFrame(rows), keys)


def gradient_fit_table(gradient_summary: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per grid cell: slope (mean, sd over seeds) and horizon at initialisation and after training.

    Top recurrent layer, hidden state h. "trained" is each run's last checkpoint, for runs
    that finished (`status` ok in runs.csv); diverged runs are counted instead. Horizons
    censored at the probe's max lag K are only known to be >= K: `horizon_*_median` is
    their median with each censored one at K, exact unless `horizon_*_median_censored`
    (then only a lower bound); `horizon_*_censored` counts the censored runs.
    """
    summary = numeric(with_cells(top_layer_state(gradient_summary, "h")), ["slope", "horizon"])
    diverged = diverged_runs(runs)
    stages = {stage: at_stage(summary, stage, diverged) for stage in STAGES}
    keys = cell_axes(summary)
    rows = []
    for cell, group in group_cells(summary, keys):
        row = {**cell, "seeds": group["run"].nunique(), "diverged": len(set(group["run"]) & diverged)}
        for stage, rows_stage in stages.items():
            sel = rows_stage[rows_stage.index.isin(group.index)]
            slope = sel["slope"].dropna()
            censored = is_censored(sel["horizon_censored"])
            median, lower_bound = censored_median(sel["horizon"], censored)
            row[f"slope_{stage}_mean"] = slope.mean() if len(slope) else np.nan
            row[f"slope_{stage}_sd"] = slope.std(ddof=1) if len(slope) > 1 else np.nan
            row[f"horizon_{stage}_median"] = median
            row[f"horizon_{stage}_median_censored"] = lower_bound
            row[f"horizon_{stage}_censored"] = int(censored[sel["horizon"].notna()].sum())
        rows.append(row)
    return sorted_cells(pd.DataFrame(rows), keys)


# long_range_table's columns at initialisation <- gradient_summary's columns of each seed.
DEPENDENCY_COLUMNS = {"dep_log10_init": "dep_norm_log10_median",
                      "second_marker_log10_init": "second_marker_norm_log10_median"}


def long_range_table(runs: pd.DataFrame, gradient_summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (task, T, cell): the final test metrics of each seed against the baseline.

    From runs.csv (each run's summary: the last checkpoint's test metrics, the final weights
    or the last finite ones of a diverged run): `ratio_mean` / `ratio_sd` over the runs with
    a finite test loss, `ratios` and `first_solved` seed by seed (in seed order; '–' for a
    run that never solved it), `solved` (runs solved at the end), `accuracy_mean` (adding:
    share |error| / 2 < 0.04; copy: recalled symbols right). From gradient_summary (top
    layer, h, step 0): `dep_log10_init`, the median over seeds of each seed's median over
    windows of log10 g(k_w)/g(0) at the window's own dependency lag k_w (adding: the first
    marker; copy: the last symbol; NaN where a seed's value is censored), `dep_lag_min` /
    `dep_lag_max` the range of those lags; `second_marker_log10_init` likewise (adding).
    """
    runs = numeric(with_cells(runs), ["test_loss", "test_ratio", "test_accuracy", "baseline", "first_solved_step"])
    axes = [k for k in cell_axes(runs) if k not in TASK_KEYS]
    keys = [*TASK_KEYS, *axes]
    init = pd.DataFrame(columns=["run"])
    if gradient_summary is not None and "dependency" in gradient_summary:
        init = top_layer_state(gradient_summary, "h")
        init = numeric(init[init["step"] == 0], [c for c in DEPENDENCY_COLUMNS.values() if c in init])
    rows = []
    for cell, group in group_cells(runs, keys):
        group = group.sort_values("seed")
        finite = group["test_ratio"].dropna()
        seeds = init[init["run"].isin(list(group["run"]))]
        rows.append({
            **cell, "seeds": len(group), "diverged": int((group["status"] == "diverged").sum()),
            "baseline": group["baseline"].iloc[0],
            "test_loss_mean": group["test_loss"].mean(),
            "ratio_mean": finite.mean() if len(finite) else np.nan,
            "ratio_sd": finite.std(ddof=1) if len(finite) > 1 else np.nan,
            "ratios": " / ".join(_ratio(v) for v in group["test_ratio"]),
            "solved": int(group["solved"].astype(str).str.lower().eq("true").sum()),
            "first_solved": " / ".join("–" if not np.isfinite(v) else f"{v:g}" for v in group["first_solved_step"]),
            "accuracy_mean": group["test_accuracy"].mean(),
            "dep_lag_min": seeds["dep_lag_min"].min() if "dep_lag_min" in seeds else np.nan,
            "dep_lag_max": seeds["dep_lag_max"].max() if "dep_lag_max" in seeds else np.nan,
            **{column: _median_of_seeds(seeds, source, len(group)) for column, source in DEPENDENCY_COLUMNS.items()},
        })
    return sorted_cells(pd.DataFrame(rows), keys)


def _median_of_seeds(seeds: pd.DataFrame, column: str, n_seeds: int) -> float:
    """The median over the seeds of a cell; NaN unless every seed has a finite value."""
    values = seeds[column].to_numpy(dtype=float) if column in seeds else np.array([])
    return float(np.median(values)) if len(values) == n_seeds and np.isfinite(values).all() else np.nan


def _ratio(value) -> str:
    return "–" if not np.isfinite(value) else (f"{value:.3f}" if 0.01 <= value < 100 else f"{value:.1e}")


def display_long_range(table: pd.DataFrame) -> pd.DataFrame:
    """The long-range table as text: ratios seed by seed, solved counts, the gradient at the dependency."""
    out = pd.DataFrame(_display_keys(table))
    out["seeds (diverged)"] = [f"{s} ({d})" if d else f"{s}" for s, d in zip(table["seeds"], table["diverged"])]
    out["baseline"] = [f"{b:.4f}" for b in table["baseline"]]
    out["test loss / baseline (per seed)"] = table["ratios"]
    out["solved"] = [f"{s}/{n}" for s, n in zip(table["solved"], table["seeds"])]
    out["first solved at step"] = table["first_solved"]
    out["accuracy"] = [f"{a:.3f}" if np.isfinite(a) else "–" for a in table["accuracy_mean"]]
    out["g(dep)/g(0) at init"] = [f"1e{v:.1f} ({_lag_range(lo, hi)})" if np.isfinite(v) else "–"
                                  for v, lo, hi in zip(table["dep_log10_init"], table["dep_lag_min"],
                                                       table["dep_lag_max"])]
    if np.isfinite(table["second_marker_log10_init"]).any():
        out["g(2nd marker)/g(0) at init"] = [f"1e{v:.1f}" if np.isfinite(v) else "–"
                                             for v in table["second_marker_log10_init"]]
    return out


def _lag_range(low, high) -> str:
    return f"k={low:g}" if low == high else f"k={low:g}..{high:g}"


# ---------------------------------------------------------------------------- formats


def _mean_sd(mean, sd, digits: int) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    text = f"{mean:.{digits}f}"
    return text + (f" ± {sd:.{digits}f}" if sd is not None and np.isfinite(sd) else "")


def _display_keys(table: pd.DataFrame) -> dict:
    names = {"arch": "arch", "hidden_size": "hidden", "num_layers": "layers", "init_scale": "init scale",
             "forget_bias": "forget bias", "batch_size": "batch"}
    return {names.get(k, k): table[k].map(_label) for k in TASK_KEYS + grid_keys() if k in table}


def _label(value) -> str:
    """A grid value as text; a missing clip (None, or NaN after a DataFrame) is 'none'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    return format_value(value)


def display_perplexity(table: pd.DataFrame) -> pd.DataFrame:
    """The perplexity table as text cells: 'mean ± sd', anchors beside."""
    out = pd.DataFrame(_display_keys(table))
    out["seeds (diverged)"] = [f"{s} ({d})" if d else f"{s}" for s, d in zip(table["seeds"], table["diverged"])]
    out["valid ppl"] = [_mean_sd(m, s, 1) for m, s in zip(table["valid_ppl_mean"], table["valid_ppl_sd"])]
    out["test ppl"] = [_mean_sd(m, s, 1) for m, s in zip(table["test_ppl_mean"], table["test_ppl_sd"])]
    if table["anchor"].astype(bool).any():
        out["published valid / test"] = [f"{v:.1f} / {t:.1f} ({name})" if name else ""
                                         for name, v, t in zip(table["anchor"], table["anchor_valid_ppl"],
                                                               table["anchor_test_ppl"])]
    return out


def _horizon(median, lower_bound, n_censored) -> str:
    """'12', or '≥20 (1 censored)' when the median is only a lower bound."""
    if not np.isfinite(median):
        return "–"
    text = ("≥" if lower_bound else "") + f"{median:g}"
    return text + (f" ({n_censored} censored)" if n_censored else "")


def display_gradient_fits(table: pd.DataFrame) -> pd.DataFrame:
    """Slope as 'mean ± sd' (decades per step), horizon as a median, '≥' when only a lower bound."""
    out = pd.DataFrame(_display_keys(table))
    out["seeds (diverged)"] = [f"{s} ({d})" if d else f"{s}" for s, d in zip(table["seeds"], table["diverged"])]
    for stage, label in (("init", "at init"), ("trained", "trained")):
        out[f"slope {label}"] = [_mean_sd(m, s, 3) for m, s in
                                 zip(table[f"slope_{stage}_mean"], table[f"slope_{stage}_sd"])]
        out[f"horizon {label}"] = [
            _horizon(*values) for values in zip(table[f"horizon_{stage}_median"],
                                                table[f"horizon_{stage}_median_censored"],
                                                table[f"horizon_{stage}_censored"])]
    return out


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "±": r"$\pm$", "≥": r"$\geq$", "–": "--"}


def latex_escape(text) -> str:
    return "".join(LATEX_SPECIAL.get(char, char) for char in str(text))


def to_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table (needs \\usepackage{booktabs})."""
    columns = "l" * len(table.columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{latex_escape(caption)}}}",
             rf"\label{{{label}}}", rf"\begin{{tabular}}{{{columns}}}", r"\toprule",
             " & ".join(latex_escape(c) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in table.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


CAPTIONS = {
    "perplexity": "Final perplexity per grid cell (mean ± sd over seeds; diverged runs counted, not averaged), "
                  "beside the published result where the configuration matches one.",
    "long_range": "Long-range tasks: final test loss over the task's baseline (adding: MSE / (1/6); copy: "
                  "cross-entropy per step / (copy_length log symbols / steps), steps = T + 2 copy_length, selective "
                  "copying's T + copy_length + 1), seed by seed; runs "
                  "solved at the end (adding: test MSE < 0.01; copy, selective copying: >= 99% of the recalled symbols "
                  "right) and the "
                  "first checkpoint step at which each seed was solved; accuracy: adding, share of test sequences "
                  "with |error| / 2 < 0.04 (Hochreiter & Schmidhuber 1997 on their [0, 1] target scale), copy and "
                  "selective copying, "
                  "recalled symbols right (mean over seeds); g(dep)/g(0): median over seeds of the median over test "
                  "sequences of g(k)/g(0), the gradient of one output step's loss (adding: the squared error; copy, "
                  "selective copying: "
                  "the last recall step's cross-entropy) at each sequence's own lag k of the information (adding: "
                  "its first marker, k in the range shown; copy: the last symbol, T + copy_length; selective copying: "
                  "the last symbol, T + copy_length - its position), top layer, at "
                  "initialisation; g(2nd marker)/g(0) likewise at the adding problem's second marker.",
    "gradient_fits": "Fitted slope of log10 g(k) (decades per step, mean ± sd over seeds) and gradient horizon "
                     "(median over seeds of the first lag where the median g(k)/g(0) < threshold; a horizon censored "
                     "at the probe's max lag K counts as ≥ K, so a median involving one is a lower bound, marked ≥; "
                     "the number of censored seeds in brackets), top layer, hidden state, at initialisation and "
                     "after training.",
}


def write_table(numbers: pd.DataFrame, text: pd.DataFrame, stem: str | Path, caption: str, label: str) -> None:
    """stem.csv (raw numbers), stem.md and stem.tex (formatted)."""
    stem = Path(stem)
    write_csv(stem.with_suffix(".csv"), numbers)
    write_text(stem.with_suffix(".md"), f"{caption}\n\n" + to_markdown(text))
    write_text(stem.with_suffix(".tex"), to_latex(text, caption, label))


def make_tables(runs_path, gradient_summary_path, out_dir, kind: str = "corpus") -> None:
    """The rule's one call: read the tidy tables, write the tables of `kind` (tables_for) in three formats."""
    runs = pd.read_csv(runs_path, low_memory=False)
    summary = pd.read_csv(gradient_summary_path, low_memory=False)
    out_dir = Path(out_dir)
    if kind == "task":
        table = long_range_table(runs, summary)
        write_table(table, display_long_range(table), out_dir / "long_range", CAPTIONS["long_range"],
                    "tab:long-range")
        print(f"long_range: {len(table)} cells -> {out_dir}")
        return
    perplexity = perplexity_table(runs)
    write_table(perplexity, display_perplexity(perplexity), out_dir / "perplexity", CAPTIONS["perplexity"],
                "tab:perplexity")
    fits = gradient_fit_table(summary, runs)
    write_table(fits, display_gradient_fits(fits), out_dir / "gradient_fits", CAPTIONS["gradient_fits"],
                "tab:gradient-fits")
    print(f"perplexity: {len(perplexity)} cells, gradient fits: {len(fits)} cells -> {out_dir}")
