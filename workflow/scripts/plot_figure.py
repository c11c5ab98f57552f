# Draw one figure of the paper from the tidy tables (rule plot_figure).
from rnngrad.figures import FIGURES, draw_figure
from rnngrad.io import log_to

with log_to(snakemake.log[0]):
    name = snakemake.wildcards.figure
    draw_figure(name, {table: snakemake.input[table] for table in FIGURES[name].tables},
                snakemake.output.png, snakemake.output.pdf)
