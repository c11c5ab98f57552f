"""The gradient probe is right: fused-module equality, finite differences, a NumPy BPTT,
closed forms, Pascanu's bound, censoring, temporal contributions, per-run tables."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch

from rnngrad import archs, collect, probe
from rnngrad.grid import grid_keys, normalise_cell, run_path
from rnngrad.model import build_model, load_checkpoint, save_checkpoint, spectral_stats

ARCHS = ("rnn_tanh", "rnn_sigmoid", "rnn_relu", "irnn", "lstm", "gru")
VANILLA = ("rnn_tanh", "rnn_sigmoid", "rnn_relu")
VOCAB = 13


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(arch, hidden=6, layers=2, scale=1.0, init="orthogonal", seed=0):
    return build_model(arch, vocab_size=VOCAB, hidden_size=hidden, num_layers=layers,
                       init=init, init_scale=scale, forget_bias=1.0, seed=seed)


def random_windows(n, burn_in, max_lag, seed=0):
    return np.random.default_rng(seed).integers(0, VOCAB, size=(n, burn_in + max_lag + 2))


# ---------------------------------------------------------------- the unrolled cells


@pytest.mark.parametrize("arch", ARCHS)
def test_cells_give_the_fused_modules_outputs(arch):
    model = tiny(arch)
    tokens = torch.as_tensor(random_windows(3, 4, 7))
    unrolled = probe.unroll(model, tokens, burn_in=4)
    fused = copy.deepcopy(model).double()
    with torch.no_grad():
        hidden0 = fused.init_hidden(3)
        output, final = fused.rnn(fused.embedding(tokens[:, :-1].t()), hidden0)
    top = torch.stack(unrolled.hidden[-1]).detach()
    assert torch.allclose(top, output[4:], rtol=0, atol=1e-13)
    finals = final if arch == "lstm" else (final,)
    for layer in range(2):
        last = unrolled.states[layer][-1]  # the state tuple: (h, c) for the LSTM
        for ours, theirs in zip(last, finals):
            assert torch.allclose(ours, theirs[layer], rtol=0, atol=1e-13)
    # Loss: the fused model's cross-entropy at the last step.
    logits = fused.decoder(output[-1])
    expected = torch.nn.functional.cross_entropy(logits, tokens[:, -1], reduction="none")
    assert torch.allclose(unrolled.loss.detach(), expected, atol=1e-13)


def test_chunks_do_not_change_the_result():
    model = tiny("lstm")
    windows = random_windows(5, 3, 6)
    whole = probe.probe_model(model, windows, 3, jacobian_windows=2, chunk_size=128)
    chunked = probe.probe_model(model, windows, 3, jacobian_windows=2, chunk_size=2)
    for key in whole:
        np.testing.assert_allclose(chunked[key], whole[key], rtol=1e-12, atol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_closed_form_step_jacobians_equal_autograds(arch):
    model = tiny(arch, hidden=5, scale=1.3)
    unrolled = probe.unroll(model, torch.as_tensor(random_windows(3, 4, 6)), 4)
    for layer, weights in enumerate(probe.layer_weights(model)):
        flat = probe.flatten_state
        prev = torch.cat([flat(unrolled.prev_state[layer])] + [flat(s) for s in unrolled.states[layer][:-1]])
        x_proj = unrolled.x_proj[layer].flatten(0, 1)
        closed = probe.step_jacobians(arch, weights, prev, x_proj)
        reference = probe.step_jacobians_autograd(arch, weights, prev, x_proj)
        assert closed.shape == reference.shape == (len(prev), prev.shape[1], prev.shape[1])
        assert torch.allclose(closed, reference, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- finite differences


def finite_difference_gradient(model, tokens, burn_in, kind, layer, t, window, eps=1e-6):
    """dL_window/d(probe) by central differences, coordinate by coordinate."""
    width = model.hidden_size
    grad = np.zeros(width)
    for i in range(width):
        losses = []
        for sign in (1, -1):
            value = torch.zeros(tokens.shape[0], width, dtype=torch.float64)
            value[window, i] = sign * eps
            unrolled = probe.unroll(model, tokens, burn_in, probe_values={(kind, layer, t): value})
            losses.append(unrolled.loss[window].item())
        grad[i] = (losses[0] - losses[1]) / (2 * eps)
    return grad


@pytest.mark.parametrize("arch", ARCHS)
def test_finite_differences_agree_with_g(arch):
    model = tiny(arch, hidden=4)
    burn_in, max_lag = 3, 5
    windows = random_windows(2, burn_in, max_lag, seed=1)
    result = probe.probe_model(model, windows, burn_in)
    tokens = torch.as_tensor(windows)
    checks = [("h", layer, k) for layer in (0, 1) for k in (0, 2, max_lag)] + [("x", 0, 1), ("x", 0, max_lag)]
    if arch == "lstm":
        checks += [("c", layer, k) for layer in (0, 1) for k in (1, max_lag)]
    for kind, layer, k in checks:
        for window in range(2):
            gradient = finite_difference_gradient(model, tokens, burn_in, kind, layer, max_lag - k, window)
            numeric = np.linalg.norm(gradient)
            measured = result["x"][window, k] if kind == "x" else result[kind][layer, window, k]
            assert measured == pytest.approx(numeric, rel=1e-5, abs=1e-9), (kind, layer, k, window)


# ---------------------------------------------------------------- the LSTM cell state


def numpy_lstm(model, windows, burn_in, perturb=None):
    """Independent NumPy forward of a stacked LSTM language model on probe windows.

    torch's LSTM equations with the nn.LSTM weights; `perturb` = (layer, t, delta) adds
    delta (W, H) to c_t of that layer BEFORE h_t = o_t tanh(c_t) (t counts the K + 1 probed
    steps). Returns per-window losses and, per layer, the probed steps' (o_t, c_t).
    """
    get = lambda name: getattr(model.rnn, name).detach().double().numpy()  # noqa: E731
    sigmoid = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    x = model.embedding.weight.detach().double().numpy()[windows[:, :-1]].transpose(1, 0, 2)  # (T, W, E)
    gates = []
    for layer in range(model.num_layers):
        w_ih, w_hh = get(f"weight_ih_l{layer}"), get(f"weight_hh_l{layer}")
        bias = get(f"bias_ih_l{layer}") + get(f"bias_hh_l{layer}")
        h = c = np.zeros((len(windows), model.hidden_size))
        outputs, layer_gates = [], []
        for t in range(len(x)):
            i, f, g, o = np.split(x[t] @ w_ih.T + h @ w_hh.T + bias, 4, axis=-1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            if perturb is not None and perturb[:2] == (layer, t - burn_in):
                c = c + perturb[2]
            h = sigmoid(o) * np.tanh(c)
            outputs.append(h)
            if t >= burn_in:
                layer_gates.append((sigmoid(o), c))
        x = np.stack(outputs)
        gates.append(layer_gates)
    logits = x[-1] @ model.decoder.weight.detach().double().numpy().T + model.decoder.bias.detach().double().numpy()
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(windows)), windows[:, -1]], gates


def test_numpy_lstm_reproduces_the_probe_loss():
    model = tiny("lstm", hidden=4)
    windows = random_windows(3, 3, 5, seed=2)
    losses, _ = numpy_lstm(model, windows, 3)
    np.testing.assert_allclose(losses, probe.probe_model(model, windows, 3)["loss"], rtol=1e-12)


def test_cell_state_curve_is_the_total_derivative_by_finite_differences():
    """||dL_T/dc_{T-k}|| with c perturbed before h is computed from it, every lag 0..K, both layers."""
    model = tiny("lstm", hidden=4)
    burn_in, max_lag, eps = 3, 5, 1e-6
    windows = random_windows(2, burn_in, max_lag, seed=1)
    result = probe.probe_model(model, windows, burn_in)
    for layer in range(2):
        for k in range(max_lag + 1):
            gradient = np.zeros((2, 4))
            for unit in range(4):
                delta = np.zeros((2, 4))
                delta[:, unit] = eps
                plus, _ = numpy_lstm(model, windows, burn_in, (layer, max_lag - k, delta))
                minus, _ = numpy_lstm(model, windows, burn_in, (layer, max_lag - k, -delta))
                gradient[:, unit] = (plus - minus) / (2 * eps)
            np.testing.assert_allclose(result["c"][layer, :, k], np.linalg.norm(gradient, axis=1),
                                       rtol=1e-5, err_msg=f"layer {layer}, lag {k}")
    assert (result["c"][:, :, 0] > 0).all()  # the total derivative at lag 0 is not zero


def test_cell_state_gradient_at_lag_0_has_its_closed_form():
    """dL/dc_T = dL/dh_T * o_T * (1 - tanh(c_T)^2): c_T reaches L_T only through h_T."""
    model = tiny("lstm", hidden=5)
    burn_in, max_lag = 4, 6
    windows = random_windows(3, burn_in, max_lag, seed=3)
    unrolled = probe.unroll(model, torch.as_tensor(windows), burn_in)
    leaves = unrolled.probes["h"] + unrolled.probes["c"]
    grads = torch.autograd.grad(unrolled.loss.sum(), leaves)
    _, gates = numpy_lstm(model, windows, burn_in)
    for layer in range(2):
        dl_dh, dl_dc = grads[layer][max_lag].numpy(), grads[2 + layer][max_lag].numpy()
        o, c = gates[layer][max_lag]
        np.testing.assert_allclose(dl_dc, dl_dh * o * (1 - np.tanh(c) ** 2), rtol=1e-10, atol=1e-16)


# ---------------------------------------------------------------- the seed tutorial's BPTT


class NumpyTanhRNN:
    """The naive BPTT of the classic tutorial, for our parameterisation.

    s_t = tanh(W_ih E[x_t] + b + W_hh s_{t-1}); L = CE(D s_T + d, y). The backward pass is
    the explicit delta recursion, truncated `bptt_truncate` steps back from T.
    """

    def __init__(self, model):
        get = lambda name: getattr(model.rnn, name).detach().double().numpy().copy()  # noqa: E731
        self.E = model.embedding.weight.detach().double().numpy()
        self.W_ih, self.W_hh = get("weight_ih_l0"), get("weight_hh_l0")
        self.b = get("bias_ih_l0") + get("bias_hh_l0")
        self.D = model.decoder.weight.detach().double().numpy()
        self.d = model.decoder.bias.detach().double().numpy()

    def forward(self, inputs):
        s = [np.zeros(self.W_hh.shape[0])]
        for token in inputs:
            s.append(np.tanh(self.W_ih @ self.E[token] + self.b + self.W_hh @ s[-1]))
        return s  # s[0] is the zero state, s[t + 1] after input t

    def loss(self, inputs, target):
        logits = self.D @ self.forward(inputs)[-1] + self.d
        return np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - logits[target]

    def bptt(self, inputs, target, bptt_truncate):
        s = self.forward(inputs)
        logits = self.D @ s[-1] + self.d
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        probs[target] -= 1
        delta_h = self.D.T @ probs  # dL/ds_T
        dW_hh, deltas = np.zeros_like(self.W_hh), []
        for step in range(len(inputs), max(len(inputs) - bptt_truncate - 1, 0), -1):
            deltas.append(np.linalg.norm(delta_h))
            delta_pre = delta_h * (1 - s[step] ** 2)
            dW_hh += np.outer(delta_pre, s[step - 1])
            delta_h = self.W_hh.T @ delta_pre
        return dW_hh, np.array(deltas)  # deltas[k] = ||dL/ds_{T-k}||

    def gradient_check(self, inputs, target, h=1e-3, tolerance=1e-2):
        """The tutorial's check: every entry of dL/dW_hh against central differences."""
        analytic, _ = self.bptt(inputs, target, bptt_truncate=len(inputs))
        worst = 0.0
        for index in np.ndindex(*self.W_hh.shape):
            original = self.W_hh[index]
            self.W_hh[index] = original + h
            plus = self.loss(inputs, target)
            self.W_hh[index] = original - h
            minus = self.loss(inputs, target)
            self.W_hh[index] = original
            numeric = (plus - minus) / (2 * h)
            denominator = abs(numeric) + abs(analytic[index])
            if denominator > 1e-12:
                worst = max(worst, abs(numeric - analytic[index]) / denominator)
        return worst


