"""The remedies after LSTM/GRU (issue 12): the orthogonal RNN, IndRNN and LRU.

Models and their constraints, the config keys, the probe against an independent NumPy
forward (finite differences at every lag) and against closed forms, training
(orthogonality kept, divergence, kill -9 resume) and plain-PyTorch checkpoints.
"""

from __future__ import annotations

import copy
import math
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import test_training
import torch
import yaml
from conftest import ROOT, kill_and_resume, run_snakemake
from example_files import load_example
from matplotlib.colors import same_color
from matplotlib.text import Text
from synthetic_tables import make_tables, write_tables
from test_probe import assert_bound_holds, random_windows
from test_training import assert_same_numbers, make_cell, make_training, read_outputs
from torch import nn

from rnngrad import figures, probe, training
from rnngrad.archs.indrnn import recurrent_max as indrnn_max
from rnngrad.archs.lru import linear_recurrence
from rnngrad.config import ConfigError, validate_config
from rnngrad.figures import style
from rnngrad.grid import NOT_APPLICABLE, expand_grid
from rnngrad.model import build_model, load_checkpoint, save_checkpoint, spectral_stats


def linear_loop(lam, inputs, h0):
    """x_t = lam * x_{t-1} + inputs_t one step at a time through autograd: the reference for linear_recurrence."""
    x, outputs = h0, []
    for step in inputs:
        x = lam * x + step
        outputs.append(x)
    return torch.stack(outputs)

REMEDIES = ("orthogonal_rnn", "indrnn", "lru")
VOCAB = 13  # test_probe.random_windows draws tokens below 13
RING = {"lru_r_min": 0.4, "lru_r_max": 0.95}
token_dir = test_training.token_dir  # the tiny corpus fixture

pytestmark = pytest.mark.usefixtures("one_thread")


def remedy(arch, hidden=4, layers=2, seed=0, bptt=10, bound=2.0, **ring):
    return build_model(arch, vocab_size=VOCAB, hidden_size=hidden, num_layers=layers, bptt=bptt, indrnn_bound=bound,
                       seed=seed, **{**RING, **ring})


def remedy_cell(arch, **changes):
    """A training cell (test_training's) for one of the remedies."""
    return make_cell(arch=arch, indrnn_bound=2.0, **RING, **changes)


# ---------------------------------------------------------------- an independent forward


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def numpy_forward(model, windows, burn_in, state_delta=None, recurrent_delta=None):
    """Per-window losses of a remedy language model, in NumPy from the papers' equations.

    Reads the checkpoint's plain state_dict, not the probe's code. `state_delta` =
    (layer, t, delta (W, S)) is added to the state after probed step t (t = 0..K; the LRU's
    complex x_t); `recurrent_delta` = (layer, t, delta) to the recurrent parameter that
    step t uses, and only there (W_hh, u or lambda). Also returns, per layer, the IndRNN's
    pre-activations a_t of the probed steps.
    """
    arch, size = model.arch, model.hidden_size
    state = {key: value.detach().double().numpy() for key, value in model.plain_state_dict().items()}
    x = state["embedding.weight"][windows[:, :-1]].transpose(1, 0, 2)  # (T, W, H)
    pre_activations = []
    for layer in range(model.num_layers):
        get = lambda name: state[f"rnn.{name}_l{layer}"]  # noqa: E731
        if arch == "lru":
            v = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
            v = v * get("norm_weight") + get("norm_bias")
            lam = np.exp(-np.exp(get("nu_log")) + 1j * np.exp(get("theta_log")))
            b = (get("B_re") + 1j * get("B_im")) * np.exp(get("gamma_log"))[:, None]
        h = np.zeros((len(windows), size), dtype=complex if arch == "lru" else float)
        states, pre = [], []
        for t in range(len(x)):
            step = t - burn_in

            def local(value):
                hit = recurrent_delta is not None and recurrent_delta[:2] == (layer, step)
                return value + recurrent_delta[2] if hit else value

            if arch == "orthogonal_rnn":
                h = np.tanh(x[t] @ get("weight_ih").T + get("bias_ih") + h @ local(get("weight_hh")).T
                            + get("bias_hh"))
            elif arch == "indrnn":
                a = x[t] @ get("weight_ih").T + get("bias_ih") + local(get("weight_hh")) * h
                h = np.maximum(a, 0.0)
                pre.append(a)
            else:
                h = local(lam) * h + v[t] @ b.T
            if state_delta is not None and state_delta[:2] == (layer, step):
                h = h + state_delta[2]
            states.append(h)
        states = np.stack(states)
        if arch == "lru":
            y = (states @ (get("C_re") + 1j * get("C_im")).T).real + get("D") * v
            z = 0.5 * y * (1 + np.vectorize(math.erf)(y / math.sqrt(2)))  # GELU
            x = x + (z @ get("out1_weight").T + get("out1_bias")) * sigmoid(z @ get("out2_weight").T + get("out2_bias"))
        else:
            x = states
        pre_activations.append(np.stack(pre[burn_in:]) if pre else None)
    logits = x[-1] @ state["decoder.weight"].T + state["decoder.bias"]
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(windows)), windows[:, -1]], pre_activations


