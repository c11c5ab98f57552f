"""The paper's tables, from the tidy tables: each written as CSV, Markdown and LaTeX.

- `perplexity_table`: final validation and test perplexity per grid cell (mean +- sd over
  seeds), beside a published anchor where the cell's config matches one.
- `gradient_fit_table`: fitted slope of log10 g(k) and gradient horizon per grid cell, at
  initialisation and after training (top layer, hidden state h).
Markdown and LaTeX are written here (no `tabulate` dependency); the CSV keeps the raw
numbers, the text formats show "mean ± sd".
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from rnngrad.grid import ALL_ARCHS, GRID_KEYS, format_value, parse_run_path
from rnngrad.io import write_csv, write_text

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


def _cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Grid values parsed from the run path (so None and 'na' survive the CSV round trip)."""
    cells = pd.DataFrame([parse_run_path(run) for run in frame["run"]], index=frame.index, dtype=object)
    return frame.drop(columns=[k for k in GRID_KEYS if k in frame]).join(cells)


def _varying(frame: pd.DataFrame) -> list[str]:
    """Grid axes (other than seed) with several values within some arch: the columns that tell
    cells apart ('na' beside a single LSTM forget bias is not an axis)."""
    per_arch = frame.assign(**{k: frame[k].map(format_value) for k in GRID_KEYS}).groupby("arch")
    return ["arch"] + [k for k in GRID_KEYS if k not in ("arch", "seed") and per_arch[k].nunique().max() > 1]


