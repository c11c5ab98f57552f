# Train one grid cell (rule train_model); resumes from <run>/.partial after a crash.
import os

# Threads that wait passively: on a shared or oversubscribed machine, spinning OpenMP
# threads of a multi-threaded job slow it down several-fold. Set before torch loads.
if snakemake.threads > 1:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

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
    train_run(
        params["cell"],
        params["training"],
        run_dir=Path(snakemake.output.summary).parent,
        **data,
        threads=snakemake.threads,
        device=execution["device"],
        log_every_s=execution["log_every_s"],
    )
