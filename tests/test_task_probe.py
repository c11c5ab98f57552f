"""The task probe against an independent computation: one loss, one known dependency per window.

The reference here is a plain float64 autograd loop written in this file: torch.nn cells
(nn.RNNCell, nn.LSTMCell, nn.GRUCell) or the IndRNN's equation, loaded with the model's
weights, `retain_grad` on every h_t, and the one output step's loss (adding: the squared
error of the last step's prediction; copy: the cross-entropy of the last recall step).
Nothing of rnngrad.probe runs in it. The dependency lags are read off the sequences
themselves (where the markers are, which input symbol the last recall step asks for).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnngrad import probe, tasks
from rnngrad.model import build_model

T, COPY_LENGTH, SYMBOLS, WINDOWS = 14, 3, 4, 6
PROBE_CONFIG = {"fit_lags": [1, 8], "horizon_threshold": 1e-3}
ARCHS = ["rnn_tanh", "rnn_sigmoid", "irnn", "orthogonal_rnn", "indrnn", "lstm", "gru"]
CELLS = {"rnn_tanh": lambda size: nn.RNNCell(size, size, nonlinearity="tanh"),
         "rnn_sigmoid": None,  # torch has no sigmoid RNN cell: written out below
         "orthogonal_rnn": lambda size: nn.RNNCell(size, size, nonlinearity="tanh"),
         "irnn": lambda size: nn.RNNCell(size, size, nonlinearity="relu"),
         "lstm": lambda size: nn.LSTMCell(size, size), "gru": lambda size: nn.GRUCell(size, size)}


def task_model(arch, name, num_layers=1, **cell):
    length = tasks.sequence_length(name, T, COPY_LENGTH)
    return build_model(arch, hidden_size=8, num_layers=num_layers, seed=3, unroll_steps=length,
                       **tasks.model_shape(name, COPY_LENGTH, SYMBOLS), **cell)


def probe_sequences(name, n=WINDOWS):
    return tasks.eval_set(name, T, "test", n, 0, COPY_LENGTH, SYMBOLS)


def plain_gradients(model, name, inputs, targets):
    """(layers, windows, lags) ||dL/dh_{t_last - k}|| and the (windows,) losses, by a plain loop."""
    size, arch = model.hidden_size, model.arch
    x = torch.as_tensor(inputs)
    embedding = {key: value.detach().double() for key, value in model.embedding.named_parameters()}
    if name in tasks.TOKEN_TASKS:
        layer_input = F.embedding(x, embedding["weight"])
    else:
        layer_input = F.linear(x.double(), embedding["weight"], embedding["bias"])
    layer_input = layer_input.transpose(0, 1).requires_grad_(True)  # (steps, W, H); a leaf, so every h has a grad
    hidden = []
    for layer in range(model.num_layers):
        weights = {key: getattr(model.rnn, f"{key}_l{layer}").detach().double()
                   for key in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if hasattr(model.rnn, f"{key}_l{layer}")}
        if arch == "indrnn":
            u = model.rnn.recurrent_vector(layer).detach().double()  # the projected u the model runs with

            def step(x_t, h, w=weights, u=u):
                return torch.relu(x_t @ w["weight_ih"].t() + w["bias_ih"] + u * h)
        elif arch == "rnn_sigmoid":
            def step(x_t, h, w=weights):
                return torch.sigmoid(x_t @ w["weight_ih"].t() + w["bias_ih"] + h @ w["weight_hh"].t() + w["bias_hh"])
        else:
            module = CELLS[arch](size).double()
            with torch.no_grad():
                for key, value in weights.items():
                    getattr(module, key).copy_(value)
            step = module
        h = torch.zeros(len(inputs), size, dtype=torch.float64)
        state = (h, h.clone()) if arch == "lstm" else h
        outputs = []
        for x_t in layer_input:
            state = step(x_t, state)
            h = state[0] if arch == "lstm" else state
            h.retain_grad()
            outputs.append(h)
        hidden.append(outputs)
        layer_input = torch.stack(outputs)
    prediction = F.linear(hidden[-1][-1], model.decoder.weight.detach().double(), model.decoder.bias.detach().double())
    if name == "adding":
        loss = (prediction[:, 0] - torch.as_tensor(targets).double()) ** 2
    else:
        loss = F.cross_entropy(prediction, torch.as_tensor(targets[:, -1]), reduction="none")
    loss.sum().backward()
    grads = np.stack([[h.grad.norm(dim=-1).numpy() for h in reversed(outputs)] for outputs in hidden])
    return grads.transpose(0, 2, 1), loss.detach().numpy()


def lags_from_the_sequences(name, inputs, targets):
    """Each window's dependency lags, read off the data: where the markers are; where the recalled symbol was shown."""
    last = tasks.sequence_length(name, T, COPY_LENGTH) - 1
    if name == "adding":
        first = np.array([np.flatnonzero(seq[:, 1])[0] for seq in inputs])
        second = np.array([np.flatnonzero(seq[:, 1])[-1] for seq in inputs])
        return {"first_marker": last - first, "second_marker": last - second}
    # The symbol the last recall step must output was shown at the last symbol position: copy, the
    # last of the first COPY_LENGTH steps; selective copy, each sequence's last non-blank step before the delimiter.
    if name == "copy":
        shown = np.array([COPY_LENGTH - 1 for _ in inputs])
    else:
        shown = np.array([np.flatnonzero(seq[:T])[-1] for seq in inputs])
    assert (inputs[np.arange(len(inputs)), shown] == targets[:, -1]).all()
    return {"last_symbol": last - shown}


