# Gradient-vs-distance curves at every checkpoint of one run (rule probe_gradients).
import os

from rnngrad.threads import job_environment

# Before torch loads: OpenMP threads wait passively only where jobs oversubscribe the CPUs.
os.environ.update(job_environment(snakemake.threads, snakemake.resources.get("workflow_cores")))

from rnngrad.io import log_to  # noqa: E402
from rnngrad.probe import TABLES, probe_run  # noqa: E402

with log_to(snakemake.log[0]):
    print(f"{snakemake.threads} thread(s), OpenMP waits {os.environ.get('OMP_WAIT_POLICY', 'default').lower()}")
    # Threads come from the rule's `threads:`, not its params: changing them reruns nothing.
    print(f"probe of {snakemake.wildcards.run} with {snakemake.threads} thread(s)")
    probe_run(
        snakemake.input.checkpoints,
        snakemake.input.get("tokens"),  # none for a task run
        snakemake.params.probe,
        {name: getattr(snakemake.output, name) for name in TABLES},
        threads=snakemake.threads,
    )
