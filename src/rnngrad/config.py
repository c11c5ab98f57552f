"""Load and validate the pipeline config against the JSON schema, filling defaults."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from rnngrad.grid import expand_grid
from rnngrad.io import write_text

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config value the schema rejects; the message names the key and what is allowed."""


def _with_defaults(validator_class):
    """Extend a jsonschema validator so that validating also fills in defaults."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


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
    schema = schema if schema is not None else load_schema()
    config = copy.deepcopy(dict(config))
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (-len(e.absolute_path), e.path))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise ConfigError(_describe(best))
    _check_semantics(config)
    return config


def _check_semantics(config: dict) -> None:
    """Rules the schema cannot express."""
    corpus = config["corpus"]
    if corpus["name"] != "ptb" and "splits" not in corpus:
        raise ConfigError(
            f"config key corpus.splits: corpus {corpus['name']!r} is not built in; "
            "give a url or path for each of train, valid and test (only 'ptb' is built in)"
        )
    try:
        cells = expand_grid(config["grid"], config["exclude"])
    except ValueError as error:
        raise ConfigError(str(error)) from None
    for cell in cells:
        if cell["arch"] == "lru" and not cell["lru_r_min"] < cell["lru_r_max"]:
            raise ConfigError(
                f"config key grid.lru_r_min: {cell['lru_r_min']} is not below grid.lru_r_max {cell['lru_r_max']}; "
                "the LRU's eigenvalues start on the ring lru_r_min <= |lambda| <= lru_r_max "
                "(exclude such pairs with `exclude:`)"
            )
    first, last = config["probe"]["fit_lags"]
    if not first < last <= config["probe"]["max_lag"]:
        raise ConfigError(
            f"config key probe.fit_lags: {[first, last]} must be increasing and within "
            f"0..probe.max_lag ({config['probe']['max_lag']})"
        )


def load_config(path: str | Path) -> dict:
    with open(path) as f:
        return validate_config(yaml.safe_load(f) or {})


def write_effective_config(config: dict, path: str | Path) -> None:
    """Write the validated config (defaults filled) so results say what produced them."""
    write_text(path, yaml.safe_dump(config, sort_keys=False))
