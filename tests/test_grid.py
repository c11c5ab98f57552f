"""The grid: Cartesian product, normalisation, deduplication, exclusion, run paths."""

import math

import pytest

from rnngrad.config import ConfigError, validate_config
from rnngrad.grid import NOT_APPLICABLE, expand_grid, format_value, grid_keys, parse_run_path, run_path


def grid(**lists):
    return validate_config({"grid": lists})["grid"]


def test_product_size():
    g = grid(arch=["lstm"], hidden_size=[16, 32, 64], lr=[0.1, 1.0], seed=[0, 1, 2, 3])
    cells = expand_grid(g)
    assert len(cells) == 3 * 2 * 4 == math.prod(len(g[key]) for key in grid_keys())
    assert len({run_path(cell) for cell in cells}) == len(cells)
    assert all(list(cell) == list(grid_keys()) for cell in cells)


def test_forget_bias_only_applies_to_lstm():
    cells = expand_grid(grid(arch=["lstm", "gru", "rnn_tanh"], forget_bias=[0.0, 1.0, 2.0]))
    by_arch = {}
    for cell in cells:
        by_arch.setdefault(cell["arch"], []).append(cell["forget_bias"])
    assert sorted(by_arch["lstm"]) == [0.0, 1.0, 2.0]
    # The other archs collapse to one cell each instead of three identical runs.
    assert by_arch["gru"] == [NOT_APPLICABLE] and by_arch["rnn_tanh"] == [NOT_APPLICABLE]
    assert len(cells) == 5


def test_irnn_is_always_identity_initialised():
    cells = expand_grid(grid(arch=["irnn", "rnn_relu"], init=["orthogonal", "uniform"]))
    irnn = [cell for cell in cells if cell["arch"] == "irnn"]
    assert [cell["init"] for cell in irnn] == ["identity"]
    assert sorted(cell["init"] for cell in cells if cell["arch"] == "rnn_relu") == ["orthogonal", "uniform"]


def test_exclusion_matches_all_keys_of_an_entry():
    g = grid(arch=["lstm", "gru"], hidden_size=[16, 32], seed=[0, 1])
    cells = expand_grid(g, [{"arch": "lstm", "hidden_size": 32}])
    assert len(cells) == 8 - 2
    assert not any(cell["arch"] == "lstm" and cell["hidden_size"] == 32 for cell in cells)
    # Exclusions see normalised cells: forget_bias 1.0 exists only for the LSTM.
    cells = expand_grid(g, [{"forget_bias": 1.0}])
    assert {cell["arch"] for cell in cells} == {"gru"}
    # clip null (no clipping) can be excluded too.
    cells = expand_grid(grid(clip=[None, 5.0]), [{"clip": None}])
    assert [cell["clip"] for cell in cells] == [5.0] * len(cells)


def test_empty_after_exclusion_raises():
    with pytest.raises(ValueError, match="config key exclude"):
        expand_grid(grid(arch=["lstm"]), [{"arch": "lstm"}])


def test_missing_grid_key_raises():
    g = grid()
    del g["seed"]
    with pytest.raises(ValueError, match="seed"):
        expand_grid(g)


def test_run_path_roundtrip():
    g = grid(arch=["lstm", "irnn"], init_scale=[0.5, 1.25], lr=[1.0, 1e-3], clip=[None, 0.25], seed=[0, 7])
    for cell in expand_grid(g):
        path = run_path(cell)
        assert path.split("/")[0] == f"arch~{cell['arch']}"
        assert path.split("/")[-1] == f"seed~{cell['seed']}"
        assert parse_run_path(path) == cell
        # A results prefix in front of the path is ignored.
        assert parse_run_path(f"results/runs/{path}/") == cell


def test_run_path_values_are_readable():
    assert format_value(1.0) == "1" and format_value(0.001) == "0.001" and format_value(None) == "none"
    cell = expand_grid(grid(arch=["gru"], clip=[None]))[0]
    assert "clip~none" in run_path(cell) and "~na" not in run_path(cell) and "forget_bias" not in run_path(cell)


def test_parse_run_path_needs_every_key():
    with pytest.raises(ValueError, match="lacks"):
        parse_run_path("arch~lstm/hidden_size~64")


