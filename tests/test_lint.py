"""The linters a maintainer runs, pinned in the test extra: ruff (pyflakes, pycodestyle,
isort), snakefmt and `snakemake --lint` on the default config."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_snakemake


def tool(name: str) -> str:
    """The linter installed beside this Python (the test extra), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


@pytest.mark.parametrize("command", [["ruff", "check", "."], ["snakefmt", "--check", "."]], ids=["ruff", "snakefmt"])
def test_linter_is_clean(command):
    done = subprocess.run([tool(command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def test_snakemake_lint_is_clean(tmp_path):
    done = run_snakemake(tmp_path, "--lint", cores=1, timeout=120)
    assert "Congratulations, your workflow is in a good condition!" in done.stdout + done.stderr, done.stdout[-4000:]