def central_difference_norms(loss_of, shape, complex_valued, eps=1e-6):
    """Per-window norm of dL/d(delta) at delta = 0, delta of `shape` (W, ...) or (...) for all windows.

    loss_of(delta) -> per-window losses. A complex delta counts its real and imaginary
    parts as coordinates.
    """
    parts = (1, 1j) if complex_valued else (1,)
    squares = 0.0
    for index in np.ndindex(*shape):
        for part in parts:
            delta = np.zeros(shape, dtype=complex if complex_valued else float)
            delta[index] = eps * part
            derivative = (loss_of(delta) - loss_of(-delta)) / (2 * eps)
            squares = squares + derivative ** 2
    return np.sqrt(squares)


@pytest.mark.parametrize("arch", REMEDIES)
def test_numpy_forward_reproduces_the_probe_loss(arch):
    model = remedy(arch)
    windows = random_windows(3, 3, 5, seed=2)
    losses, _ = numpy_forward(model, windows, 3)
    np.testing.assert_allclose(losses, probe.probe_model(model, windows, 3)["loss"], rtol=1e-12)


@pytest.mark.parametrize("arch", REMEDIES)
def test_cells_give_the_models_outputs(arch):
    model = remedy(arch)
    tokens = torch.as_tensor(random_windows(3, 4, 7))
    unrolled = probe.unroll(model, tokens, burn_in=4)
    fused = copy.deepcopy(model).double()
    with torch.no_grad():
        output, final = fused.rnn(fused.embedding(tokens[:, :-1].t()), fused.init_hidden(3))
        expected = nn.functional.cross_entropy(fused.decoder(output[-1]), tokens[:, -1], reduction="none")
    assert torch.allclose(unrolled.loss.detach(), expected, rtol=0, atol=1e-13)
    for layer in range(2):
        assert torch.allclose(unrolled.states[layer][-1][0], final[layer], rtol=0, atol=1e-13)


