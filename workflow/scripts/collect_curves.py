# Concatenate every run's probe CSVs into the four tables (rule collect_curves).
from rnngrad.io import log_to
from rnngrad.probe import TABLES, collect_curves

with log_to(snakemake.log[0]):
    collect_curves(
        {name: list(getattr(snakemake.input, name)) for name in TABLES},
        {name: getattr(snakemake.output, name) for name in TABLES},
    )
