"""The registry of recurrent architectures: one file per architecture, the rest of the pipeline asks here.

Each module of this package (and each file a config names in `arch_files`) defines one
subclass of `rnngrad.archs.base.Arch` and registers it with `@register`. The registry is
the one place that knows which archs exist: the schema's `arch` values and per-arch
hyperparameters, the grid's normalisation and run paths, the model, the probe, the
resource estimates, the figures' colours and the tests are all derived from it.

Built-in archs are found by listing this directory, not imported by name, so that a job's
code inputs (rnngrad.job_code) hold only its own arch's file (`arch_file`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from rnngrad.archs.base import REQUIRED, Arch, ArchError
from rnngrad.archs.palette import next_free

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT = PACKAGE_DIR.parents[2]  # the workflow's checkout: src/rnngrad/archs
# Modules of this package that are not architectures.
SHARED_MODULES = ("__init__", "base", "palette")
# The built-in archs in the order figures and tables list them: vanilla, gated, remedies (then those since 2017).
BUILT_IN_ORDER = ("rnn_tanh", "rnn_sigmoid", "rnn_relu", "irnn", "lstm", "gru", "orthogonal_rnn", "indrnn", "lru",
                  "exprnn", "antisymmetric_rnn", "lem", "mingru", "s6")

# A job's process registers the config's own archs on import: the Snakefile lists their files here.
ARCH_FILES_ENV = "RNNGRAD_ARCH_FILES"

_REGISTRY: dict[str, Arch] = {}
_FILES: dict[str, Path] = {}
_loading: Path | None = None  # the file being loaded (a user's), so its arch records where it came from


def register(cls: type[Arch]) -> type[Arch]:
    """Class decorator: make `cls.name` a valid `arch`. Checks that the class declares every required part."""
    arch = cls()
    missing = [part for part in REQUIRED if not getattr(arch, part, None)]
    origin = _loading or Path(sys.modules[cls.__module__].__file__)
    if missing:
        raise ArchError(f"{origin}: arch class {cls.__name__} lacks {missing} (see docs/adding-an-architecture.md)")
    if arch.name in _REGISTRY and _FILES[arch.name] != origin:
        raise ArchError(f"{origin}: arch name {arch.name!r} is already registered by {_FILES[arch.name]}; "
                        "choose another name")
    owners = hyperparameter_owners()
    clashes = {key: owners[key] for key in arch.hyperparameters if owners.get(key, arch.name) != arch.name}
    if clashes:
        raise ArchError(f"{origin}: arch {arch.name!r} declares hyperparameter(s) {sorted(clashes)}, which "
                        f"{sorted(set(clashes.values()))} already declare; prefix them with the arch's name")
    arch.check()
    if arch.colour is None:
        others = [other for name, other in _REGISTRY.items() if name != arch.name]
        arch.colour, arch.linestyle = next_free({(other.colour, other.linestyle) for other in others})
    _REGISTRY[arch.name] = arch
    _FILES[arch.name] = origin
    return cls


def _load_built_in() -> None:
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        if path.stem not in SHARED_MODULES:
            importlib.import_module(f"{__name__}.{path.stem}")


def load_arch_files(paths) -> list[str]:
    """Register the archs of users' own Python files (config key `arch_files`); returns their names.

    A relative path is looked up in the working directory, then in the workflow's checkout
    (so a shipped config naming examples/leaky_rnn.py works from any working directory).

    Fails with ArchError naming the file and what is wrong: a missing file, a syntax error,
    an error while it runs, no arch in it, an arch that lacks a required part, a name that
    clashes with another arch. Loading the same file again is a no-op.
    """
    global _loading
    names = []
    for path in map(Path, paths):
        if not path.is_absolute() and not path.is_file() and (CHECKOUT / path).is_file():
            path = CHECKOUT / path  # a file of the checkout (examples/...), from any working directory
        resolved = path.resolve()
        known = [name for name, origin in _FILES.items() if origin == resolved]
        if known:
            names += known
            continue
        if not path.is_file():
            raise ArchError(f"config key arch_files: {path} does not exist (a relative path is looked up in "
                            f"the directory snakemake runs in, then in the workflow's checkout {CHECKOUT})")
        source = path.read_text()
        try:
            code = compile(source, str(path), "exec")
        except SyntaxError as error:
            raise ArchError(f"config key arch_files: {path} line {error.lineno}: syntax error: {error.msg}") from None
        module_name = f"rnngrad_user_arch_{path.stem}"
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader(module_name, loader=None))
        module.__file__ = str(resolved)
        before = set(_REGISTRY)
        _loading = resolved
        sys.modules[module_name] = module
        try:
            exec(code, module.__dict__)
        except ArchError:
            raise
        except Exception as error:
            raise ArchError(f"config key arch_files: {path} failed while loading: "
                            f"{type(error).__name__}: {error}") from error
        finally:
            _loading = None
        added = [name for name in _REGISTRY if name not in before]
        if not added:
            raise ArchError(f"config key arch_files: {path} registers no arch; decorate an Arch subclass "
                            "with @rnngrad.archs.register (see docs/adding-an-architecture.md)")
        names += added
    return names


def unregister(name: str) -> None:
    """Remove a user's arch from the registry (tests, or an interactive session reloading its file)."""
    if name in BUILT_IN_ORDER or _FILES.get(name, PACKAGE_DIR / "x").parent == PACKAGE_DIR:
        raise ArchError(f"arch {name!r} is built in; only a user's own arch can be unregistered")
    del _REGISTRY[name], _FILES[name]


