"""The corpus rules under Snakemake: `snakemake corpus` and a clear one-line error for bad input."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import run_snakemake

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return run_snakemake(workdir, *args, timeout=300, check=False)


def test_snakemake_corpus_builds_word_and_char_tokens(tmp_path):
    done = snakemake(tmp_path, "corpus")
    assert done.returncode == 0, done.stderr[-3000:]
    word = json.loads((tmp_path / "data/tokens/ptb-word/stats.json").read_text())
    assert word["vocab_size"] == 10_000
    assert word["n_tokens"] == {"train": 929_589, "valid": 73_760, "test": 82_430}
    char = json.loads((tmp_path / "data/tokens/ptb-char/stats.json").read_text())
    assert char["n_tokens"]["train"] == np.load(tmp_path / "data/tokens/ptb-char/train.npy").size
    # A second run has nothing to do.
    again = snakemake(tmp_path, "corpus")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_bad_input_gives_one_line_in_the_job_log(tmp_path):
    (tmp_path / "train.txt").write_text("a b\n")
    (tmp_path / "valid.txt").write_bytes(b"caf\xe9\n")  # latin-1, not UTF-8
    (tmp_path / "test.txt").write_text("a\n")
    (tmp_path / "bad.yaml").write_text(
        "corpus:\n  name: mine\n  splits:\n"
        + "".join(f"    {split}: {{path: {split}.txt}}\n" for split in ("train", "valid", "test"))
    )
    done = snakemake(tmp_path, "corpus", "--configfile", str(tmp_path / "bad.yaml"))
    assert done.returncode != 0
    log = (tmp_path / "data/logs/download_corpus/mine.log").read_text().splitlines()
    errors = [line for line in log if "Error" in line]
    assert len(errors) == 1 and "Traceback" not in "\n".join(log)
    assert errors[0].startswith("CorpusError: data/corpus/mine/valid.txt: not UTF-8")
    assert not (tmp_path / "data/corpus/mine").exists() or not any((tmp_path / "data/corpus/mine").iterdir())
