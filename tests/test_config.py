"""Config validation: every mistake fails at once, naming the key and what is allowed."""

from pathlib import Path

import pytest
import yaml

from rnngrad import archs
from rnngrad.config import ConfigError, load_config, load_schema, validate_config
from rnngrad.grid import CORPUS_ONLY_GRID_KEYS, grid_keys

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "config").glob("*.yaml"))


def error_of(config: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_typo_in_a_top_level_key_names_it_and_the_allowed_keys():
    message = error_of({"gird": {"arch": ["lstm"]}})
    assert "'gird'" in message and "allowed keys" in message
    assert all(key in message for key in ("grid", "corpus", "training", "probe", "exclude"))


def test_typo_in_a_nested_key_names_the_section():
    message = error_of({"grid": {"hiden_size": [32]}})
    assert message.startswith("config key grid:")
    assert "'hiden_size'" in message and "'hidden_size'" in message
    message = error_of({"training": {"max_token": 10}})
    assert message.startswith("config key training:") and "'max_tokens'" in message


def test_unknown_arch_lists_the_archs():
    message = error_of({"grid": {"arch": ["lstm", "lstn"]}})
    assert "grid.arch" in message and "'lstn'" in message
    assert all(arch in message for arch in archs.names())


@pytest.mark.parametrize("lr", [-0.1, 0])
def test_non_positive_learning_rate(lr):
    message = error_of({"grid": {"lr": [1.0, lr]}})
    assert message.startswith("config key grid.lr.1:") and "> 0" in message


def test_scalar_instead_of_list():
    message = error_of({"grid": {"lr": 0.5}})
    assert "grid.lr" in message and "list" in message


@pytest.mark.parametrize("key, allowed", [("arch", "rnn_tanh"), ("hidden_size", "integers >= 1"),
                                          ("lr", "numbers > 0"), ("clip", "null")])
def test_empty_grid_list(key, allowed):
    message = error_of({"grid": {key: []}})
    assert f"grid.{key}" in message and allowed in message


def test_grid_empty_after_exclude():
    message = error_of({"grid": {"arch": ["lstm", "gru"]}, "exclude": [{"arch": "lstm"}, {"arch": "gru"}]})
    assert message.startswith("config key exclude:") and "nothing is left" in message


def test_exclude_that_leaves_cells_is_fine():
    config = validate_config({"grid": {"arch": ["lstm", "gru"]}, "exclude": [{"arch": "lstm"}]})
    assert config["exclude"] == [{"arch": "lstm"}]


def test_exclude_with_an_unknown_key():
    message = error_of({"exclude": [{"arhc": "lstm"}]})
    assert "exclude.0" in message and "'arhc'" in message and "'arch'" in message


def test_corpus_errors():
    assert "corpus.level" in error_of({"corpus": {"level": "byte"}})
    assert "['package', 'url']" in error_of({"corpus": {"source": "web"}})
    message = error_of({"corpus": {"name": "wikitext2"}})
    assert message.startswith("config key corpus.splits:") and "'ptb'" in message
    splits = {"train": {"path": "a"}, "valid": {"path": "b"}}
    message = error_of({"corpus": {"name": "wikitext2", "splits": splits}})
    assert "corpus.splits" in message and "'test'" in message
    splits["test"] = {"path": "c", "url": "http://example.org/c"}
    message = error_of({"corpus": {"name": "wikitext2", "splits": splits}})
    assert "corpus.splits.test" in message and "['url', 'path']" in message
    splits["test"] = {"path": "c", "sha256": "abc"}
    assert "corpus.splits.test.sha256" in error_of({"corpus": {"name": "wikitext2", "splits": splits}})


def test_probe_fit_lags_within_max_lag():
    message = error_of({"probe": {"max_lag": 30, "fit_lags": [1, 40]}})
    assert "probe.fit_lags" in message and "30" in message


def test_defaults_are_filled_and_input_untouched():
    given = {"grid": {"arch": ["gru"]}}
    config = validate_config(given)
    assert given == {"grid": {"arch": ["gru"]}}
    schema = load_schema()
    grid_schema = schema["properties"]["grid"]["properties"]
    assert config["grid"]["arch"] == ["gru"]
    assert config["grid"]["seed"] == grid_schema["seed"]["default"]
    assert set(config["grid"]) == set(grid_keys())
    assert config["corpus"] == {"name": "ptb", "source": "package", "level": "word"}
    assert config["training"]["checkpoints"] == [0.0, 0.25, 0.5, 1.0]
    assert config["probe"]["fit_lags"] == [1, 40]
    assert config["data_dir"] == "data" and config["exclude"] == []
    # Defaults are copies: filling one config does not alias the schema's lists.
    config["training"]["checkpoints"].append(0.75)
    assert validate_config({})["training"]["checkpoints"] == [0.0, 0.25, 0.5, 1.0]


def test_every_grid_key_has_a_schema_default():
    grid_schema = load_schema()["properties"]["grid"]["properties"]
    assert set(grid_schema) == set(grid_keys())
    assert all("default" in grid_schema[key] for key in grid_keys())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_shipped_configs_validate(path):
    config = load_config(path)
    # a task run reads whole sequences, drawn fresh: it has no bptt or epochs
    assert set(config["grid"]) == set(grid_keys()) - (set(CORPUS_ONLY_GRID_KEYS) if "task" in config else set())


def _keys(tree: dict, prefix=()) -> set:
    """Every key path of a config, e.g. ('training', 'max_tokens')."""
    keys = set()
    for key, value in tree.items():
        keys.add(prefix + (key,))
        if isinstance(value, dict) and prefix + (key,) not in {("corpus", "splits")}:
            keys |= _keys(value, prefix + (key,))
    return keys


def _schema_keys(schema: dict, prefix=()) -> set:
    keys = set()
    for key, sub in schema.get("properties", {}).items():
        keys.add(prefix + (key,))
        keys |= _schema_keys(sub, prefix + (key,))
    # a mapping whose keys are values (arch_grid: {<arch>: {<grid key>: ...}})
    for name in schema.get("propertyNames", {}).get("enum", []):
        keys.add(prefix + (name,))
        keys |= _schema_keys(schema.get("additionalProperties", {}), prefix + (name,))
    return keys


def test_config_yaml_keys_exist_in_schema():
    """The default config documents the schema: every key it states is a schema key."""
    stated = _keys(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    assert stated, "config/config.yaml is empty"
    assert stated <= _schema_keys(load_schema())
    # And it states every top-level section a language-model run has, so it reads as documentation
    # (config/long_range.yaml documents the task section, which only task runs have).
    sections = load_schema()["properties"]
    assert {key for key in stated if len(key) == 1} == {
        (key,) for key, sub in sections.items() if sub.get("x-only", "corpus") == "corpus"}


def test_shipped_configs_point_at_the_schema():
    for path in CONFIGS:
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../workflow/schemas/config.schema.yaml", path