@pytest.mark.parametrize("burn_in", [0, 6])
def test_numpy_bptt_gives_the_probes_gradients(burn_in):
    model = tiny("rnn_tanh", hidden=5, layers=1, scale=1.2)
    max_lag = 8
    windows = random_windows(3, burn_in, max_lag, seed=2)
    result = probe.probe_model(model, windows, burn_in)
    weights = probe.layer_weights(model)
    weights[0]["weight_hh"].requires_grad_(True)
    tokens = torch.as_tensor(windows)
    reference = NumpyTanhRNN(model)
    for window in range(3):
        inputs, target = windows[window, :-1], windows[window, -1]
        if burn_in == 0:
            assert reference.gradient_check(inputs, target) < 1e-2
        dW_numpy, deltas = reference.bptt(inputs, target, bptt_truncate=max_lag)
        unrolled = probe.unroll(model, tokens, burn_in, weights)
        (dW_probe,) = torch.autograd.grad(unrolled.loss[window], weights[0]["weight_hh"])
        np.testing.assert_allclose(dW_probe.numpy(), dW_numpy, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(result["h"][0, window], deltas, rtol=1e-9)


# ---------------------------------------------------------------- closed form


@pytest.mark.parametrize("rho", [0.8, 1.1])
def test_linear_rnn_with_scaled_orthogonal_w_hh_decays_as_rho_to_the_k(monkeypatch, rho):
    monkeypatch.setattr(archs.get("rnn_tanh"), "activation", lambda pre: pre)
    model = tiny("rnn_tanh", hidden=6, layers=1).double()
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():
        model.rnn.weight_hh_l0.copy_(rho * q)
    max_lag = 40
    result = probe.probe_model(model, random_windows(4, 5, max_lag), 5, jacobian_windows=2)
    lags = np.arange(max_lag + 1)
    g = result["h"][0]
    np.testing.assert_allclose(g, g[:, :1] * rho ** lags, rtol=1e-10)
    np.testing.assert_allclose(result["jacobian"][0], np.tile(lags * np.log10(rho), (2, 1)), atol=1e-10)
    np.testing.assert_allclose(result["step_jacobian"][0], rho, rtol=1e-10)
    summary = probe.summarise_probe(result, model, {"fit_lags": [1, 30], "horizon_threshold": 1e-3})["summary"]
    for state in ("h", "jacobian"):
        row = summary[summary.state == state].iloc[0]
        assert row.slope == pytest.approx(np.log10(rho), abs=1e-10)
        assert row.slope_se == pytest.approx(0, abs=1e-9)
        assert (row.fit_first, row.fit_last) == (1, 30)


# ---------------------------------------------------------------- Pascanu's bound


def assert_bound_holds(model, windows, burn_in):
    """g(k) <= g(0) (gamma sigma_max)^k window by window, for the top layer."""
    result = probe.probe_model(model, windows, burn_in, jacobian_windows=2)
    top = model.num_layers - 1
    gamma = archs.get(model.arch).gamma
    sigma = spectral_stats(model.recurrent_weights()[top], model.arch)["sigma_max"]
    g = result["h"][top]
    lags = np.arange(g.shape[1])
    bound = g[:, :1] * (gamma * sigma) ** lags
    assert np.all(g <= bound * (1 + 1e-9) + 1e-300)
    assert np.all(result["step_jacobian"][top] <= gamma * sigma * (1 + 1e-9))
    return g, bound


@pytest.mark.parametrize("arch", VANILLA)
@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0, 4.0])
@pytest.mark.parametrize("init", ["orthogonal", "uniform"])
def test_pascanu_bound_holds_window_by_window(arch, scale, init):
    for layers in (1, 2):
        model = tiny(arch, hidden=8, layers=layers, scale=scale, init=init)
        g, bound = assert_bound_holds(model, random_windows(6, 5, 25), 5)
        if arch == "rnn_sigmoid" and init == "orthogonal":
            # Not vacuous: for the sigmoid the bound is close to the truth.
            assert np.median(np.log10(g[:, 10] / bound[:, 10])) > -3


