"""Move a finished grid's runs to today's run paths, so that nothing is trained again.

Run paths used to name every grid key, `na` included (`.../forget_bias~na/indrnn_bound~na/...`);
they now name only the keys that apply to a run (rnngrad.grid.path_keys). A grid made
before that would be retrained under the new paths. This renames, under a results
directory, every run directory (`runs/<run>/`) and its job log and benchmark files
(`logs/<rule>/<run>.log`, `benchmarks/<rule>/<run>.tsv`) to the path of the same cell:

    python -m rnngrad.migrate results --dry-run  # what it would move
    python -m rnngrad.migrate results            # move
    snakemake --touch                            # and keep them

The code of every job changed with the new paths, so Snakemake would rerun every job on
its code inputs; `--touch` marks the moved outputs up to date instead. That is right here
because the new code gives the same numbers (the default, long_range and remedies tiny
grids' tables are identical before and after, run path aside); after any other code
change, let Snakemake rerun. A path already current, or one that names no run, stays.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rnngrad.grid import parse_run_path, run_path

SUFFIXES = ("", ".log", ".tsv")  # a run directory, a job log, a benchmark file


def current_path(old: str) -> str | None:
    """The run path of today for an old one (`old` without suffix); None if it names no run."""
    try:
        return run_path(parse_run_path(old))
    except (ValueError, KeyError):
        return None


def moves(results_dir: Path) -> list[tuple[Path, Path]]:
    """(old, new) paths under results_dir whose run path is not current."""
    found = []
    for path in sorted(results_dir.rglob("seed~*")):
        suffix = next((s for s in SUFFIXES[1:] if path.name.endswith(s)), "")
        if bool(suffix) == path.is_dir():
            continue
        top = next((parent for parent in path.parents if parent.name in ("runs", "train_model", "probe_gradients")),
                   None)
        if top is None:
            continue
        relative = str(path.relative_to(top))
        old = relative[:-len(suffix)] if suffix else relative
        new = current_path(old)
        if new is not None and new != old:
            found.append((path, top / f"{new}{suffix}"))
    return found


def migrate(results_dir, dry_run: bool = False) -> list[tuple[Path, Path]]:
    """Move every run of `results_dir` to its current path; returns the moves. Refuses to overwrite."""
    planned = moves(Path(results_dir))
    for old, new in planned:
        if new.exists():
            raise FileExistsError(f"{new} exists already; {old} was not moved")
    for old, new in planned if not dry_run else ():
        new.parent.mkdir(parents=True, exist_ok=True)
        old.rename(new)
        for parent in old.parents:  # the old path's levels, now empty
            if parent == Path(results_dir) or any(parent.iterdir()):
                break
            parent.rmdir()
    return planned


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="list the moves, change nothing")
    args = parser.parse_args(argv)
    planned = migrate(args.results_dir, args.dry_run)
    for old, new in planned:
        print(f"{'would move' if args.dry_run else 'moved'} {old} -> {new}")
    print(f"{len(planned)} path(s) {'to move' if args.dry_run else 'moved'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
