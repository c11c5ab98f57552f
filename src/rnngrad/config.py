"""Load and validate the pipeline config against the JSON schema, filling defaults.

A config is either a language-model run (a corpus) or a task run (it has a `task`
section, rnngrad.tasks). Schema keys marked `x-only: corpus` or `x-only: task` belong to
one kind: the other kind may not set them, and does not get their defaults.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from rnngrad import archs
from rnngrad.grid import CORPUS_ONLY_GRID_KEYS, TASK_KEYS, expand_grid, grid_keys
from rnngrad.io import write_text
from rnngrad.tasks import TaskError, check_task, sequence_length

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config value the schema rejects; the message names the key and what is allowed."""


KINDS = {"corpus": "language-model (corpus) runs", "task": "task runs"}


def run_kind(config: dict) -> str:
    """'task' when the config has a task section, else 'corpus'."""
    return "task" if "task" in config else "corpus"


def _with_defaults(validator_class, kind: str = "corpus"):
    """Extend a jsonschema validator so that validating also fills in the defaults of run kind `kind`."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance and subschema.get("x-only", kind) == kind:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _wrong_kind(schema: dict, config: dict, kind: str, path: tuple = ()) -> str | None:
    """A message for the first key of `config` whose schema says it belongs to the other kind of run."""
    if not isinstance(config, dict):
        return None
    properties = schema.get("properties", {})
    for name, value in config.items():
        subschema = properties.get(name, {})
        only = subschema.get("x-only")
        key = ".".join((*path, name))
        if only is not None and only != kind:
            allowed = sorted(k for k, sub in properties.items() if sub.get("x-only", kind) == kind)
            why = "it has a `task` section" if kind == "task" else "it has no `task` section"
            return (f"config key {key}: applies to {KINDS[only]} only, and this config is a {kind} run ({why}); "
                    f"allowed keys {'of ' + '.'.join(path) if path else 'at the top level'} here are {allowed}")
        found = _wrong_kind(subschema, value, kind, (*path, name))
        if found:
            return found
    return None


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    """The schema file with what the arch registry says: the `arch` values, and every arch's own
    hyperparameters as grid keys (rnngrad.archs.Arch.hyperparameters)."""
    with open(path) as f:
        schema = yaml.safe_load(f)
    grid = schema["properties"]["grid"]["properties"]
    grid["arch"]["items"]["enum"] = archs.names()
    for arch in archs.all_archs():
        for key, spec in arch.hyperparameters.items():
            item = {name: value for name, value in spec.items()
                    if name not in ("default", "description", "label", "reference")}
            grid[key] = {"type": "array", "minItems": 1, "uniqueItems": True, "items": item,
                         "default": [spec["default"]],
                         "description": f"{arch.label} only: {spec['description']}; ignored by other archs"}
    schema["properties"]["exclude"]["items"]["propertyNames"] = {"enum": list(TASK_KEYS + grid_keys())}
    # arch_grid.<arch>: any grid key but `arch`, as the grid's (no default: an absent key keeps the grid's list)
    own = {key: {name: value for name, value in spec.items() if name != "default"} for key, spec in grid.items()
           if key != "arch"}
    schema["properties"]["arch_grid"]["propertyNames"] = {"enum": archs.names()}
    schema["properties"]["arch_grid"]["additionalProperties"] = {"type": "object", "additionalProperties": False,
                                                                 "minProperties": 1, "properties": own}
    return schema


_BOUNDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}


def _allowed_items(items: dict) -> str:
    """What a list item may be, in words: its enum, or its type and bounds."""
    if "enum" in items:
        return str(items["enum"])
    if "oneOf" in items:
        return " or ".join(_allowed_items(alternative) for alternative in items["oneOf"])
    if items.get("type") == "null":
        return "null"
    kind = items.get("type", "value")
    bounds = [f"{_BOUNDS[name]} {items[name]}" for name in _BOUNDS if name in items]
    return f"{kind}s" + (f" {' and '.join(bounds)}" if bounds else "")


def _describe(error: jsonschema.ValidationError) -> str:
    """One line naming the key path, the bad value and the allowed values."""
    key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    schema = error.schema
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"config key {key}: unknown key(s) {extra}; allowed keys are {allowed}"
    if error.validator == "enum":
        return f"config key {key}: {error.instance!r} is not allowed; allowed values are {schema['enum']}"
    if error.validator in _BOUNDS:
        return (f"config key {key}: {error.instance!r} is out of range; allowed values are "
                f"numbers {_BOUNDS[error.validator]} {error.validator_value}")
    if error.validator == "minItems":
        return (f"config key {key}: {error.instance!r} has fewer than {error.validator_value} item(s); "
                f"allowed values are {_allowed_items(schema.get('items', {}))}")
    if error.validator == "type" and error.validator_value == "array":
        return f"config key {key}: {error.instance!r} is not a list; give a list, e.g. [{error.instance!r}]"
    alternatives = schema.get("oneOf", [])
    if error.validator == "oneOf" and alternatives and all(set(alt) == {"required"} for alt in alternatives):
        names = [name for alt in alternatives for name in alt["required"]]
        return f"config key {key}: {error.instance!r} must have exactly one of the keys {names}"
    if error.validator == "oneOf" and "items" not in schema:
        return f"config key {key}: {error.instance!r} is not valid ({error.message})"
    hint = f" ({schema['description']})" if "description" in schema else ""
    return f"config key {key}: {error.message}{hint}"


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Return a validated copy of `config` with every default filled in.

    Raises ConfigError naming the first offending key (the most specific error).
    """
    config = copy.deepcopy(dict(config))
    try:  # a user's own archs register first: the schema's arch values and grid keys include them
        archs.load_arch_files(config.get("arch_files", []))
    except archs.ArchError as error:
        raise ConfigError(str(error)) from None
    schema = schema if schema is not None else load_schema()
    kind = run_kind(config)
    wrong = _wrong_kind(schema, config, kind)
    if wrong:
        raise ConfigError(wrong)
    validator = _with_defaults(jsonschema.Draft202012Validator, kind)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (-len(e.absolute_path), e.path))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise ConfigError(_describe(best))
    _check_semantics(config)
    return config


