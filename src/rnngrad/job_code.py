"""The code a job executes: the package modules its workflow script imports, transitively.

A rule's `code` input (workflow/rules/common.smk: script_code) is this list, so editing a
module that a job runs reruns the job, and editing one it does not run reruns nothing.
The imports are read from the source (every `import rnngrad...` / `from rnngrad... import`,
function-level ones included), so the list needs no upkeep when a module's imports change.
Figure jobs are the exception: the figure registry gives each figure its own category module
(rnngrad.figures.code_files), so that editing one category reruns only its figures.

No torch here: the rules ask this while Snakemake builds the DAG.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = "rnngrad"
PACKAGE_DIR = Path(__file__).resolve().parent


def _module_file(module: str) -> Path | None:
    """The file of a package module ('rnngrad.figures.style' -> figures/style.py), None if not one."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """The package modules a Python file imports (`from rnngrad import tasks` imports rnngrad.tasks)."""
    version = Path(path).stat()
    return set(_parsed_imports(str(Path(path).resolve()), version.st_mtime_ns, version.st_size))


@functools.cache
def _parsed_imports(path: str, mtime_ns: int, size: int) -> frozenset[str]:
    """imported_modules of one version of a file, parsed once: the DAG asks it for every job
    (each run's arch file and what it imports), 10,000 parses for the paper grid otherwise."""
    modules = set()
    for node in ast.walk(ast.parse(Path(path).read_text(), filename=path)):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
    return frozenset(module for module in modules if _module_file(module) is not None)


def job_code(script: Path) -> list[str]:
    """Every package file that running `script` executes, relative to the package directory, sorted.

    Importing rnngrad.a.b runs rnngrad/__init__.py and rnngrad/a/__init__.py first: they count.
    """
    seen: set[str] = set()
    pending = list(imported_modules(script))
    while pending:
        module = pending.pop()
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        for name in [module, *parents]:
            if name not in seen:
                seen.add(name)
                pending.extend(imported_modules(_module_file(name)))
    return sorted(_module_file(name).relative_to(PACKAGE_DIR).as_posix() for name in seen)
