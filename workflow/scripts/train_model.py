# Train one grid cell (rule train_model); resumes from <run>/.partial after a crash.
from pathlib import Path

from rnngrad.io import log_to
from rnngrad.training import train_run

with log_to(snakemake.log[0]):
    train_run(
        snakemake.params.cell,
        snakemake.params.training,
        Path(snakemake.input.train).parent,
        Path(snakemake.output.summary).parent,
        corpus=snakemake.params.corpus["name"],
        level=snakemake.params.corpus["level"],
        threads=snakemake.threads,
    )
