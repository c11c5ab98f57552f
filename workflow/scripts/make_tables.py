# Write the paper's tables (CSV, Markdown, LaTeX) from the tidy tables (rule make_tables).
from rnngrad.io import log_to
from rnngrad.tables import make_tables

with log_to(snakemake.log[0]):
    make_tables(snakemake.input.runs, snakemake.input.summary, snakemake.params.out_dir, snakemake.params.kind)
