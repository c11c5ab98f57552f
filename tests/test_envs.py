"""envs/rnngrad.yaml (for `--sdm conda`) pins what pyproject.toml pins, and every rule
that runs a script uses it. (Building the env needs conda, which CI does not have.)"""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[1]
# conda-forge names of PyPI packages; snakemake itself runs the jobs and builds the report
# (pygments), neither is needed inside a job's env.
CONDA_NAMES = {"matplotlib": "matplotlib-base"}
NOT_IN_ENV = {"snakemake", "pygments"}


def env_requirements() -> dict[str, str]:
    """{name: specifier} of the env file, conda and pip parts together."""
    env = yaml.safe_load((REPO / "envs" / "rnngrad.yaml").read_text())
    specs = {}
    for dep in env["dependencies"]:
        for item in dep["pip"] if isinstance(dep, dict) else [dep]:
            name, spec = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", item).groups()
            specs[name.lower()] = spec.replace("=", "==", 1) if re.match(r"=[^=]", spec) else spec
    return specs


def test_env_pins_the_versions_of_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = env_requirements()
    assert SpecifierSet(project["requires-python"]).contains(env["python"].lstrip("=")), env["python"]
    for line in project["dependencies"]:
        req = Requirement(line)
        if req.name in NOT_IN_ENV:
            continue
        name = CONDA_NAMES.get(req.name, req.name)
        assert name in env, f"{name} (from pyproject.toml) missing in envs/rnngrad.yaml"
        assert Requirement(f"{name}{env[name]}").specifier == req.specifier, (name, env[name], str(req.specifier))


def test_every_script_rule_uses_the_env():
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        for rule in re.split(r"\n(?=rule \w+:)", text):
            head = re.match(r"rule (\w+):", rule)
            if head and re.search(r"^\s+script:", rule, re.M):
                assert '"../../envs/rnngrad.yaml"' in rule, f"rule {head.group(1)} in {path.name} has no conda env"
