"""FIGURES: every figure by name, with the tables it reads, its report category and its module.

A category module claims its report category once (`figure = category("Theory")`) and
registers each figure function with `@figure(tables, subcategory)`; a category belongs to
one module and a module to one category, so `code_files(name)` (the figure job's `code`
input in workflow/rules/figures.smk) is exactly the code that draws that figure: its own
module and the shared ones. Editing one category module reruns that category's figures,
editing a shared module reruns them all, and neither reruns a training or probe job.
A category draws either language-model runs or task runs (`category(name, runs="task")`):
a results directory holds one kind, and the workflow draws that kind's figures (`figures_for`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import pandas as pd

from rnngrad.figures.style import RC

TABLES = ("runs", "epochs", "training_steps", "gradient_curves", "gradient_summary",
          "temporal_contributions", "jacobian_steps", "task_evaluations")
RUN_KINDS = ("corpus", "task")  # rnngrad.config.run_kind
# Modules every figure runs, relative to the package directory src/rnngrad/.
# The arch registry gives every figure its archs' labels, colours and families.
SHARED_CODE = ("figures/registry.py", "figures/style.py", "selection.py", "archs/__init__.py", "archs/base.py",
               "archs/palette.py")


@dataclass(frozen=True)
class FigureSpec:
    function: Callable[..., plt.Figure]
    tables: tuple[str, ...]
    category: str
    subcategory: str
    module: str  # e.g. 'rnngrad.figures.theory'
    runs: str = "corpus"  # the kind of run it draws (RUN_KINDS)


FIGURES: dict[str, FigureSpec] = {}
_CATEGORY_MODULE: dict[str, str] = {}


def category(name: str, runs: str = "corpus"):
    """The `figure(tables, subcategory)` decorator of one report category's module, drawing runs of kind `runs`."""
    if runs not in RUN_KINDS:
        raise ValueError(f"category {name!r}: runs {runs!r} is not one of {RUN_KINDS}")

    def figure(tables: tuple[str, ...], subcategory: str):
        unknown = set(tables) - set(TABLES)
        if unknown:
            raise ValueError(f"figure tables {sorted(unknown)} are not among {TABLES}")

        def decorate(function):
            module, figure_name = function.__module__, function.__name__
            owner = _CATEGORY_MODULE.get(name, module)
            if owner != module:
                raise ValueError(f"category {name!r} of {module}.{figure_name} belongs to module {owner}")
            other = {c for c, m in _CATEGORY_MODULE.items() if m == module and c != name}
            if other:
                raise ValueError(f"module {module} holds category {other.pop()!r}; {figure_name} asks for {name!r}")
            if figure_name in FIGURES and FIGURES[figure_name].function is not function:
                raise ValueError(f"figure {figure_name!r} is registered twice: {FIGURES[figure_name].module}, {module}")
            _CATEGORY_MODULE[name] = module
            FIGURES[figure_name] = FigureSpec(function, tuple(tables), name, subcategory, module, runs)
            return function

        return decorate

    return figure


def figures_for(kind: str) -> list[str]:
    """The names of the figures that draw runs of kind `kind` ('corpus' or 'task')."""
    return [name for name, spec in FIGURES.items() if spec.runs == kind]


def code_files(name: str) -> list[str]:
    """The package files (relative to src/rnngrad/) whose code draws figure `name`."""
    module = FIGURES[name].module  # rnngrad.figures.theory -> figures/theory.py
    return [str(Path(*module.split(".")[1:]).with_suffix(".py")), *SHARED_CODE]


def save_figure(fig: plt.Figure, png: str | Path, pdf: str | Path, dpi: float | None = None) -> None:
    """PNG for the report, PDF for the paper (written atomically); `dpi` of the PNG (default 200)."""
    from rnngrad.io import atomic_path

    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, bbox_inches="tight", dpi=dpi or RC["savefig.dpi"])
    plt.close(fig)


# Columns a figure reads from the largest tables (one row per training step of every run).
READ_COLUMNS = {"training_steps": ["run", "arch", "step", "grad_norm", "clipped"]}


def draw_figure(name: str, tables: dict[str, str | Path], png: str | Path, pdf: str | Path) -> None:
    """Read the CSV tables a figure needs, draw it, write PNG and PDF. The rule's one call."""
    spec = FIGURES[name]
    frames = {table: pd.read_csv(tables[table], low_memory=False, usecols=READ_COLUMNS.get(table))
              for table in spec.tables}
    with plt.rc_context(RC):
        fig = spec.function(**frames)
    save_figure(fig, png, pdf)
