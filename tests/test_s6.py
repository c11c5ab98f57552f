"""The S6 (rnngrad.archs.s6) against independent computations: the training scan against a plain
step loop, the zero-order hold against the matrix exponential and the integrated ODE, the probe's
Jacobian products and g(k) against the closed form of a diagonal linear recurrence (a NumPy
forward and a hand-written loss gradient), and selectivity (Delta -> 0 keeps the state, a large
Delta resets it)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rnngrad import archs, probe
from rnngrad.archs.s6 import dt_rank, selective_scan, selective_scan_loop
from rnngrad.model import build_model

VOCAB, HIDDEN, STATE, BURN_IN, MAX_LAG = 11, 5, 3, 4, 6

pytestmark = pytest.mark.usefixtures("one_thread")


def s6_model(layers=1, seed=0, state_size=STATE):
    return build_model("s6", VOCAB, HIDDEN, layers, seed=seed, s6_state_size=state_size)


def windows(n=3, seed=0):
    return np.random.default_rng(seed).integers(0, VOCAB, size=(n, BURN_IN + MAX_LAG + 2))


def scan_inputs(steps, seed, dtype=torch.float64):
    """Delta, A, B, C, x, h0 of a batch (3, 2) of H = 4 channels with N = 5 (Delta as softplus makes it)."""
    generator = torch.Generator().manual_seed(seed)
    batch, size, state_size = (3, 2), 4, 5

    def normal(*shape):
        return torch.randn(shape, generator=generator, dtype=dtype)

    delta = torch.nn.functional.softplus(normal(steps, *batch, size) - 3)
    a = -torch.exp(normal(size, state_size))
    return delta, a, normal(steps, *batch, state_size), normal(steps, *batch, state_size), \
        normal(steps, *batch, size), normal(*batch, size, state_size)


@pytest.mark.parametrize("steps", [1, 2, 37, 500])
def test_the_scan_equals_the_step_loop_in_values_and_gradients(steps):
    """The fused scan against autograd through the plain loop, float64: outputs, final state, every input's
    gradient, from a loss that reads both outputs."""
    leaves = [tensor.requires_grad_(True) for tensor in scan_inputs(steps, seed=steps)]
    generator = torch.Generator().manual_seed(1)
    weights = (torch.randn(steps, 3, 2, 4, generator=generator, dtype=torch.float64),
               torch.randn(3, 2, 4, 5, generator=generator, dtype=torch.float64))
    results = []
    for scan in (selective_scan, selective_scan_loop):
        y, final = scan(*leaves)
        loss = (y * weights[0]).sum() + (final * weights[1]).sum()
        results.append(((y.detach(), final.detach()), torch.autograd.grad(loss, leaves)))
    (ours, our_grads), (loop, loop_grads) = results
    for mine, theirs in zip(ours, loop):
        torch.testing.assert_close(mine, theirs, rtol=1e-13, atol=1e-13)
    for name, mine, theirs in zip(("delta", "a", "b", "c", "x", "h0"), our_grads, loop_grads):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12, msg=name)


def test_the_scan_is_stable_over_1000_steps_in_float32():
    inputs = scan_inputs(1000, seed=7)
    expected, _ = selective_scan_loop(*inputs)
    ours, _ = selective_scan(*(tensor.float() for tensor in inputs))
    assert torch.isfinite(ours).all()
    # a contraction: float32's rounding does not accumulate over the steps
    assert (ours.double() - expected).abs().max() < 1e-5 * expected.abs().max()


def test_the_training_module_with_the_scan_equals_it_with_the_loop():
    """The fused module with the scan against the same module with the plain loop (float64), gradients too."""
    model = s6_model(layers=2, seed=3).double()
    inputs = model.embedding(torch.as_tensor(windows(4, seed=2)).t())
    hidden = model.init_hidden(4)
    assert hidden.shape == (2, 4, HIDDEN * STATE)
    results = []
    for scan in (selective_scan, selective_scan_loop):
        model.rnn.scan = scan
        output, final = model.rnn(inputs, hidden)
        grads = torch.autograd.grad(output.square().sum() + final.sum(), list(model.rnn.parameters()))
        results.append((output.detach(), final.detach(), *grads))
    for ours, loop in zip(*results):
        torch.testing.assert_close(ours, loop, rtol=1e-11, atol=1e-12)


# ---------------------------------------------------------------- the discretisation


def step_of(spec, weights, state, delta, b, x):
    """One step of the arch's update from chosen Delta (H), B (N), x (H), state (H, N)."""
    x_proj = torch.cat([delta, b, x])[None]
    return spec.step(weights, x_proj, (state.flatten()[None],))[0][0].view(state.shape)