@pytest.mark.parametrize("arch", REMEDIES)
def test_closed_form_step_jacobians_equal_autograds(arch):
    model = remedy(arch, hidden=5)
    unrolled = probe.unroll(model, torch.as_tensor(random_windows(3, 4, 6)), 4)
    flat = probe.flatten_state
    for layer, weights in enumerate(probe.layer_weights(model)):
        prev = torch.cat([flat(unrolled.prev_state[layer])] + [flat(s) for s in unrolled.states[layer][:-1]])
        x_proj = unrolled.x_proj[layer].flatten(0, 1)
        closed = probe.step_jacobians(arch, weights, prev, x_proj)
        reference = probe.step_jacobians_autograd(arch, weights, prev, x_proj)
        size = 10 if arch == "lru" else 5
        assert closed.shape == reference.shape == (len(prev), size, size)
        assert torch.allclose(closed, reference, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("arch", REMEDIES)
def test_finite_differences_agree_with_g_and_contributions_at_every_lag(arch):
    """g(k) = ||dL_T/dh_{T-k}|| and the temporal contributions, lags 0..K, both layers, by
    central differences of the NumPy forward (state: h, or the LRU's complex x)."""
    model = remedy(arch)
    burn_in, max_lag = 3, 5
    windows = random_windows(2, burn_in, max_lag, seed=1)
    result = probe.probe_model(model, windows, burn_in)
    complex_state = arch == "lru"
    recurrent_shape = (4, 4) if arch == "orthogonal_rnn" else (4,)
    for layer in range(2):
        for k in range(max_lag + 1):
            t = max_lag - k
            g = central_difference_norms(
                lambda d: numpy_forward(model, windows, burn_in, state_delta=(layer, t, d))[0],
                (2, 4), complex_state)
            np.testing.assert_allclose(result["h"][layer, :, k], g, rtol=1e-5, atol=1e-9,
                                       err_msg=f"g: layer {layer}, lag {k}")
            # The part of dL/dW_hh (u, lambda) from step T-k: the parameter perturbed at that step only.
            per_window = [
                central_difference_norms(
                    lambda d: numpy_forward(model, windows[w:w + 1], burn_in, recurrent_delta=(layer, t, d))[0],
                    recurrent_shape, complex_state)[0]
                for w in range(2)
            ]
            np.testing.assert_allclose(result["contributions"][layer, :, k], per_window, rtol=1e-5, atol=1e-9,
                                       err_msg=f"contribution: layer {layer}, lag {k}")


# ---------------------------------------------------------------- closed forms


@pytest.mark.parametrize("layers", [1, 2])
def test_lru_state_gradient_decays_exactly_as_lambda_to_the_k_per_unit(layers):
    """The top layer's dL_T/dx_{T-k} = conj(lambda)^k dL_T/dx_T unit by unit: |.| decays as |lambda_i|^k."""
    model = remedy("lru", hidden=6, layers=layers, lru_r_min=0.5, lru_r_max=0.99)
    burn_in, max_lag = 5, 30
    windows = random_windows(4, burn_in, max_lag, seed=4)
    unrolled = probe.unroll(model, torch.as_tensor(windows), burn_in)
    top = layers - 1
    (grad,) = torch.autograd.grad(unrolled.loss.sum(), unrolled.probes["h"][top])  # (K+1, W, N), t-ordered
    weights = probe.layer_weights(model)[top]
    lam = torch.exp(torch.complex(-torch.exp(weights["nu_log"]), torch.exp(weights["theta_log"])))
    lags = torch.arange(max_lag + 1, dtype=torch.float64)
    expected = grad[max_lag][None] * lam.conj()[None, None] ** lags[:, None, None]  # (k, W, N)
    measured = grad.flip(0)
    assert torch.allclose(measured, expected, rtol=1e-10, atol=1e-300)
    assert torch.allclose(measured.abs(), grad[max_lag].abs() * lam.abs() ** lags[:, None, None], rtol=1e-10)
    # The probe's curve, Jacobian products and per-step norms say the same.
    result = probe.probe_model(model, windows, burn_in, jacobian_windows=2)
    np.testing.assert_allclose(result["h"][top], expected.abs().norm(dim=-1).t().numpy(), rtol=1e-10)
    radius = lam.abs().max().item()
    np.testing.assert_allclose(result["jacobian"][top], np.tile(lags.numpy() * math.log10(radius), (2, 1)),
                               atol=1e-9)
    np.testing.assert_allclose(result["step_jacobian"][top], radius, rtol=1e-12)
    assert spectral_stats(model.recurrent_weights()[top], "lru")["sigma_max"] == pytest.approx(radius, rel=1e-6)


@pytest.mark.parametrize("layers", [1, 2])
def test_indrnn_unit_gradient_is_u_to_the_k_times_its_relu_gates(layers):
    """Top layer: dL_T/dh_{T-k,i} = dL_T/dh_{T,i} prod_{j<k} u_i 1[a_{T-j,i} > 0], gates from the NumPy forward."""
    bptt, bound = 5, 2.0
    model = remedy("indrnn", hidden=6, layers=layers, bptt=bptt, bound=bound)
    burn_in, max_lag = 4, 12
    windows = random_windows(4, burn_in, max_lag, seed=5)
    unrolled = probe.unroll(model, torch.as_tensor(windows), burn_in)
    top = layers - 1
    (grad,) = torch.autograd.grad(unrolled.loss.sum(), unrolled.probes["h"][top])
    grad = grad.numpy()
    _, pre = numpy_forward(model, windows, burn_in)
    u = getattr(model.rnn, f"weight_hh_l{top}").detach().double().numpy()
    factor = np.ones_like(grad[max_lag])
    for k in range(max_lag + 1):
        np.testing.assert_allclose(grad[max_lag - k], grad[max_lag] * factor, rtol=1e-12, atol=1e-300,
                                   err_msg=f"lag {k}")
        factor = factor * u * (pre[top][max_lag - k] > 0)
    # The constraint: |u|^bptt <= bound, so no unit's gradient grows past `bound` over bptt steps.
    assert np.all(np.abs(u) <= indrnn_max(bound, bptt) * (1 + 1e-7))
    assert np.all(np.abs(grad[max_lag - bptt]) <= bound * np.abs(grad[max_lag]) * (1 + 1e-6))
    assert_bound_holds(model, windows, burn_in)  # Pascanu's bound with lambda_1 = max |u_i|, gamma = 1


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("trained", [False, True])
def test_orthogonal_rnn_has_lambda_1_and_no_growth_window_by_window(layers, trained):
    """lambda_1 = 1 and tanh' <= 1: Pascanu's bound g(k) <= g(0) allows no growth, at init and after training."""
    model = remedy("orthogonal_rnn", hidden=8, layers=layers)
    if trained:  # large steps, so W_hh moves far from its initial value
        optimizer = torch.optim.SGD(model.parameters(), lr=2.0)
        initial = model.rnn.weight_hh_l0.detach().clone()
        tokens = torch.as_tensor(random_windows(8, 0, 20, seed=6)).t()
        for _ in range(20):
            logits, _ = model(tokens[:-1], model.init_hidden(8))
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), tokens[1:].flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        assert (model.rnn.weight_hh_l0.detach() - initial).abs().max() > 0.05
    for weight in model.recurrent_weights():
        assert spectral_stats(weight, "orthogonal_rnn")["sigma_max"] == pytest.approx(1.0, abs=1e-6)
    windows = random_windows(6, 5, 25)
    g, _ = assert_bound_holds(model, windows, 5)
    assert np.all(g[:, 1:] <= g[:, :1] * (1 + 1e-5))