def _check_semantics(config: dict) -> None:
    """Rules the schema cannot express."""
    task = config.get("task")
    if task is None:
        _check_corpus(config)
    else:
        _check_task(config)
    for arch, own in config["arch_grid"].items():  # an arch the grid does not train keeps its entry unused
        wrong = sorted(set(own) & set(CORPUS_ONLY_GRID_KEYS)) if task is not None else []
        if wrong:
            raise ConfigError(f"config key arch_grid.{arch}.{wrong[0]}: applies to language-model (corpus) runs only, "
                              "and this config is a task run (it has a `task` section)")
    try:
        cells = expand_grid(config["grid"], config["exclude"], task, config["arch_grid"])
    except ValueError as error:
        raise ConfigError(str(error)) from None
    for cell in cells:
        problem = archs.get(cell["arch"]).validate(cell)
        if problem:
            raise ConfigError(problem)


def _check_corpus(config: dict) -> None:
    corpus = config["corpus"]
    if corpus["name"] != "ptb" and "splits" not in corpus:
        raise ConfigError(
            f"config key corpus.splits: corpus {corpus['name']!r} is not built in; "
            "give a url or path for each of train, valid and test (only 'ptb' is built in)"
        )
    for i, pattern in enumerate(config["exclude"]):
        wrong = sorted(set(pattern) & set(TASK_KEYS))
        if wrong:
            raise ConfigError(f"config key exclude.{i}.{wrong[0]}: applies to task runs only, and this config is a "
                              "corpus run (it has no `task` section)")
    first, last = config["probe"]["fit_lags"]
    if not first < last <= config["probe"]["max_lag"]:
        raise ConfigError(
            f"config key probe.fit_lags: {[first, last]} must be increasing and within "
            f"0..probe.max_lag ({config['probe']['max_lag']})"
        )


def _check_task(config: dict) -> None:
    task = config["task"]
    try:
        for name in task["name"]:
            for T in task["T"]:
                check_task(name, T, task["copy_length"], task["copy_symbols"])
    except TaskError as error:
        raise ConfigError(str(error)) from None
    for i, pattern in enumerate(config["exclude"]):
        wrong = sorted(set(pattern) & set(CORPUS_ONLY_GRID_KEYS))
        if wrong:
            raise ConfigError(f"config key exclude.{i}.{wrong[0]}: applies to language-model (corpus) runs only, and "
                              "this config is a task run (it has a `task` section)")
    if config["probe"]["windows"] > task["test_size"]:
        raise ConfigError(f"config key probe.windows: {config['probe']['windows']} test sequences to probe, but "
                          f"task.test_size is {task['test_size']}; allowed values are 1..{task['test_size']}")
    shortest = min(sequence_length(name, T, task["copy_length"]) for name in task["name"] for T in task["T"])
    first, last = config["probe"]["fit_lags"]
    if not first < last <= shortest - 1:
        raise ConfigError(
            f"config key probe.fit_lags: {[first, last]} must be increasing and within 0..{shortest - 1} "
            f"(the lags of the shortest task sequence, {shortest} steps)"
        )


def load_config(path: str | Path) -> dict:
    with open(path) as f:
        return validate_config(yaml.safe_load(f) or {})


def write_effective_config(config: dict, path: str | Path) -> None:
    """Write the validated config (defaults filled) so results say what produced them."""
    write_text(path, yaml.safe_dump(config, sort_keys=False))