def test_zero_order_hold_is_the_exact_solution_of_the_continuous_ode_over_one_step():
    """s' = A s + B x (x held over the step) from s_{t-1} for a time Delta: Van Loan's augmented matrix
    exponential, and a Runge-Kutta integration, per channel."""
    spec, model = archs.get("s6"), s6_model(seed=1)
    weights = probe.layer_weights(model)[0]
    generator = torch.Generator().manual_seed(0)
    a = -torch.exp(weights["A_log"]) * (1 + torch.rand(HIDDEN, STATE, generator=generator, dtype=torch.float64))
    weights["A_log"] = torch.log(-a)  # distinct rates in every channel
    delta = torch.tensor([0.001, 0.05, 0.3, 1.0, 2.5], dtype=torch.float64)
    b = torch.randn(STATE, generator=generator, dtype=torch.float64)
    x = torch.randn(HIDDEN, generator=generator, dtype=torch.float64)
    state = torch.randn(HIDDEN, STATE, generator=generator, dtype=torch.float64)
    new = step_of(spec, weights, state, delta, b, x)
    for h in range(HIDDEN):
        augmented = torch.zeros(STATE + 1, STATE + 1, dtype=torch.float64)
        augmented[:STATE, :STATE] = torch.diag(a[h])
        augmented[:STATE, STATE] = b * x[h]
        solution = torch.linalg.matrix_exp(delta[h] * augmented) @ torch.cat([state[h], torch.ones(1,
                                                                                                   dtype=torch.float64)])
        torch.testing.assert_close(new[h], solution[:STATE], rtol=1e-12, atol=1e-13)
        ode = state[h].clone()
        substeps = 2000
        dt = delta[h] / substeps
        slope = lambda s: a[h] * s + b * x[h]  # noqa: E731
        for _ in range(substeps):
            k1 = slope(ode)
            k2 = slope(ode + dt / 2 * k1)
            k3 = slope(ode + dt / 2 * k2)
            k4 = slope(ode + dt * k3)
            ode = ode + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        torch.testing.assert_close(new[h], ode, rtol=1e-10, atol=1e-11)
    # the reference code's Euler input term Delta B x is not what this computes at a large step
    euler = torch.exp(delta[-1] * a[-1]) * state[-1] + delta[-1] * b * x[-1]
    assert (new[-1] - euler).abs().max() > 0.1 * euler.abs().max()


# ---------------------------------------------------------------- selectivity


def test_a_vanishing_step_keeps_the_state_and_ignores_the_input_a_large_one_resets_it():
    spec, model = archs.get("s6"), s6_model(seed=2)
    weights = probe.layer_weights(model)[0]
    generator = torch.Generator().manual_seed(3)
    b, x = torch.randn(STATE, generator=generator, dtype=torch.float64), torch.randn(HIDDEN, generator=generator,
                                                                                       dtype=torch.float64)
    first, second = (torch.randn(HIDDEN, STATE, generator=generator, dtype=torch.float64) for _ in range(2))
    a = -torch.exp(weights["A_log"])
    small = torch.full((HIDDEN,), 1e-12, dtype=torch.float64)
    for state in (first, second):
        kept = step_of(spec, weights, state, small, b, x)
        assert (kept - state).abs().max() < 1e-11 * (1 + b.abs().max() * x.abs().max())
        reset = step_of(spec, weights, state, torch.full((HIDDEN,), 60.0, dtype=torch.float64), b, x)
        # exp(60 A) underflows to 0: the previous state is forgotten, the state is the input's fixed point -B x / A
        torch.testing.assert_close(reset, -b * x[:, None] / a, rtol=1e-13, atol=0)