# ---------------------------------------------------------------- models and constraints


@pytest.mark.parametrize("steps", [1, 2, 7, 35, 100, 1000])
@pytest.mark.parametrize("dtype", [torch.complex128, torch.float64])
def test_linear_recurrence_and_its_closed_form_backward_equal_autograd_through_the_loop(steps, dtype):
    generator = torch.Generator().manual_seed(steps)
    draw = lambda *shape: torch.randn(*shape, generator=generator, dtype=dtype)  # noqa: E731
    lam = draw(5) * 0.7  # some |lam| > 1: growth too, over short sequences
    if steps > 35:  # long sequences: |lam| < 1 up to 0.99, as the LRU's
        lam = 0.99 * lam / lam.abs().max()
    lam, inputs, h0 = lam.requires_grad_(True), draw(steps, 3, 5).requires_grad_(True), draw(3, 5)
    h0.requires_grad_(True)
    if steps <= 100:
        unbatched = (lam, inputs[:, 0].detach().requires_grad_(True), h0[0].detach().requires_grad_(True))
        assert torch.autograd.gradcheck(linear_recurrence, unbatched)
    fused, looped = linear_recurrence(lam, inputs, h0), linear_loop(lam, inputs, h0)
    assert torch.allclose(fused, looped, rtol=1e-12, atol=1e-14)
    weights = draw(steps, 3, 5)
    grads = [torch.autograd.grad((out * weights).real.sum(), (lam, inputs, h0)) for out in (fused, looped)]
    for ours, reference in zip(*grads):
        assert torch.allclose(ours, reference, rtol=1e-11, atol=1e-13)
    if steps <= 35:
        assert torch.autograd.gradcheck(linear_recurrence, (lam.detach().requires_grad_(True),
                                                            inputs.detach().requires_grad_(True),
                                                            h0.detach().requires_grad_(True)))