def _group_keys(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """String keys for grouping (None and NaN would be dropped by groupby)."""
    return frame.assign(**{f"_{k}": frame[k].map(format_value) for k in keys})


def _value_key(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value is not None:
        return (0, float(value), "")
    return (1, 0.0, format_value(value))


def _sorted_cells(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows in arch order (vanilla first), then by each grid axis, numbers numerically."""
    if table.empty:
        return table
    order = {arch: i for i, arch in enumerate(ALL_ARCHS)}

    def row_key(i):
        row = table.iloc[i]
        return tuple(order.get(row[k], 99) if k == "arch" else _value_key(row[k]) for k in keys)

    return table.iloc[sorted(range(len(table)), key=row_key)].reset_index(drop=True)


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
    runs = _cells(runs)
    keys = _varying(runs)
    runs = _group_keys(runs, keys)
    rows = []
    for _, group in runs.groupby([f"_{k}" for k in keys], sort=False):
        first = group.iloc[0].to_dict()
        ok = group[group["status"] == "ok"]
        row = {k: first[k] for k in keys}
        row["seeds"] = len(group)
        row["diverged"] = int((group["status"] == "diverged").sum())
        for metric in ("valid_ppl", "test_ppl"):
            values = pd.to_numeric(ok[metric], errors="coerce").replace([np.inf, -np.inf], np.nan).dropna()
            row[f"{metric}_mean"] = values.mean() if len(values) else np.nan
            row[f"{metric}_sd"] = values.std(ddof=1) if len(values) > 1 else np.nan
        anchor = _anchor_for(first, runs.columns)
        row["anchor"] = anchor["name"] if anchor else ""
        row["anchor_valid_ppl"] = anchor["valid_ppl"] if anchor else np.nan
        row["anchor_test_ppl"] = anchor["test_ppl"] if anchor else np.nan
        rows.append(row)
    return _sorted_cells(pd.DataFrame(rows), keys)


def gradient_fit_table(gradient_summary: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per grid cell: slope (mean, sd over seeds) and horizon at initialisation and after training.

    Top recurrent layer, hidden state h. "After training" is each run's last checkpoint,
    for runs that finished (`status` ok in runs.csv); diverged runs are counted instead.
    """
    summary = gradient_summary[gradient_summary["state"] == "h"]
    summary = summary[summary["layer"] == summary.groupby("run")["layer"].transform("max")]
    summary = _cells(summary)
    diverged = set(runs.loc[runs["status"] == "diverged", "run"]) if runs is not None and "status" in runs else set()
    last = summary.groupby("run")["step"].transform("max")
    stages = {"init": summary[summary["step"] == 0],
              "trained": summary[(summary["step"] == last) & (summary["step"] > 0) & ~summary["run"].isin(diverged)]}
    keys = _varying(summary)
    grouped = _group_keys(summary, keys)
    rows = []
    for _, group in grouped.groupby([f"_{k}" for k in keys], sort=False):
        first = group.iloc[0].to_dict()
        row = {k: first[k] for k in keys}
        row["seeds"] = group["run"].nunique()
        row["diverged"] = len(set(group["run"]) & diverged)
        for stage, rows_stage in stages.items():
            sel = rows_stage[rows_stage.index.isin(group.index)]
            slope = pd.to_numeric(sel["slope"], errors="coerce").dropna()
            horizon = pd.to_numeric(sel["horizon"], errors="coerce").dropna()
            censored = sel["horizon_censored"].astype(str).str.lower().eq("true") if len(sel) else pd.Series([], dtype=bool)
            row[f"slope_{stage}_mean"] = slope.mean() if len(slope) else np.nan
            row[f"slope_{stage}_sd"] = slope.std(ddof=1) if len(slope) > 1 else np.nan
            row[f"horizon_{stage}_median"] = horizon.median() if len(horizon) else np.nan
            row[f"horizon_{stage}_censored"] = int(censored.sum())
        rows.append(row)
    return _sorted_cells(pd.DataFrame(rows), keys)


# ---------------------------------------------------------------------------- formats


def _mean_sd(mean, sd, digits: int) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    text = f"{mean:.{digits}f}"
    return text + (f" ± {sd:.{digits}f}" if sd is not None and np.isfinite(sd) else "")


def _display_keys(table: pd.DataFrame) -> dict:
    names = {"arch": "arch", "hidden_size": "hidden", "num_layers": "layers", "init_scale": "init scale",
             "forget_bias": "forget bias", "batch_size": "batch"}
    return {names.get(k, k): table[k].map(_label) for k in GRID_KEYS if k in table}


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


def display_gradient_fits(table: pd.DataFrame) -> pd.DataFrame:
    """Slope as 'mean ± sd' (decades per step), horizon as a median with '≥' when censored."""
    out = pd.DataFrame(_display_keys(table))
    out["seeds (diverged)"] = [f"{s} ({d})" if d else f"{s}" for s, d in zip(table["seeds"], table["diverged"])]
    for stage, label in (("init", "at init"), ("trained", "trained")):
        out[f"slope {label}"] = [_mean_sd(m, s, 3) for m, s in
                                 zip(table[f"slope_{stage}_mean"], table[f"slope_{stage}_sd"])]
        out[f"horizon {label}"] = [
            "–" if not np.isfinite(h) else (("≥" if c else "") + f"{h:.0f}")
            for h, c in zip(table[f"horizon_{stage}_median"], table[f"horizon_{stage}_censored"])]
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
    "gradient_fits": "Fitted slope of log10 g(k) (decades per step, mean ± sd over seeds) and gradient horizon "
                     "(median over seeds, steps until g(k)/g(0) < threshold; ≥: censored at the probe's max lag), "
                     "top layer, hidden state, at initialisation and after training.",
}


def write_table(numbers: pd.DataFrame, text: pd.DataFrame, stem: str | Path, caption: str, label: str) -> None:
    """stem.csv (raw numbers), stem.md and stem.tex (formatted)."""
    stem = Path(stem)
    write_csv(stem.with_suffix(".csv"), numbers)
    write_text(stem.with_suffix(".md"), f"{caption}\n\n" + to_markdown(text))
    write_text(stem.with_suffix(".tex"), to_latex(text, caption, label))


def make_tables(runs_path, gradient_summary_path, out_dir) -> None:
    """The rule's one call: read the tidy tables, write every paper table in three formats."""
    runs = pd.read_csv(runs_path, low_memory=False)
    summary = pd.read_csv(gradient_summary_path, low_memory=False)
    out_dir = Path(out_dir)
    perplexity = perplexity_table(runs)
    write_table(perplexity, display_perplexity(perplexity), out_dir / "perplexity", CAPTIONS["perplexity"],
                "tab:perplexity")
    fits = gradient_fit_table(summary, runs)
    write_table(fits, display_gradient_fits(fits), out_dir / "gradient_fits", CAPTIONS["gradient_fits"],
                "tab:gradient-fits")
    print(f"perplexity: {len(perplexity)} cells, gradient fits: {len(fits)} cells -> {out_dir}")
