"""Selective copying (Gu & Dao 2023): the data checked sequence by sequence in plain Python, the
baseline by the memoryless strategy, the solved criterion by hand, bad input named, and what
separates it from plain copy (a fixed delay cannot solve it)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnngrad import tasks
from rnngrad.config import ConfigError, validate_config


@pytest.mark.parametrize("T,length,symbols", [(16, 4, 8), (10, 10, 3), (1, 1, 2), (200, 10, 8)])
def test_the_symbols_sit_at_distinct_random_positions_and_the_target_recalls_them_in_order(T, length, symbols):
    inputs, targets = tasks.generate("selective_copy", 300, T, np.random.default_rng(T), length, symbols)
    assert inputs.shape == targets.shape == (300, T + length + 1)
    delimiter = symbols + 1
    for seq, out in zip(inputs.tolist(), targets.tolist()):
        region = seq[:T]
        positions = [i for i, token in enumerate(region) if token != 0]
        assert len(positions) == length, "exactly copy_length symbols among the first T steps, the rest blank"
        shown = [region[i] for i in positions]
        assert all(1 <= s <= symbols for s in shown)
        assert seq[T:] == [delimiter] + [0] * length, "the delimiter, then blank recall steps"
        assert out == [0] * (T + 1) + shown, "blanks, then the symbols in the order they appeared"


def test_positions_are_uniform_over_the_first_T_steps():
    """Each of the T steps holds a symbol with probability copy_length / T (distinct uniform positions)."""
    T, length, n = 20, 5, 20_000
    inputs, _ = tasks.generate("selective_copy", n, T, np.random.default_rng(0), length, 4)
    frequency = (inputs[:, :T] != 0).mean(axis=0)
    expected = length / T
    assert np.all(np.abs(frequency - expected) < 5 * math.sqrt(expected * (1 - expected) / n))


def test_the_delay_varies_from_sequence_to_sequence_unlike_plain_copy():
    """What a time-invariant recurrence cannot do: the symbol recalled at the last step was shown at a
    different distance in different sequences; in plain copy always at T + copy_length."""
    T, length = 50, 4
    inputs, targets = tasks.generate("selective_copy", 500, T, np.random.default_rng(1), length, 8)
    lags = tasks.dependency_lags("selective_copy", inputs, T, length, 8)["last_symbol"]
    last = T + length  # index of the last step
    for seq, target, lag in zip(inputs, targets, lags):
        assert seq[last - lag] == target[-1] and seq[last - lag + 1:T].tolist() == [0] * (T - last + lag - 1)
    assert len(set(lags.tolist())) > 20 and lags.min() >= length + 1 and lags.max() <= T + 1
    copy_inputs, _ = tasks.generate("copy", 500, T, np.random.default_rng(1), length, 8)
    assert set(tasks.dependency_lags("copy", copy_inputs, T, length, 8)["last_symbol"].tolist()) == {T + length}


@pytest.mark.parametrize("T", [5, 100])
def test_the_baseline_is_the_memoryless_strategys_loss(T):
    """Blanks for sure on the first T + 1 steps, a uniform guess among the symbols on the recall steps:
    copy_length log S / (T + copy_length + 1) for every sample."""
    length, symbols = 4, 8
    _, targets = tasks.generate("selective_copy", 1000, T, np.random.default_rng(T), length, symbols)
    log_probs = np.full((*targets.shape, symbols + 2), -np.inf)
    log_probs[:, : T + 1, 0] = 0.0
    log_probs[:, T + 1:, 1:symbols + 1] = -math.log(symbols)
    result = tasks.metrics("selective_copy", log_probs, targets, T, length, symbols)
    expected = length * math.log(symbols) / (T + length + 1)
    assert result["loss"] == pytest.approx(expected, rel=1e-12)
    assert result["baseline"] == pytest.approx(expected, rel=1e-15) == tasks.baseline("selective_copy", T, length,
                                                                                        symbols)
    assert result["ratio"] == pytest.approx(1.0) and not result["solved"]


def test_solved_means_at_least_99_percent_of_the_recalled_symbols_right():
    T, length, symbols, n = 6, 5, 3, 20
    _, targets = tasks.generate("selective_copy", n, T, np.random.default_rng(2), length, symbols)
    onehot = np.log(np.where(np.eye(symbols + 2)[targets] > 0, 0.9, 0.1 / (symbols + 1)))
    perfect = tasks.metrics("selective_copy", onehot, targets, T, length, symbols)
    assert perfect["accuracy"] == 1.0 and perfect["solved"]
    wrong = onehot.copy()
    wrong[0, -1] = np.roll(wrong[0, -1], 1)  # one recalled symbol of 100 wrong: 99%, still solved
    assert tasks.metrics("selective_copy", wrong, targets, T, length, symbols)["accuracy"] == pytest.approx(0.99)
    assert tasks.metrics("selective_copy", wrong, targets, T, length, symbols)["solved"]
    wrong[1, -1] = np.roll(wrong[1, -1], 1)  # two wrong: 98%, not solved
    assert not tasks.metrics("selective_copy", wrong, targets, T, length, symbols)["solved"]


@pytest.mark.parametrize("config,message", [
    ({"task": {"name": ["selective_copy"], "T": [8]}},
     "config key task.copy_length: 10 is longer than T = 8 allows; allowed values are integers 1..8"),
    ({"task": {"name": ["selective_copy"], "T": [20], "copy_symbols": 1}},
     "config key task.copy_symbols: 1 is out of range; allowed values are numbers >= 2"),
    ({"task": {"name": ["selective copy"], "T": [20]}},
     "config key task.name.0: 'selective copy' is not allowed; allowed values are "
     "['adding', 'copy', 'selective_copy']"),
])
def test_bad_input_is_named_before_any_job(config, message):
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert message in str(error.value)


def test_inputs_without_copy_length_symbols_are_rejected_by_the_probe_lags():
    inputs, _ = tasks.generate("selective_copy", 3, 12, np.random.default_rng(3), 3, 4)
    inputs[1, np.flatnonzero(inputs[1, :12])[0]] = 0  # one symbol fewer
    with pytest.raises(tasks.TaskError, match="exactly copy_length = 3 symbols among its first T = 12 steps"):
        tasks.dependency_lags("selective_copy", inputs, 12, 3, 4)


def test_its_shape_keys_are_the_copy_tasks_and_the_model_reads_tokens():
    assert tasks.settings_for("selective_copy", {"steps": 1, "valid_size": 2, "test_size": 3, "data_seed": 0,
                                                 "copy_length": 4, "copy_symbols": 5}) == {
        "steps": 1, "valid_size": 2, "test_size": 3, "data_seed": 0, "copy_length": 4, "copy_symbols": 5}
    assert tasks.model_shape("selective_copy", 4, 5) == {"vocab_size": 7, "input_features": None, "output_size": 7}
    assert tasks.sequence_length("selective_copy", 30, 4) == 35
    with pytest.raises(tasks.TaskError, match="'sorting' is not a task"):
        tasks.sequence_length("sorting", 30)
