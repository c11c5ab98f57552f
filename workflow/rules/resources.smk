# Threads, memory (MB), wall time (minutes) and GPUs of the heavy rules, sized from the
# config by rnngrad.resources (see there for the cost model). Snakemake passes `attempt`,
# so a job retried after a time-out (profile `retries`) asks for more time and memory.
# Light rules (download, tokenise, collect, figures) are `localrules` in their rule files,
# run in the submitting process, not as cluster jobs.

import functools

from rnngrad import resources as res

DEVICE = config["training"]["device"]
GPUS = res.gpus(DEVICE)  # 1 only for device: cuda (auto must also fit CPU-only nodes)
LIGHT = res.LIGHT_RESOURCES  # download, tokenise, figures: one thread, small and short


def _corpus_stats():
    # stats.json once it exists (vocabulary, split sizes), else PTB-sized defaults.
    path = f"{TOKENS}/stats.json"
    return _read_corpus_stats(path, os.path.exists(path))


@functools.cache
def _read_corpus_stats(path, exists):
    return res.corpus_stats(path if exists else None, LEVEL)


def _sizing(run):
    """(cell, training, probe, stats) of one run as the cost model sees it (a task run: res.task_sizing)."""
    cell = CELLS[run]
    if TASK_RUN:
        return res.task_sizing(cell, config["training"], config["probe"], TASK)
    return cell, config["training"], config["probe"], _corpus_stats()


def get_train_mem_mb(wildcards, attempt):
    cell, training, _, stats = _sizing(wildcards.run)
    return res.training_mem_mb(cell, training, stats, attempt=attempt)


def get_train_runtime(wildcards, threads, attempt):
    cell, training, _, stats = _sizing(wildcards.run)
    return res.training_runtime(cell, training, stats, threads, attempt)


def get_probe_mem_mb(wildcards, attempt):
    cell, training, probe, stats = _sizing(wildcards.run)
    return res.probe_mem_mb(cell, probe, training, stats, attempt)


def get_probe_runtime(wildcards, threads, attempt):
    cell, training, probe, stats = _sizing(wildcards.run)
    return res.probe_runtime(cell, probe, training, stats, threads, attempt)


def get_collect_resources():
    """Sized by the number of training steps of the whole grid (one table row each)."""
    sized = [_sizing(run) for run in CELLS]
    return res.steps_resources(sum(res.training_steps(c, t, s) for c, t, _, s in sized), len(sized))
