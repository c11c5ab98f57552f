# Concatenate every run's probe CSVs into the grid-wide tables (rule collect_curves).
from rnngrad.collect import collect_curves
from rnngrad.io import log_to

with log_to(snakemake.log[0]):
    collect_curves(
        {name: list(paths) for name, paths in snakemake.input.items() if name != "code"},
        dict(snakemake.output.items()),
    )