@pytest.mark.parametrize("arch", ["rnn_tanh", "rnn_sigmoid"])
def test_pascanu_bound_holds_at_trained_checkpoints(arch, tmp_path):
    model = tiny(arch, hidden=8, layers=1, scale=1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=2.0)
    data = torch.as_tensor(random_windows(8, 0, 18, seed=5)).t()
    windows = random_windows(6, 5, 25, seed=6)
    weights_before = model.rnn.weight_hh_l0.detach().clone()
    for step in range(6):
        optimizer.zero_grad()
        logits, _ = model(data[:-1], model.init_hidden(data.shape[1]))
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), data[1:].flatten()).backward()
        optimizer.step()
        path = tmp_path / f"step_{step:08d}.pt"
        save_checkpoint(path, model, {"arch": arch, "vocab_size": VOCAB, "hidden_size": 8, "num_layers": 1},
                        step=step, tokens_seen=0)
        loaded, _ = load_checkpoint(path)
        assert_bound_holds(loaded, windows, 5)
    assert not torch.allclose(model.rnn.weight_hh_l0, weights_before)


# ---------------------------------------------------------------- censoring


def test_censored_statistics_never_report_log_of_zero():
    values = np.array([[1.0, 1e-3, 0.0, 1e-3], [1.0, 1e-2, 0.0, 0.0], [1.0, 0.0, 1e-300, 0.0],
                       [2.0, np.inf, 1e-5, 0.0]])
    logs = probe.censored_log10(values)
    stats = probe.curve_stats(logs)
    assert list(stats["n"]) == [4] * 4 and list(stats["n_censored"]) == [0, 2, 2, 3]
    assert list(stats["n_underflow"]) == [0, 1, 2, 3]
    assert stats["log10_mean"][0] == pytest.approx(np.log10(1.25))
    # An overflowed window makes the mean unknown: NaN, not the mean of the others.
    assert np.isnan(stats["log10_mean"][1])
    # An underflowed window is (next to) zero and still counts: mean(0, 0, 1e-300, 1e-5), mean(1e-3, 0, 0, 0).
    assert stats["log10_mean"][2] == pytest.approx(np.log10(1e-5 / 4))
    assert stats["log10_mean"][3] == pytest.approx(np.log10(1e-3 / 4))
    assert np.isnan(probe.log10_mean(probe.censored_log10(np.zeros((3, 1)))))  # below float64: unknown
    # Median of lag 2 falls between 0.0 and 1e-300: censored -> NaN (not -inf).
    assert np.isnan(stats["log10_median"][2])
    # Quantiles below the censored ones stay finite: q75 of lag 2 between 1e-300 and 1e-5.
    assert stats["log10_q75"][2] == pytest.approx(-300 + 0.25 * 295)
    for column in stats.values():
        assert not np.isinf(column).any()