# ---------------------------------------------------------------- the loss and the gradients


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", tasks.TASKS)
def test_the_task_probe_is_the_gradient_of_one_output_steps_loss_at_every_lag(arch, name):
    model = task_model(arch, name, num_layers=2)
    inputs, targets = probe_sequences(name)
    result = probe.probe_model(model, inputs, 0, task={"name": name}, targets=targets)
    expected, loss = plain_gradients(model, name, inputs, targets)
    assert result["h"].shape == expected.shape == (2, WINDOWS, tasks.sequence_length(name, T, COPY_LENGTH))
    np.testing.assert_allclose(result["loss"], loss, rtol=1e-10)
    np.testing.assert_allclose(result["h"], expected, rtol=1e-8, atol=1e-300)


def test_the_copy_loss_is_the_last_recall_steps_cross_entropy():
    model = task_model("gru", "copy")
    inputs, targets = probe_sequences("copy")
    result = probe.probe_model(model, inputs, 0, task={"name": "copy"}, targets=targets)
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(inputs).t(), model.init_hidden(WINDOWS))  # float32, the fused module
        log_probs = torch.log_softmax(logits[-1], dim=-1)
    by_hand = -log_probs[np.arange(WINDOWS), targets[:, -1]].numpy()
    np.testing.assert_allclose(result["loss"], by_hand, rtol=1e-5)


# ---------------------------------------------------------------- the dependency lags


