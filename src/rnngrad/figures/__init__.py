"""The paper's figures, each drawn by one function from the tidy tables only.

Every figure function takes pandas DataFrames named after the tables of
`results/tables/` (`registry.TABLES`) and returns a matplotlib Figure. `FIGURES` maps a
figure's name to its function, the tables it reads, its report category and
subcategory, and its module; the workflow runs one job per figure, which reruns when
its tables or its code (`registry.code_files`) change.

Layout, one module per report category:
- `distance`: "Gradient vs distance" (g(k)/g(0) against the lag k);
- `theory`: "Theory" (Pascanu's bound, temporal contributions);
- `grid`: "Grid" (heatmaps over the grid axes);
- `training`: "Training" (gradient norms, learning curves);
- `quality`: "Quality" (gradient horizon against perplexity);
- `long_range`: "Long-range tasks" (task runs: learnable dependency length, learning
  curves against the baseline, gradient at initialisation against final error);
and the shared modules every figure runs: `style` (colours, sizes, axes helpers),
`registry` (FIGURES, drawing and saving) and `rnngrad.selection` (which runs a figure
shows). A new figure goes into the module of its category; a new category (e.g.
long-range tasks) is a new module beside these, claiming it with `category(...)`, imported
below. A category module imports only the shared modules, never another category's.
A results directory holds language-model runs or task runs; `figures_for(kind)` names
the figures the workflow draws for it.
"""

from rnngrad.figures import distance, grid, long_range, quality, theory, training  # noqa: F401  (registers them)
from rnngrad.figures.registry import (
    FIGURES,
    SHARED_CODE,
    TABLES,
    FigureSpec,
    code_files,
    draw_figure,
    figures_for,
    save_figure,
)

__all__ = ["FIGURES", "SHARED_CODE", "TABLES", "FigureSpec", "code_files", "draw_figure", "figures_for",
           "save_figure"]