def test_diagonal_jacobian_products_are_the_dense_ones_of_their_diagonal_matrices():
    """The S6's diagonal step Jacobians: the products of their diagonals (in log space) against
    jacobian_products of the diag_embed matrices, where the product is ordinary, where it leaves
    float64's range (1e-200 and 1e200 per step), and where it is censored: one unit exactly zero
    (not censored), every unit zero (-inf from then on), a NaN or inf factor (+inf from then on),
    and whichever of zero and NaN comes first."""
    rng = np.random.default_rng(0)
    diagonals = torch.as_tensor(rng.uniform(-1.5, 1.5, size=(7, 9, 4)))  # lag k multiplies in step 9 - k
    diagonals[1, 3, 0] = 0.0  # one unit at lag 6
    diagonals[2, 5] = 0.0  # every unit at lag 4
    diagonals[3, 4, 2] = math.nan  # lag 5
    diagonals[4, 6, 1] = math.inf  # lag 3
    diagonals[5, 6] = 0.0
    diagonals[5, 3, 1] = math.nan  # zero at lag 3, then NaN at lag 6: stays -inf
    diagonals[6, 2] = 0.0
    diagonals[6, 7, 0] = math.nan  # NaN at lag 2, zero at lag 7: stays +inf
    dense = probe.jacobian_products(torch.diag_embed(diagonals))
    ours = probe.diagonal_jacobian_products(diagonals)
    assert torch.equal(torch.isinf(ours), torch.isinf(dense)) and torch.equal(ours.sign(), dense.sign())
    torch.testing.assert_close(ours[torch.isfinite(ours)], dense[torch.isfinite(dense)], rtol=0, atol=1e-12)
    assert torch.isfinite(ours[:2]).all() and torch.isfinite(ours[2:, :2]).all()
    assert ours[2, 4:].eq(-math.inf).all() and ours[3, 5:].eq(math.inf).all() and ours[4, 3:].eq(math.inf).all()
    assert ours[5, 3:].eq(-math.inf).all() and ours[6, 2:].eq(math.inf).all()
    extreme = torch.tensor([1e-200, 1e200], dtype=torch.float64)[:, None, None].expand(2, 6, 3)
    expected = torch.arange(6.0, dtype=torch.float64)[None] * torch.tensor([[-200.0], [200.0]], dtype=torch.float64)
    torch.testing.assert_close(probe.diagonal_jacobian_products(extreme), expected, rtol=0, atol=1e-9)
    torch.testing.assert_close(probe.jacobian_products(torch.diag_embed(extreme)), expected, rtol=0, atol=1e-9)