@pytest.mark.parametrize("name", tasks.TASKS)
def test_dependency_lags_are_where_each_sequence_keeps_its_information(name):
    inputs, targets = probe_sequences(name, 200)
    lags = tasks.dependency_lags(name, inputs, T, COPY_LENGTH, SYMBOLS)
    expected = lags_from_the_sequences(name, inputs, targets)
    assert list(lags) == list(expected), "the headline dependency first"
    for key in expected:
        np.testing.assert_array_equal(lags[key], expected[key])
    if name == "adding":  # every window its own lag: the first marker anywhere in the first half
        assert set(lags["first_marker"]) == set(range(T - T // 2, T))
        assert set(lags["second_marker"]) == set(range(0, T - T // 2))
    elif name == "copy":
        assert set(lags["last_symbol"]) == {T + COPY_LENGTH}
    else:  # the last of COPY_LENGTH distinct positions among T: anywhere in [COPY_LENGTH - 1, T), late ones likelier
        assert set(lags["last_symbol"]) <= set(T + COPY_LENGTH - np.arange(COPY_LENGTH - 1, T))
        assert len(set(lags["last_symbol"])) >= 8, "every sequence its own lag"


def test_adding_inputs_without_exactly_two_markers_are_rejected():
    inputs, _ = probe_sequences("adding", 3)
    inputs[1, 0, 1] = inputs[1, 1, 1] = 1.0
    with pytest.raises(tasks.TaskError, match="exactly two markers"):
        tasks.dependency_lags("adding", inputs, T)


@pytest.mark.parametrize("arch", ["rnn_tanh", "indrnn", "lstm"])
@pytest.mark.parametrize("name", tasks.TASKS)
def test_the_summary_reads_each_window_at_its_own_dependency_lag(arch, name):
    model = task_model(arch, name)
    inputs, targets = probe_sequences(name)
    result = probe.probe_model(model, inputs, 0, task={"name": name}, targets=targets)
    lags = tasks.dependency_lags(name, inputs, T, COPY_LENGTH, SYMBOLS)
    row = probe.summarise_probe(result, model, PROBE_CONFIG, lags)["summary"].iloc[0]
    assert (row["layer"], row["state"]) == (0, "h")
    expected, _ = plain_gradients(model, name, inputs, targets)
    windows = np.arange(WINDOWS)
    for prefix, key in zip(("dep", "second_marker"), lags_from_the_sequences(name, inputs, targets)):
        own = lags_from_the_sequences(name, inputs, targets)[key]
        # Window by window: the gradient at the window's own lag, normalised by its own lag 0.
        per_window = np.log10(expected[0, windows, own] / expected[0, :, 0])
        assert row[f"{prefix}_norm_log10_median"] == pytest.approx(np.median(per_window), abs=1e-9)
        assert (row[f"{prefix}_lag_min"], row[f"{prefix}_lag_max"]) == (own.min(), own.max())
        assert row[f"{prefix}_n"] == WINDOWS and row[f"{prefix}_n_censored"] == 0
    assert row["dependency"] == next(iter(lags))
    if name != "adding":
        assert "second_marker_norm_log10_median" not in row


def test_a_window_that_underflows_at_its_own_lag_is_counted_censored():
    logs = probe.censored_log10(np.array([[1.0, 1e-3, 1e-6], [2.0, 0.0, 0.0], [1.0, 0.1, 1e-2]]))
    stats = probe.dependency_stats(logs, np.array([2, 1, 1]))
    assert stats["n_censored"] == stats["n_underflow"] == 1
    # Sorted: -inf, -6, -1: the median (-6) is finite.
    assert stats["norm_log10_median"] == pytest.approx(-6.0)
    assert (stats["lag_min"], stats["lag_max"], stats["lag_median"]) == (1, 2, 1.0)
    stats = probe.dependency_stats(logs[:2], np.array([1, 1]))  # the median interpolates with -inf
    assert math.isnan(stats["norm_log10_median"])


# ---------------------------------------------------------------- Pascanu's bound, window by window


@pytest.mark.parametrize("arch, cell", [("rnn_tanh", {"init_scale": 1.0}), ("rnn_tanh", {"init_scale": 1.6}),
                                        ("rnn_sigmoid", {"init_scale": 3.0}), ("orthogonal_rnn", {}),
                                        ("indrnn", {"indrnn_bound": 2.0}), ("indrnn", {"indrnn_bound": 10.0})])
@pytest.mark.parametrize("name", tasks.TASKS)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_the_task_probe_respects_pascanus_bound_window_by_window(arch, cell, name, num_layers):
    model = task_model(arch, name, num_layers=num_layers, **cell)
    inputs, targets = probe_sequences(name)
    expected, _ = plain_gradients(model, name, inputs, targets)
    top = expected[-1]  # the bound holds for the top layer, whose h reaches the loss only through itself
    top_layer = num_layers - 1
    if arch == "indrnn":
        u = model.rnn.recurrent_vector(top_layer).detach().double()
        rate = u.abs().max().item()
        steps = tasks.sequence_length(name, T, COPY_LENGTH)
        assert rate <= cell["indrnn_bound"] ** (1 / steps) * (1 + 1e-6), "|u| <= bound^(1/L)"
        guaranteed = cell["indrnn_bound"] ** (np.arange(steps) / steps)
    else:
        weight = getattr(model.rnn, f"weight_hh_l{top_layer}").detach().double()
        rate = (0.25 if arch == "rnn_sigmoid" else 1.0) * torch.linalg.matrix_norm(weight, ord=2).item()
    lags = np.arange(top.shape[1])
    allowed = top[:, :1] * rate ** lags
    assert (top <= allowed * (1 + 1e-9)).all(), "g(k) <= g(0) (gamma sigma_max)^k"
    if arch == "indrnn":
        assert (top <= top[:, :1] * guaranteed * (1 + 1e-9)).all(), "g(k) <= g(0) bound^(k/L)"
    result = probe.probe_model(model, inputs, 0, task={"name": name}, targets=targets)
    assert (result["h"][-1] <= allowed * (1 + 1e-9)).all()
    summary = probe.summarise_probe(result, model, PROBE_CONFIG,
                                    tasks.dependency_lags(name, inputs, T, COPY_LENGTH, SYMBOLS))["summary"]
    h = summary[summary["state"] == "h"].set_index("layer")
    assert h.loc[top_layer, "bound_rate"] == pytest.approx(math.log10(rate), abs=1e-9)
    assert h.drop(top_layer)["bound_rate"].isna().all(), "no bound on a lower layer"
    assert (h.loc[top_layer, "dep_norm_log10_median"]
            <= h.loc[top_layer, "dep_lag_max"] * max(math.log10(rate), 0) + 1e-9)


# ---------------------------------------------------------------- the smaller corrections


def test_hochreiter_and_schmidhubers_criterion_on_their_target_scale():
    # Our targets are sums in [0, 2]; theirs lie in [0, 1]: |error| < 0.04 there is |error| < 0.08 here.
    result = tasks.metrics("adding", np.array([1.079, 1.081, 0.5]), np.array([1.0, 1.0, 0.5]), 10)
    assert result["accuracy"] == pytest.approx(2 / 3)


def test_the_indrnn_starts_with_the_authors_input_weights_on_a_task_and_torchs_on_a_corpus():
    task = task_model("indrnn", "adding", num_layers=2, indrnn_bound=2.0)
    for layer in range(2):
        weight = getattr(task.rnn, f"weight_ih_l{layer}").detach()
        assert weight.std().item() == pytest.approx(0.001, rel=0.2)
    corpus = build_model("indrnn", vocab_size=20, hidden_size=64, seed=3)
    weight = corpus.rnn.weight_ih_l0.detach()
    assert weight.abs().max().item() <= 1 / math.sqrt(64) and weight.std().item() > 0.02
