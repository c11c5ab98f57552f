"""How a training or probe job sets up its CPU threads, before torch is imported.

torch's CPU kernels run on OpenMP (GNU libgomp in the pip wheels). After a parallel
region an idle libgomp thread spins, waiting for the next one; a job that owns its cores
gains from that (the next region starts at once), but where jobs share too few cores
the spinning threads steal the cores that the other jobs' threads need. So:

- a job whose threads fit the CPUs it may use, and the number of cores Snakemake was
  given (`--cores`, or a SLURM allocation), keeps libgomp's default waits;
- an oversubscribed one (`snakemake --cores 8` on a 2-core laptop runs up to 8 threads
  on 2 cores) waits passively (OMP_WAIT_POLICY=PASSIVE): threads sleep instead of spinning.

`benchmarks/training_speed.py --wall` measures both cases against a bare PyTorch loop.
"""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask: a SLURM or cgroup allocation), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def oversubscribed(threads: int, workflow_cores: int | None) -> bool:
    """True when the jobs that may run at once can have more threads than there are CPUs.

    workflow_cores: the cores Snakemake schedules on (`--cores`); None when unknown (a
    cluster job, which owns its allocation).
    """
    cores = max(threads, workflow_cores or threads)
    return cores > available_cpus()


def job_environment(threads: int, workflow_cores: int | None = None) -> dict[str, str]:
    """Environment variables to set before torch loads, for a job of `threads` threads."""
    if threads > 1 and oversubscribed(threads, workflow_cores):
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    return {}