def test_an_underflowing_probe_is_censored_in_the_tables():
    # A sigmoid RNN loses > 0.6 decades per step: past ~550 steps float64 underflows.
    model = tiny("rnn_sigmoid", hidden=4, layers=1, scale=1.0)
    result = probe.probe_model(model, random_windows(4, 2, 700), 2)
    assert (result["h"][0, :, -1] == 0).all() and (result["h"][0, :, 1] > 0).all()
    tables = probe.summarise_probe(result, model, {"fit_lags": [1, 40], "horizon_threshold": 1e-3})
    curves = tables["curves"][tables["curves"].state == "h"]
    assert curves.n_censored.iloc[-1] == 4 and curves.n_censored.iloc[1] == 0
    assert curves.log10_median.iloc[-1] != curves.log10_median.iloc[-1]  # NaN
    for frame in tables.values():
        numeric = frame.select_dtypes("number").to_numpy(dtype=float)
        assert not np.isinf(numeric).any()
    summary = tables["summary"].set_index("state").loc["h"]
    assert np.isfinite(summary.slope) and summary.slope < -0.3
    assert not summary.horizon_censored and summary.horizon < 20


def test_fit_slope_and_horizon():
    lags = np.arange(11)
    line = 2.0 - 0.5 * lags
    fit = probe.fit_slope(lags, line, 2, 8)
    assert fit["slope"] == pytest.approx(-0.5) and fit["slope_se"] == pytest.approx(0, abs=1e-12)
    assert (fit["fit_first"], fit["fit_last"]) == (2, 8)
    noisy = line + np.random.default_rng(0).normal(0, 0.1, size=11)
    noisy[7:] = np.nan  # censored medians shorten the fit
    fit = probe.fit_slope(lags, noisy, 2, 8)
    assert fit["fit_last"] == 6 and fit["slope_se"] > 0
    x, y = lags[2:7], noisy[2:7]
    expected = np.polyfit(x, y, 1)[0]
    assert fit["slope"] == pytest.approx(expected)
    logs = np.tile(line, (3, 1))  # normalised median drops by 0.5 per lag
    assert probe.gradient_horizon(logs, 1e-3) == (7, False)  # -3.5 < -3 first at 7
    assert probe.gradient_horizon(logs, 1e-9) == (10, True)
    logs[:, 4:] = -np.inf  # underflow counts as below the threshold
    assert probe.gradient_horizon(logs, 1e-3) == (4, False)


