# Gather every run's summary, epochs and per-step metrics into grid-wide tables (rule collect_runs).
from rnngrad.collect import write_run_tables
from rnngrad.io import log_to

with log_to(snakemake.log[0]):
    write_run_tables(
        snakemake.input.summaries,
        snakemake.input.epochs,
        snakemake.input.metrics,
        snakemake.output.runs,
        snakemake.output.epochs,
        snakemake.output.steps,
        snakemake.input.get("evaluations"),  # task runs only
        snakemake.output.get("evaluations"),
    )