def get(name: str) -> Arch:
    """The registered arch `name`; KeyError naming the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown arch {name!r}; registered archs are {names()} (a user's own arch must be "
                       "named in the config's arch_files)") from None


def names() -> list[str]:
    """Every registered arch: the built-ins in BUILT_IN_ORDER, then users' in the order they were loaded."""
    return sorted(_REGISTRY, key=lambda name: (BUILT_IN_ORDER.index(name) if name in BUILT_IN_ORDER
                                               else len(BUILT_IN_ORDER), list(_REGISTRY).index(name)))


def all_archs() -> list[Arch]:
    return [_REGISTRY[name] for name in names()]


def arch_file(name: str) -> Path:
    """The file that defines arch `name` (a job's code input)."""
    get(name)
    return _FILES[name]


def user_names() -> list[str]:
    """The registered archs that are not built in (a user's own files)."""
    return [name for name in names() if _FILES[name].parent != PACKAGE_DIR]


def hyperparameter_owners() -> dict[str, str]:
    """{hyperparameter: the arch that reads it}, over every registered arch."""
    return {key: arch.name for arch in all_archs() for key in arch.hyperparameters}


def reference_values() -> dict:
    """{hyperparameter: the value figures hold it at when a grid has several}, where its arch declares one."""
    return {key: spec["reference"] for arch in all_archs() for key, spec in arch.hyperparameters.items()
            if "reference" in spec}


def with_state(state: str) -> list[str]:
    """The registered archs whose probe reports state `state` (e.g. the LSTM's cell state 'c')."""
    return [arch.name for arch in all_archs() if state in arch.states]


def bounded() -> list[str]:
    """The archs that declare Pascanu's gamma: their top layer obeys g(k) <= g(0) (gamma lambda_1)^k."""
    return [arch.name for arch in all_archs() if arch.gamma is not None]


def in_family(family: str) -> list[str]:
    return [arch.name for arch in all_archs() if arch.family == family]


_load_built_in()
load_arch_files(path for path in os.environ.get(ARCH_FILES_ENV, "").split(os.pathsep) if path)

__all__ = ["Arch", "ArchError", "all_archs", "arch_file", "bounded", "get", "hyperparameter_owners", "in_family",
           "load_arch_files", "names", "reference_values", "register", "unregister", "user_names", "with_state"]
