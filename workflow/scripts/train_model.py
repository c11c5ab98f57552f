# Train one grid cell (rule train_model); resumes from <run>/.partial after a crash.
import os

# Threads that wait passively: on a shared or oversubscribed machine, spinning OpenMP
# threads of a multi-threaded job slow it down several-fold. Set before torch loads.
if snakemake.threads > 1:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

from rnngrad.io import log_to  # noqa: E402
from rnngrad.training import train_run  # noqa: E402

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
