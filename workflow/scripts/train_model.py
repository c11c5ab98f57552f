# Train one grid cell (rule train_model); resumes from <run>/.partial after a crash.
import os

from rnngrad.threads import job_environment

# Before torch loads: OpenMP threads wait passively only where jobs oversubscribe the CPUs.
os.environ.update(job_environment(snakemake.threads, snakemake.resources.get("workflow_cores")))

from pathlib import Path  # noqa: E402

from rnngrad.grid import complete_cell  # noqa: E402
from rnngrad.io import log_to  # noqa: E402
from rnngrad.job_keys import execution_settings  # noqa: E402
from rnngrad.training import train_run  # noqa: E402

# How the job runs comes from the config, not from params: changing it must not rerun the job.
# Threads are the rule's `threads:` (the config's, capped by --cores).
execution = execution_settings("training", snakemake.config["training"])

params = dict(snakemake.params.items())
if "task" in params:  # a task run generates its sequences
    data = {"token_dir": None, "task": params["task"]}
else:
    data = {"token_dir": Path(snakemake.input.train).parent, "corpus": params["corpus"], "level": params["level"]}

with log_to(snakemake.log[0]):
    print(f"{snakemake.threads} thread(s), OpenMP waits {os.environ.get('OMP_WAIT_POLICY', 'default').lower()}")
    train_run(
        complete_cell(params["cell"]),
        params["training"],
        run_dir=Path(snakemake.output.summary).parent,
        **data,
        threads=snakemake.threads,
        device=execution["device"],
        log_every_s=execution["log_every_s"],
    )