# ---------------------------------------------------------------- temporal contributions


@pytest.mark.parametrize("arch", ARCHS)
def test_temporal_contributions_sum_to_autograds_dl_dw_hh(arch):
    model = tiny(arch, hidden=5)
    burn_in, max_lag = 4, 9
    windows = random_windows(3, burn_in, max_lag, seed=4)
    weights = probe.layer_weights(model)
    for w in weights:
        w["weight_hh"].requires_grad_(True)
    unrolled = probe.unroll(model, torch.as_tensor(windows), burn_in, weights)
    result = probe.probe_model(model, windows, burn_in)
    for layer in range(2):
        for window in range(3):
            loss = unrolled.loss[window]
            (expected,) = torch.autograd.grad(loss, weights[layer]["weight_hh"], retain_graph=True)
            (e_grads,) = torch.autograd.grad(loss, unrolled.probes["e"][layer], retain_graph=True)
            h_prev = [unrolled.prev_hidden[layer]] + unrolled.hidden[layer][:-1]
            parts = [torch.outer(e[window], h[window].detach()) for e, h in zip(e_grads, h_prev)]
            assert torch.allclose(sum(parts), expected, rtol=1e-12, atol=1e-15)
            norms = [torch.linalg.matrix_norm(p).item() for p in reversed(parts)]  # by lag
            np.testing.assert_allclose(result["contributions"][layer, window], norms, rtol=1e-10, atol=1e-300)