def test_lru_starts_on_the_ring_with_gamma_normalisation():
    model = build_model("lru", vocab_size=VOCAB, hidden_size=256, num_layers=2, lru_r_min=0.6, lru_r_max=0.9)
    for layer in range(2):
        lam = model.rnn.eigenvalues(layer).detach().to(torch.complex128)
        modulus, phase = lam.abs(), torch.exp(getattr(model.rnn, f"theta_log_l{layer}").detach().double())
        assert modulus.min() >= 0.6 - 1e-6 and modulus.max() <= 0.9 + 1e-6
        # Uniform on the ring by area: |lambda|^2 is uniform in [r_min^2, r_max^2].
        assert abs(torch.mean(modulus ** 2).item() - (0.36 + 0.81) / 2) < 0.03
        assert phase.min() >= 0 and phase.max() < 2 * math.pi and phase.max() > 5.5
        gamma = torch.exp(getattr(model.rnn, f"gamma_log_l{layer}").detach().double())
        assert torch.allclose(gamma ** 2 + modulus ** 2, torch.ones(256, dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("bound", [0.5, 2.0])
def test_indrnn_init_and_projection_keep_u_within_its_bound(bound):
    model = build_model("indrnn", vocab_size=VOCAB, hidden_size=200, num_layers=2, indrnn_bound=bound, bptt=10)
    limit = bound ** (1 / 10)
    assert model.rnn.recurrent_max == pytest.approx(limit)
    lower, top = model.rnn.weight_hh_l0.detach(), model.rnn.weight_hh_l1.detach()
    assert lower.min() >= 0 and lower.max() <= limit and lower.max() > 0.9 * limit
    # The top layer starts with long memories when the bound allows growth (Li et al.'s code).
    assert top.min() >= (1 / limit if bound > 1 else 0) - 1e-7 and top.max() <= limit
    assert not model.rnn.bias_ih_l0.any()
    with torch.no_grad():  # an optimizer step that leaves the feasible set
        model.rnn.weight_hh_l0[:3] = torch.tensor([5.0, -5.0, 0.5 * limit])
    saved = model.state_dict()["rnn.weight_hh_l0"]
    assert saved[:3].tolist() == pytest.approx([limit, -limit, 0.5 * limit])
    assert model.rnn.weight_hh_l0[0] == 5.0  # the state_dict holds the projected u; the parameter moves at forward
    tokens = torch.as_tensor(random_windows(2, 0, 5)).t()
    model(tokens, model.init_hidden(2))
    assert torch.equal(model.rnn.weight_hh_l0.detach(), saved)
    assert spectral_stats(model.recurrent_weights()[0], "indrnn")["sigma_max"] == pytest.approx(limit)


@pytest.mark.parametrize("inputs", ["tokens", "real"])  # a language model's, or the adding problem's (nn.Linear)
@pytest.mark.parametrize("arch", REMEDIES)
def test_checkpoint_round_trip(arch, inputs, tmp_path):
    shape = {"input_features": 2, "output_size": 1} if inputs == "real" else {}
    model = build_model(arch, vocab_size=VOCAB, hidden_size=4, num_layers=2, bptt=10, indrnn_bound=2.0, **RING,
                        **shape)
    with torch.no_grad():  # every tensor away from its init, so a tensor left out cannot go unnoticed
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    hparams = {"arch": arch, "vocab_size": VOCAB, "hidden_size": 4, "num_layers": 2, "indrnn_bound": 2.0, "bptt": 10,
               **shape}
    save_checkpoint(tmp_path / "c.pt", model, hparams, step=5, tokens_seen=100)
    loaded, _ = load_checkpoint(tmp_path / "c.pt")
    assert set(loaded.plain_state_dict()) == set(model.plain_state_dict())
    x = torch.rand(6, 3, 2) if inputs == "real" else torch.as_tensor(random_windows(3, 0, 6)).t()
    with torch.no_grad():
        assert torch.equal(model(x, model.init_hidden(3))[0], loaded(x, loaded.init_hidden(3))[0])
    if arch == "indrnn":
        assert loaded.rnn.recurrent_max == model.rnn.recurrent_max


@pytest.mark.parametrize("inputs", ["tokens", "real"])
def test_orthogonal_rnn_checkpoint_loads_into_a_plain_nn_rnn(inputs, tmp_path):
    real = inputs == "real"  # the adding problem's input layer and head
    model = build_model("orthogonal_rnn", vocab_size=VOCAB, hidden_size=8, num_layers=2,
                        **({"input_features": 2, "output_size": 1} if real else {}))
    save_checkpoint(tmp_path / "c.pt", model, {"arch": "orthogonal_rnn"}, step=0, tokens_seen=0)
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    net = nn.ModuleDict({"embedding": nn.Linear(2, 8) if real else nn.Embedding(VOCAB, 8), "rnn": nn.RNN(8, 8, 2),
                         "decoder": nn.Linear(8, 1 if real else VOCAB)})
    net.load_state_dict(ckpt["state_dict"])  # strict: exactly nn.RNN's names
    x = torch.rand(6, 3, 2) if real else torch.as_tensor(random_windows(3, 0, 6)).t()
    h0 = torch.randn(2, 3, 8) * 0.5
    with torch.no_grad():
        output, final = net["rnn"](net["embedding"](x), h0)
        logits, ours = model(x, h0)
    assert torch.equal(logits, net["decoder"](output)) and torch.equal(final, ours)


# ---------------------------------------------------------------- config


def config_with(**grid):
    return validate_config({"grid": {"arch": ["lru"], **grid}})


@pytest.mark.parametrize("grid,key", [
    ({"lru_r_min": [0.9], "lru_r_max": [0.5]}, "grid.lru_r_min"),
    ({"lru_r_min": [0.5], "lru_r_max": [0.5]}, "grid.lru_r_min"),
    ({"lru_r_min": [0.1, 0.95], "lru_r_max": [0.9]}, "grid.lru_r_min"),
    ({"lru_r_max": [1.0]}, "grid.lru_r_max.0"),
    ({"lru_r_min": [-0.1]}, "grid.lru_r_min.0"),
    ({"arch": ["indrnn"], "indrnn_bound": [-1.0]}, "grid.indrnn_bound.0"),
    ({"arch": ["indrnn"], "indrnn_bound": [2.0, -0.5]}, "grid.indrnn_bound.1"),
])
def test_senseless_remedy_hyperparameters_are_rejected_naming_the_key(grid, key):
    with pytest.raises(ConfigError, match=rf"config key {key}\b"):
        config_with(**grid)


def test_ring_pairs_can_be_excluded():
    config = validate_config({"grid": {"arch": ["lru"], "lru_r_min": [0.1, 0.95], "lru_r_max": [0.9, 0.99]},
                              "exclude": [{"lru_r_min": 0.95, "lru_r_max": 0.9}]})
    assert len(expand_grid(config["grid"], config["exclude"])) == 3


def test_hyperparameters_an_arch_ignores_collapse_to_na():
    config = validate_config({"grid": {
        "arch": ["lstm", "orthogonal_rnn", "indrnn", "lru"], "init_scale": [0.5, 1.0], "forget_bias": [0.0, 1.0],
        "indrnn_bound": [1.5, 2.0], "lru_r_min": [0.0, 0.5], "lru_r_max": [0.9, 0.99]}})
    cells = expand_grid(config["grid"])
    by_arch = {arch: [c for c in cells if c["arch"] == arch] for arch in ("lstm", "orthogonal_rnn", "indrnn", "lru")}
    assert {arch: len(group) for arch, group in by_arch.items()} == {
        "lstm": 4, "orthogonal_rnn": 1, "indrnn": 2, "lru": 4}
    for arch, keys in {"lstm": ("indrnn_bound", "lru_r_min", "lru_r_max"),
                       "orthogonal_rnn": ("init_scale", "forget_bias", "indrnn_bound", "lru_r_min", "lru_r_max"),
                       "indrnn": ("init", "init_scale", "forget_bias", "lru_r_min", "lru_r_max"),
                       "lru": ("init", "init_scale", "forget_bias", "indrnn_bound")}.items():
        assert all(cell[key] == NOT_APPLICABLE for cell in by_arch[arch] for key in keys), arch
    assert by_arch["orthogonal_rnn"][0]["init"] == "orthogonal"


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("arch", REMEDIES)
def test_training_keeps_the_constraints_and_the_probe_reads_every_checkpoint(arch, token_dir, tmp_path):
    cell = remedy_cell(arch)  # bptt 10
    summary = training.train_run(cell, make_training(), token_dir, tmp_path / "run")
    assert summary["status"] == "ok" and summary["valid_ppl"] < test_training.VOCAB
    paths = sorted((tmp_path / "run" / "checkpoints").iterdir())
    first, _ = load_checkpoint(paths[0])
    last, _ = load_checkpoint(paths[-1])
    if arch == "orthogonal_rnn":
        for layer in range(2):
            w = getattr(last.rnn, f"weight_hh_l{layer}").detach()  # float32, as trained
            assert torch.linalg.matrix_norm(w.T @ w - torch.eye(12)) < 1e-5
            assert (w - getattr(first.rnn, f"weight_hh_l{layer}")).abs().max() > 0.05  # it did train
    if arch == "indrnn":
        for layer in range(2):
            u = torch.load(paths[-1], weights_only=True)["state_dict"][f"rnn.weight_hh_l{layer}"]
            assert u.abs().max() <= 2.0 ** (1 / 10)
    settings = {"windows": 3, "burn_in": 4, "max_lag": 10, "jacobian_windows": 2, "seed": 0, "fit_lags": [1, 8],
                "horizon_threshold": 1e-3}
    outputs = {name: tmp_path / f"{name}.csv" for name in probe.TABLES}
    frames = probe.probe_run(tmp_path / "run" / "checkpoints", token_dir / "valid.npy", settings, outputs)
    summary_rows = frames["summary"]
    assert len(summary_rows[summary_rows.state == "h"]) == len(paths) * 2
    rates = summary_rows[(summary_rows.state == "h") & (summary_rows.layer == 1)]["bound_rate"]  # the top layer
    if arch == "orthogonal_rnn":  # log10(gamma lambda_1) = log10 1
        assert np.allclose(rates, 0, atol=1e-6)
    else:  # max |u| or max |lambda|
        assert np.all(np.isfinite(rates))
    assert np.isfinite(frames["curves"]["log10_median"]).any()


@pytest.mark.parametrize("arch", REMEDIES)
def test_divergence_is_recorded_and_the_probe_skips_non_finite_weights(arch, token_dir, tmp_path, capsys):
    summary = training.train_run(remedy_cell(arch, lr=1e20, clip=None), make_training(), token_dir, tmp_path / "run")
    saved, metrics, _ = read_outputs(tmp_path / "run")
    assert summary["status"] == saved["status"] == "diverged"
    step = summary["diverged_step"]
    assert 1 <= step < summary["planned_steps"] and metrics.iloc[-1]["step"] == step
    last = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    model, checkpoint = load_checkpoint(last)
    assert checkpoint["step"] == step - 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    settings = {"windows": 2, "burn_in": 2, "max_lag": 5, "jacobian_windows": 1, "seed": 0, "fit_lags": [1, 4],
                "horizon_threshold": 1e-3}
    outputs = {name: tmp_path / f"{name}.csv" for name in probe.TABLES}
    frames = probe.probe_run(tmp_path / "run" / "checkpoints", token_dir / "valid.npy", settings, outputs)
    # Finite parameters can still run non-finite: the orthogonal RNN's W_hh = base expm(A)
    # and the LRU's lambda = exp(-exp(nu_log) + i exp(theta_log)) overflow. Those are skipped, and said so.
    saved = [load_checkpoint(path) for path in sorted((tmp_path / "run" / "checkpoints").iterdir())]
    runs_finite = [all(torch.isfinite(w).all() for w in [*m.plain_state_dict().values(), *m.recurrent_weights()])
                   for m, _ in saved]
    assert set(frames["summary"]["step"]) == {c["step"] for (_, c), ok in zip(saved, runs_finite) if ok}
    assert runs_finite[0] and (all(runs_finite) or "not finite (diverged); not probed" in capsys.readouterr().out)
    if arch == "indrnn":
        assert all(runs_finite)


@pytest.mark.parametrize("arch,optimizer", [("orthogonal_rnn", "sgd"), ("indrnn", "sgd"), ("lru", "adam")])
def test_sigkill_and_resume_equals_an_uninterrupted_run(token_dir, tmp_path, arch, optimizer):
    """As test_training's: the parametrization's own tensors, the projected u and the complex
    LRU state are restored so that the resumed run is bitwise the uninterrupted one."""
    cell = remedy_cell(arch, optimizer=optimizer, lr=0.01 if optimizer == "adam" else 1.0, epochs=3)
    settings = make_training(max_tokens=None, checkpoints=[0.0, 0.3, 0.6, 1.0])
    planned = 3 * len(training.batch_starts(4000 // 4, 10))
    _, run_dir, resumed_from = kill_and_resume(cell, settings, token_dir, tmp_path, planned // 4)
    assert planned // 4 <= resumed_from < planned
    assert_same_numbers(read_outputs(tmp_path / "reference"), read_outputs(run_dir))
    for path in sorted((tmp_path / "reference" / "checkpoints").iterdir()):
        ours = torch.load(run_dir / "checkpoints" / path.name, weights_only=True)["state_dict"]
        theirs = torch.load(path, weights_only=True)["state_dict"]
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[key], theirs[key]) for key in theirs)


# ---------------------------------------------------------------- plain-PyTorch checkpoints (examples/)


@pytest.mark.parametrize("arch", ["indrnn", "lru"])
def test_the_plain_pytorch_forward_example_reproduces_the_model_from_a_checkpoint(arch, tmp_path):
    forward = getattr(load_example("indrnn_lru_forward"), f"{arch}_lm")
    model = remedy(arch, hidden=8, bound=1.5)
    if arch == "indrnn":  # leave the feasible set as an optimizer step can: the checkpoint holds the projected u
        with torch.no_grad():
            model.rnn.weight_hh_l1[0] = 3.0
    hparams = {"arch": arch, "vocab_size": VOCAB, "hidden_size": 8, "num_layers": 2, "indrnn_bound": 1.5, "bptt": 10}
    save_checkpoint(tmp_path / "c.pt", model, hparams, step=0, tokens_seen=0)
    state_dict = torch.load(tmp_path / "c.pt", weights_only=True)["state_dict"]
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, VOCAB, (15, 3), generator=generator)
    hidden = torch.rand(2, 3, 8, generator=generator)
    if arch == "lru":
        hidden = torch.complex(hidden, torch.rand(2, 3, 8, generator=generator)) - (0.5 + 0.5j)
    with torch.no_grad():
        logits, final = model(tokens, hidden)
        plain_logits, plain_final = forward(state_dict, tokens, hidden)
    # A loop instead of linear_recurrence's fused steps, one complex matmul instead of real ones: equal to rounding.
    torch.testing.assert_close(plain_logits, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain_final, final, rtol=1e-5, atol=1e-5)
    assert logits.std() > 0.1  # not a vacuous comparison


# ---------------------------------------------------------------- figures


# Figures of one arch family by design: the LSTM's cell state, the vanilla RNNs' init scale.
SINGLE_FAMILY_FIGURES = {"lstm_cell_state", "init_scale_effect"}


def assert_every_task_figure_names_the_remedies(tables, remedies=REMEDIES) -> None:
    """Every task figure of a finished run (`tables`: its tables directory) exists, and, redrawn from
    its tables, names each remedy in its colour."""
    for figure_name in figures.figures_for("task"):
        spec = figures.FIGURES[figure_name]
        assert (tables.parent / "figures" / f"{figure_name}.png").stat().st_size > 5_000
        frames = {table: pd.read_csv(tables / f"{table}.csv", low_memory=False) for table in spec.tables}
        with plt.rc_context(style.RC):
            fig = spec.function(**frames)
        assert_names_the_remedies_in_their_colours(fig, figure_name, remedies)
        plt.close(fig)


def assert_names_the_remedies_in_their_colours(fig, name: str, remedies=REMEDIES) -> None:
    """Each remedy is named in `fig` (a legend entry, panel title or tick label), and a legend
    entry that names it has its colour."""
    texts = {t.get_text() for t in fig.findobj(Text)}
    for arch in remedies:
        assert any(re.match(re.escape(style.ARCH_LABELS[arch]) + r"(\W|$)", t) for t in texts), (name, arch)
    for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        for handle, text in zip(legend.legend_handles, legend.texts):
            arch = next((a for a in remedies if re.match(re.escape(style.ARCH_LABELS[a]) + r"(\W|$)",
                                                         text.get_text())), None)
            if arch:  # a line's colour, or a scatter's face
                colour = handle.get_color() if hasattr(handle, "get_color") else handle.get_facecolor()[0]
                assert same_color(colour, style.ARCH_COLOURS[arch]), (name, arch)


def test_every_figure_comparing_archs_shows_the_remedies_in_their_colours(tmp_path):
    paths = write_tables(make_tables(steps=40, max_lag=20), tmp_path)
    frames = {name: pd.read_csv(path, low_memory=False) for name, path in paths.items()}
    assert set(frames["runs"]["arch"]) >= set(REMEDIES)
    assert len(set(style.ARCH_COLOURS.values())) == len(style.ARCH_COLOURS)
    for name in figures.figures_for("corpus"):  # synthetic language-model tables
        spec = figures.FIGURES[name]
        if name in SINGLE_FAMILY_FIGURES:
            continue
        with plt.rc_context(style.RC):
            fig = spec.function(**{table: frames[table] for table in spec.tables})
        assert_names_the_remedies_in_their_colours(fig, name)
        plt.close(fig)


# ---------------------------------------------------------------- the long-range tasks


def test_remedies_config_is_what_the_issue_asks():
    """The seed's archs and every remedy, on both tasks, with T up to where the LSTM stays at the copy baseline."""
    config = validate_config(yaml.safe_load((ROOT / "config" / "remedies.yaml").read_text()))
    assert {"rnn_tanh", "irnn", "lstm", "gru", *REMEDIES} <= set(config["grid"]["arch"])
    cells = expand_grid(config["grid"], config["exclude"], config["task"])
    assert {(cell["task"], cell["arch"]) for cell in cells} == {
        (task, arch) for task in ("adding", "copy") for arch in config["grid"]["arch"]}
    assert max(cell["T"] for cell in cells if cell["task"] == "copy") >= 200
    assert len(config["grid"]["seed"]) == 2


@pytest.mark.slow
def test_the_tiny_remedies_pipeline_trains_probes_and_draws_every_remedy(tmp_path):
    """config/test_remedies.yaml end to end: each remedy trained and probed on both tasks, in
    the long_range table and named, in its colour, in every long-range figure."""
    name = ROOT / "config" / "test_remedies.yaml"
    run_snakemake(tmp_path, "--configfile", str(name))
    config = validate_config(yaml.safe_load(name.read_text()))
    tables = tmp_path / config["results_dir"] / "tables"
    runs = pd.read_csv(tables / "runs.csv")
    cells = expand_grid(config["grid"], config["exclude"], config["task"])
    assert len(runs) == len(cells) and (runs["status"] == "ok").all()
    summary = pd.read_csv(tables / "gradient_summary.csv")
    for arch in REMEDIES:
        for task in ("adding", "copy"):
            probed = summary[(summary["arch"] == arch) & (summary["task"] == task)]
            assert len(probed) and np.isfinite(probed["dep_lag_median"]).all(), (arch, task)
    assert set(pd.read_csv(tables / "long_range.csv")["arch"]) == set(config["grid"]["arch"])
    assert_every_task_figure_names_the_remedies(tables)
    report = tmp_path / "report.html"
    run_snakemake(tmp_path, "--report", str(report), "--configfile", str(name))
    html = report.read_text()
    assert "Long-range tasks" in html and "orthogonal RNN, IndRNN and LRU" in html
    assert all(f"{figure_name}.png" in html for figure_name in figures.figures_for("task"))