def test_migrate_moves_old_run_paths_with_na_levels_to_the_current_ones(tmp_path):
    from rnngrad.migrate import migrate

    cell = expand_grid(grid(arch=["gru"]))[0]
    old = "/".join(f"{key}~{format_value(cell[key])}" for key in grid_keys())  # every key, `na` levels too
    assert "forget_bias~na" in old and old != run_path(cell)
    results = tmp_path / "results"
    (results / "runs" / old / "checkpoints").mkdir(parents=True)
    (results / "runs" / old / "summary.json").write_text("{}")
    (results / "logs" / "train_model" / old).parent.mkdir(parents=True)
    (results / "logs" / "train_model" / f"{old}.log").write_text("log")
    assert len(migrate(results, dry_run=True)) == 2 and (results / "runs" / old).is_dir()
    moved = migrate(results)
    assert len(moved) == 2 and not (results / "runs" / "arch~gru").joinpath("hidden_size~64", "num_layers~1",
                                                                          "init~orthogonal", "init_scale~1",
                                                                          "forget_bias~na").exists()
    assert (results / "runs" / run_path(cell) / "summary.json").read_text() == "{}"
    assert (results / "logs" / "train_model" / f"{run_path(cell)}.log").read_text() == "log"
    assert migrate(results) == []  # current paths stay


# ---------------------------------------------------------------- arch_grid: an arch's own lists


def test_arch_grid_replaces_the_lists_of_one_arch_and_leaves_every_other_run_as_it_was():
    lists = {"arch": ["rnn_tanh", "lru", "lstm"], "lr": [1.0], "init_scale": [0.5, 1.0], "seed": [0, 1]}
    config = validate_config({"grid": lists, "arch_grid": {"lru": {"lr": [0.1, 0.03], "optimizer": ["adam"]}}})
    cells = expand_grid(config["grid"], config["exclude"], arch_grid=config["arch_grid"])
    plain = expand_grid(config["grid"], config["exclude"])
    others = [run_path(cell) for cell in cells if cell["arch"] != "lru"]
    assert others == [run_path(cell) for cell in plain if cell["arch"] != "lru"], "same runs, same order"
    lru = [(cell["lr"], cell["optimizer"], cell["seed"]) for cell in cells if cell["arch"] == "lru"]
    # by hand: the LRU ignores init_scale, so lr x seed, in the grid's product order (lr before seed)
    assert lru == [(0.1, "adam", 0), (0.1, "adam", 1), (0.03, "adam", 0), (0.03, "adam", 1)]
    assert all(parse_run_path(run_path(cell)) == cell for cell in cells)


def test_an_arch_grid_entry_of_an_arch_the_grid_does_not_train_changes_nothing():
    config = validate_config({"grid": {"arch": ["lstm"]}, "arch_grid": {"lru": {"lr": [0.1]}}})
    assert expand_grid(config["grid"], arch_grid=config["arch_grid"]) == expand_grid(config["grid"])


def test_arch_grid_values_the_grid_also_has_stay_one_run():
    config = validate_config({"grid": {"arch": ["lstm", "gru"], "lr": [1.0, 0.1]}, "arch_grid": {"gru": {"lr": [0.1]}}})
    cells = expand_grid(config["grid"], arch_grid=config["arch_grid"])
    assert [(cell["arch"], cell["lr"]) for cell in cells] == [("lstm", 1.0), ("lstm", 0.1), ("gru", 0.1)]


@pytest.mark.parametrize("arch_grid,message", [
    ({"lstmm": {"lr": [0.1]}}, "config key arch_grid: 'lstmm' is not allowed; allowed values are ['rnn_tanh'"),
    ({"lstm": {"lr": 0.1}}, "config key arch_grid.lstm.lr: 0.1 is not a list; give a list, e.g. [0.1]"),
    ({"lstm": {"learning_rate": [0.1]}}, "config key arch_grid.lstm: unknown key(s) ['learning_rate']"),
    ({"lstm": {"arch": ["gru"]}}, "config key arch_grid.lstm: unknown key(s) ['arch']"),
    ({"lstm": {"lr": [0]}}, "config key arch_grid.lstm.lr.0: 0 is out of range; allowed values are numbers > 0"),
])
def test_bad_arch_grid_is_named(arch_grid, message):
    with pytest.raises(ConfigError) as error:
        validate_config({"grid": {"arch": ["lstm", "gru"]}, "arch_grid": arch_grid})
    assert message in str(error.value)


def test_arch_grid_of_a_task_run_takes_no_corpus_only_key():
    with pytest.raises(ConfigError, match="config key arch_grid.lstm.bptt: applies to language-model"):
        validate_config({"task": {"name": ["adding"], "T": [50]}, "grid": {"arch": ["lstm"]},
                         "arch_grid": {"lstm": {"bptt": [10]}}})