def per_step_weight_gradients(model, windows, burn_in):
    """dL/dW_hh^(t) for a one-layer tanh RNN in which step t uses its own copy W_hh^(t).

    The part of dL/dW_hh that comes from step t, computed without the probe's code:
    plain torch ops on the nn.RNN weights, one leaf per step. Returns (W, K+1, H, H) by t.
    """
    rnn, tokens = model.rnn, torch.as_tensor(windows)
    w_ih, w_hh, b_ih, b_hh = (getattr(rnn, f"{name}_l0").detach().double()
                              for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    x = model.embedding.weight.detach().double()[tokens[:, :-1]]  # (W, B + K + 1, E)
    h = torch.zeros(len(windows), w_hh.shape[0], dtype=torch.float64)
    for t in range(burn_in):
        h = torch.tanh(x[:, t] @ w_ih.t() + b_ih + h @ w_hh.t() + b_hh)
    copies = [w_hh.clone().requires_grad_(True) for _ in range(x.shape[1] - burn_in)]
    for t, w in enumerate(copies):
        h = torch.tanh(x[:, burn_in + t] @ w_ih.t() + b_ih + h @ w.t() + b_hh)
    logits = h @ model.decoder.weight.detach().double().t() + model.decoder.bias.detach().double()
    losses = torch.nn.functional.cross_entropy(logits, tokens[:, -1], reduction="none")
    per_window = [torch.stack(torch.autograd.grad(loss, copies, retain_graph=True)) for loss in losses]
    return torch.stack(per_window)


def test_contribution_table_shares_match_per_step_weight_copies():
    model = tiny("rnn_tanh", hidden=5, layers=1, scale=0.6)
    settings = {"fit_lags": [1, 10], "horizon_threshold": 1e-3}
    windows = random_windows(5, 3, 20)
    table = probe.summarise_probe(probe.probe_model(model, windows, 3), model, settings)["contributions"]
    parts = torch.linalg.matrix_norm(per_step_weight_gradients(model, windows, 3)).flip(1).numpy()  # by lag
    shares = parts / parts.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(table.share_median, np.median(shares, axis=0), rtol=1e-9)
    np.testing.assert_allclose(table.log10_median, np.median(np.log10(parts), axis=0), rtol=1e-9)
    # A contracting RNN learns from the recent past: recent lags dominate.
    assert table.share_median.iloc[:3].sum() > table.share_median.iloc[10:].sum()
    # Norms whose shares are known by hand, per window: [1/2 1/4 1/4 0], [1/4 1/4 1/2 0], [1/4 3/4 0 0].
    result = probe.probe_model(model, random_windows(3, 3, 3), 3)
    result["contributions"] = np.array([[[2.0, 1.0, 1.0, 0.0], [1.0, 1.0, 2.0, 0.0], [1.0, 3.0, 0.0, 0.0]]])
    table = probe.summarise_probe(result, model, settings)["contributions"]
    np.testing.assert_allclose(table.share_median, [0.25, 0.25, 0.25, 0.0])  # median over windows, lag by lag


# ---------------------------------------------------------------- windows and per-run tables


def test_windows_are_the_same_for_every_run():
    tokens = np.arange(1000)
    a = probe.make_windows(tokens, 7, 5, 10, seed=9)
    assert a.shape == (7, 17) and (np.diff(a, axis=1) == 1).all()
    np.testing.assert_array_equal(a, probe.make_windows(tokens, 7, 5, 10, seed=9))
    assert not np.array_equal(a, probe.make_windows(tokens, 7, 5, 10, seed=10))
    with pytest.raises(ValueError, match="fewer than one probe window"):
        probe.make_windows(tokens[:16], 1, 5, 10, seed=9)


CELL = {"arch": "lstm", "hidden_size": 5, "num_layers": 2, "init": "orthogonal", "init_scale": 1.0,
        "forget_bias": 1.0, "lr": 1.0, "optimizer": "sgd", "clip": None, "bptt": 10, "batch_size": 4,
        "epochs": 1, "seed": 0}
CONFIG = {"split": "valid", "windows": 6, "burn_in": 4, "max_lag": 12, "jacobian_windows": 2, "seed": 1,
          "fit_lags": [1, 8], "horizon_threshold": 1e-3, "threads": 1}


def write_run(root, cell, steps=(0, 3)):
    cell = normalise_cell(cell)
    directory = root / run_path(cell) / "checkpoints"
    directory.mkdir(parents=True)
    model = build_model(**cell, vocab_size=VOCAB)
    for step in steps:
        with torch.no_grad():
            model.rnn.weight_hh_l0.mul_(1.1)
        save_checkpoint(directory / f"step_{step:08d}.pt", model, {**cell, "vocab_size": VOCAB},
                        step=step, tokens_seen=10 * step, progress=step / 3, epoch=0)
    return directory


def test_probe_run_and_collect_curves_write_the_tables(tmp_path):
    tokens = tmp_path / "valid.npy"
    np.save(tokens, np.random.default_rng(0).integers(0, VOCAB, size=500))
    runs = [write_run(tmp_path / "runs", CELL), write_run(tmp_path / "runs", {**CELL, "arch": "rnn_tanh"})]
    per_run = []
    for i, directory in enumerate(runs):
        outputs = {name: tmp_path / f"out{i}" / f"{name}.csv" for name in probe.TABLES}
        probe.probe_run(directory, tokens, CONFIG, outputs)
        per_run.append(outputs)
    tables = {name: tmp_path / "tables" / f"{name}.csv" for name in probe.TABLES}
    collect.collect_curves({name: [o[name] for o in per_run] for name in probe.TABLES}, tables)
    frames = {name: pd.read_csv(path) for name, path in tables.items()}
    keys = ["run", *grid_keys()]
    expected_columns = {
        "curves": keys + ["step", "tokens_seen", "progress", "layer", "state", "lag", *probe.CURVE_STATS],
        "summary": keys + ["step", "tokens_seen", "progress", "layer", "state", "slope", "slope_se", "fit_first",
                           "fit_last", "horizon", "horizon_censored", "sigma_max", "spectral_radius", "gamma",
                           "bound_rate"],
        "contributions": keys + ["step", "progress", "layer", "lag", "log10_median", "share_median"],
        "jacobians": keys + ["step", "progress", "layer", "q05", "q25", "median", "q75", "q95", "max", "bound"],
    }
    for name, columns in expected_columns.items():
        assert list(frames[name].columns) == columns, name
    curves = frames["curves"]
    lstm = curves[curves.arch == "lstm"]
    # (h, c per layer) + x + jacobian per layer = 7 series, 2 checkpoints, 13 lags.
    assert len(lstm) == 7 * 2 * 13 and set(lstm.state) == {"h", "c", "x", "jacobian"}
    tanh = curves[curves.arch == "rnn_tanh"]
    assert len(tanh) == 5 * 2 * 13 and set(tanh.forget_bias) == {"na"}
    assert set(curves.step) == {0, 3} and set(curves.progress) == {0, 1}
    assert (curves.n[curves.state != "jacobian"] == 6).all() and (curves.n[curves.state == "jacobian"] == 2).all()
    summary = frames["summary"]
    assert summary[summary.arch == "lstm"].bound_rate.isna().all()
    vanilla = summary[summary.arch == "rnn_tanh"]
    bounded = (vanilla.state == "jacobian") | ((vanilla.state == "h") & (vanilla.layer == 1))
    np.testing.assert_allclose(vanilla[bounded].bound_rate, np.log10(vanilla[bounded].sigma_max))
    assert vanilla[~bounded].bound_rate.isna().all(), "no bound on a lower layer's h, on x, or on c"
    assert (frames["jacobians"].groupby("run").size() == 4).all()  # 2 layers x 2 checkpoints


def test_a_diverged_checkpoint_is_skipped(tmp_path, capsys):
    tokens = tmp_path / "valid.npy"
    np.save(tokens, np.random.default_rng(0).integers(0, VOCAB, size=300))
    cell = normalise_cell({**CELL, "arch": "rnn_tanh", "num_layers": 1})
    directory = write_run(tmp_path / "runs", cell, steps=(0,))
    model = build_model(**cell, vocab_size=VOCAB)
    with torch.no_grad():
        model.rnn.weight_hh_l0[0, 0] = float("nan")
    save_checkpoint(directory / "step_00000009.pt", model, {**cell, "vocab_size": VOCAB}, step=9, tokens_seen=90,
                    progress=1.0, epoch=0)
    outputs = {name: tmp_path / "out" / f"{name}.csv" for name in probe.TABLES}
    frames = probe.probe_run(directory, tokens, {**CONFIG, "jacobian_windows": 0}, outputs)
    assert "step_00000009.pt: weights are not finite" in capsys.readouterr().out
    assert set(pd.read_csv(outputs["curves"]).step) == {0} and set(frames["summary"].step) == {0}
    assert set(pd.read_csv(outputs["summary"]).state) == {"h", "x"}


def saturate(model, arch):
    """Gates shut (LSTM: i = f = o = 0 exactly in float64) or every ReLU unit off: each step's
    Jacobian is exactly zero, so the Jacobian product and g(k >= 1) are exactly zero."""
    hidden = model.hidden_size
    with torch.no_grad():
        for layer in range(model.num_layers):
            bias = getattr(model.rnn, f"bias_ih_l{layer}")
            if arch == "lstm":
                bias[:2 * hidden] = -1e4  # input and forget gates
                bias[3 * hidden:] = -1e4  # output gate
            else:
                bias[:] = -1e4


@pytest.mark.parametrize("arch", ["lstm", "rnn_relu", "irnn"])
def test_an_exactly_zero_jacobian_product_is_censored_not_a_crash(arch, tmp_path):
    tokens = tmp_path / "valid.npy"
    np.save(tokens, np.random.default_rng(0).integers(0, VOCAB, size=300))
    cell = normalise_cell({**CELL, "arch": arch})
    directory = write_run(tmp_path / "runs", cell, steps=(0,))
    model = build_model(**cell, vocab_size=VOCAB)
    saturate(model, arch)
    save_checkpoint(directory / "step_00000009.pt", model, {**cell, "vocab_size": VOCAB}, step=9, tokens_seen=90,
                    progress=1.0, epoch=0)
    outputs = {name: tmp_path / "out" / f"{name}.csv" for name in probe.TABLES}
    frames = probe.probe_run(directory, tokens, CONFIG, outputs)
    curves = frames["curves"][frames["curves"].step == 9].set_index(["layer", "state", "lag"]).sort_index()
    windows, jacobian_windows = CONFIG["windows"], CONFIG["jacobian_windows"]
    for layer in range(2):
        product = curves.loc[(layer, "jacobian")]
        assert product.loc[0, "n_censored"] == 0 and product.loc[0, "log10_median"] == 0  # ||I|| = 1
        assert (product.loc[1:, "n_underflow"] == jacobian_windows).all()
        assert product.loc[1:, ["log10_mean", "log10_median"]].isna().all().all()
    top_h = curves.loc[(1, "h")]
    assert top_h.loc[0, "n_censored"] == 0 and (top_h.loc[1:, "n_underflow"] == windows).all()
    summary = frames["summary"][frames["summary"].step == 9].set_index(["layer", "state"])
    assert summary.loc[(1, "h"), "horizon"] == 1 and not summary.loc[(1, "h"), "horizon_censored"]
    assert set(pd.read_csv(outputs["curves"]).step) == {0, 9}