def test_the_step_size_bias_selects_memory_in_the_training_module():
    """A large negative dt bias (Delta ~ 0): the state stays h0 through every step whatever the input; a large
    positive one (Delta large): the final state does not depend on h0."""
    model = s6_model(seed=4)
    inputs = model.embedding(torch.as_tensor(windows(2, seed=5)).t())
    h0 = torch.randn(1, 2, HIDDEN * STATE, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        model.rnn.dt_proj_bias_l0.fill_(-80.0)
        _, final = model.rnn(inputs, h0)
        assert torch.equal(final, h0)
        model.rnn.dt_proj_bias_l0.fill_(80.0)
        first, second = model.rnn(inputs, h0)[1], model.rnn(inputs, -3 * h0)[1]
        assert torch.equal(first, second) and not torch.equal(first, h0)


# ---------------------------------------------------------------- the probe against the closed form


def numpy_s6(model, tokens: np.ndarray):
    """An independent NumPy forward of a one-layer S6 language model: per step the transition
    Abar_t = exp(Delta_t A) (T, W, H, N) and the quantities the last step's loss gradient needs."""
    get = {name.removesuffix("_l0"): value.detach().double().numpy() for name, value in model.rnn.named_parameters()}
    u = model.embedding.weight.detach().double().numpy()[tokens[:, :-1]].transpose(1, 0, 2)  # (T, W, H)
    mean, var = u.mean(-1, keepdims=True), u.var(-1, keepdims=True)
    v = (u - mean) / np.sqrt(var + 1e-5) * get["norm_weight"] + get["norm_bias"]
    x, z = np.split(v @ get["in_proj_weight"].T, 2, axis=-1)
    silu = lambda a: a / (1 + np.exp(-a))  # noqa: E731
    x = silu(x)
    rank = dt_rank(HIDDEN)
    projected = x @ get["x_proj_weight"].T
    low, b, c = projected[..., :rank], projected[..., rank:rank + STATE], projected[..., rank + STATE:]
    delta = np.log1p(np.exp(low @ get["dt_proj_weight"].T + get["dt_proj_bias"]))
    a = -np.exp(get["A_log"])
    decay = np.exp(delta[..., None] * a)
    drive = np.expm1(delta[..., None] * a) / a * b[..., None, :] * x[..., None]
    s = np.zeros(decay.shape[1:])
    for t in range(len(decay)):
        s = decay[t] * s + drive[t]
    y = (s * c[-1][:, None, :]).sum(-1) + get["D"] * x[-1]
    out = u[-1] + (y * silu(z[-1])) @ get["out_proj_weight"].T
    logits = out @ model.decoder.weight.detach().double().numpy().T + model.decoder.bias.detach().double().numpy()
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p[np.arange(len(tokens)), tokens[:, -1]] -= 1  # dL/dlogits of the cross-entropy
    d_out = p @ model.decoder.weight.detach().double().numpy()
    d_y = (d_out @ get["out_proj_weight"]) * silu(z[-1])
    d_state = d_y[:, :, None] * c[-1][:, None, :]  # dL/ds_T (W, H, N): y_h = sum_n C_n s_hn
    return decay, d_state


def test_probe_gradients_and_jacobian_products_are_the_closed_form_of_a_diagonal_recurrence():
    """One layer: d s_T / d s_{T-k} = prod_{j<k} exp(Delta_{T-j} A) elementwise, so
    g(k) = ||prod_{j<k} Abar_{T-j} * dL/ds_T|| and the product's norm is max over units; both at most 1 x g(0)."""
    model, tokens = s6_model(seed=5), windows(3, seed=8)
    result = probe.probe_model(model, tokens, BURN_IN, jacobian_windows=3)
    decay, d_state = numpy_s6(model, tokens)
    product = np.ones_like(d_state)
    for k in range(MAX_LAG + 1):
        g = np.linalg.norm((product * d_state).reshape(len(tokens), -1), axis=1)
        np.testing.assert_allclose(result["h"][0, :, k], g, rtol=1e-10)
        expected = np.log10(product.reshape(len(tokens), -1).max(axis=1))
        np.testing.assert_allclose(result["jacobian"][0, :, k], expected, rtol=0, atol=1e-12)
        product = product * decay[-1 - k]
    assert np.all(np.diff(result["h"][0], axis=1) < 0) and np.all(result["jacobian"][0, :, 1:] < 0)
    steps = decay[-(MAX_LAG + 1):].transpose(1, 0, 2, 3).reshape(-1, HIDDEN * STATE)
    np.testing.assert_allclose(result["step_jacobian"][0], steps.max(axis=1), rtol=1e-13)


def test_the_state_is_h_times_n_wide_everywhere():
    model = s6_model(layers=2)
    assert model.state_width == HIDDEN * STATE == archs.get("s6").state_width(HIDDEN, {"s6_state_size": STATE})
    unrolled = probe.unroll(model, torch.as_tensor(windows(2)), BURN_IN)
    assert unrolled.states[1][-1][0].shape == (2, HIDDEN * STATE)
    assert unrolled.probes["e"][0].shape == (MAX_LAG + 1, 2, HIDDEN * STATE)
    lambda_1 = [torch.linalg.matrix_norm(weight, ord=2).item() for weight in model.recurrent_weights()]
    assert lambda_1 == [1.0, 1.0]


def test_the_paper_init():
    model = build_model("s6", VOCAB, 64, 1, seed=0)
    rnn = model.rnn
    assert rnn.state_size == 16 and rnn.dt_proj_weight_l0.shape == (64, 4)  # N = 16, R = ceil(64 / 16)
    torch.testing.assert_close(rnn.A_log_l0, torch.log(torch.arange(1.0, 17.0)).expand(64, 16))
    dt = torch.nn.functional.softplus(rnn.dt_proj_bias_l0.double())
    assert dt.min() >= 0.001 * (1 - 1e-6) and dt.max() <= 0.1 * (1 + 1e-6) and dt.max() / dt.min() > 10
    assert torch.equal(rnn.D_l0, torch.ones(64))
    again = build_model("s6", VOCAB, 64, 1, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))
    assert not torch.equal(rnn.dt_proj_bias_l0, build_model("s6", VOCAB, 64, 1, seed=1).rnn.dt_proj_bias_l0)
    assert math.isclose(rnn.dt_proj_weight_l0.abs().max().item(), 0.5, rel_tol=0.05)  # uniform in +-R^-1/2
