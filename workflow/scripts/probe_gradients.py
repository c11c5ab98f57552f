# Gradient-vs-distance curves at every checkpoint of one run (rule probe_gradients).
from rnngrad.io import log_to
from rnngrad.probe import TABLES, probe_run

with log_to(snakemake.log[0]):
    # Threads come from the rule's `threads:`, not its params: changing them reruns nothing.
    print(f"probe of {snakemake.wildcards.run} with {snakemake.threads} thread(s)")
    probe_run(
        snakemake.input.checkpoints,
        snakemake.input.get("tokens"),  # none for a task run
        snakemake.params.probe,
        {name: getattr(snakemake.output, name) for name in TABLES},
        threads=snakemake.threads,
    )
