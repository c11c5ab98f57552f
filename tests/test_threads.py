"""How a job's OpenMP threads wait: by default where they fit the CPUs, passively where jobs oversubscribe them."""

import pytest

from rnngrad import threads


@pytest.fixture
def two_cpus(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)


@pytest.mark.usefixtures("two_cpus")
@pytest.mark.parametrize("job_threads,workflow_cores,expected", [
    (2, 2, {}),                                # `--cores 2` on 2 CPUs: the job owns them
    (2, None, {}),                             # a cluster job: its allocation is its own
    (2, 8, {"OMP_WAIT_POLICY": "PASSIVE"}),    # `--cores 8` on a 2-core laptop
    (4, 4, {"OMP_WAIT_POLICY": "PASSIVE"}),    # more threads than CPUs, whatever --cores says
    (1, 8, {}),                                # one thread has no OpenMP team to wait in
])
def test_job_environment(job_threads, workflow_cores, expected):
    assert threads.job_environment(job_threads, workflow_cores) == expected


def test_available_cpus_is_the_affinity_mask():
    import os

    assert threads.available_cpus() == len(os.sched_getaffinity(0)) >= 1
