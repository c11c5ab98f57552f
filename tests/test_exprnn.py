"""expRNN (Lezcano-Casado & Martinez-Rubio 2019): the theory of its own, beyond tests/test_archs.py.

W = expm(A) is orthogonal at init and after training (W W^T = I, every singular value 1,
by SVD); modReLU' is 0 or 1 (against finite differences of a NumPy modReLU); the step
Jacobian's norm is at most 1, so the probe's g(k) never grows with k (Pascanu's bound
with gamma = lambda_1 = 1) and does not shrink while every unit is on; A trains at
lr * exprnn_orthogonal_lr_scale (one SGD step against lr * grad by hand), also through
the Trainer's set_lr and a resume; the two inits give the reference code's eigenvalue
angles (a Kolmogorov-Smirnov distance against the closed-form distributions).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_probe import assert_bound_holds, random_windows
from test_training import make_cell, make_training, write_tokens

from rnngrad import archs, probe, training
from rnngrad.archs.exprnn import modrelu, modrelu_derivative
from rnngrad.config import validate_config
from rnngrad.grid import normalise_cell
from rnngrad.model import build_model
from rnngrad.training.schedule import make_optimizer

VOCAB = 13

pytestmark = pytest.mark.usefixtures("one_thread")


def exprnn(hidden=8, layers=1, seed=0, **options):
    return build_model("exprnn", vocab_size=VOCAB, hidden_size=hidden, num_layers=layers, bptt=10, seed=seed,
                       **options)


def train_steps(model, optimizer, steps: int, seed: int = 6) -> None:
    """A few steps of next-token training on random tokens."""
    tokens = torch.as_tensor(random_windows(8, 0, 20, seed=seed)).t()
    for _ in range(steps):
        logits, _ = model(tokens[:-1], model.init_hidden(8))
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def optimizer_of(model, name="adam", lr=0.05):
    spec = model.spec
    return make_optimizer(name, spec.parameter_groups(model, spec.options({})), lr)


def assert_orthogonal(model):
    """W W^T = I and every singular value 1: W in float64 (what the probe reads) to float64 precision, the
    training module's float32 W to float32's rounding (float32's own matrix_exp is off by up to 2e-5)."""
    for layer, weight in enumerate(model.recurrent_weights()):
        weight = weight.detach()
        eye = torch.eye(weight.shape[0], dtype=torch.float64)
        assert weight.dtype == torch.float64
        assert torch.allclose(weight @ weight.t(), eye, rtol=0, atol=1e-13)
        assert torch.allclose(torch.linalg.svdvals(weight), torch.ones(weight.shape[0], dtype=torch.float64),
                              rtol=0, atol=1e-13)
        single = model.rnn.recurrent_matrix(layer).detach()
        assert single.dtype == torch.float32
        assert torch.allclose(single.double() @ single.double().t(), eye, rtol=0, atol=5e-7)


# ---------------------------------------------------------------- W = expm(A) is orthogonal


@pytest.mark.parametrize("init", ["henaff", "cayley"])
@pytest.mark.parametrize("hidden", [7, 64])
def test_w_is_orthogonal_at_init_and_after_training(init, hidden):
    model = exprnn(hidden=hidden, layers=2, exprnn_init=init)
    assert_orthogonal(model)
    initial = model.recurrent_weights()[0].detach().clone()
    train_steps(model, optimizer_of(model, lr=0.05), 20)  # large Adam steps: A moves far
    assert (model.recurrent_weights()[0].detach() - initial).abs().max() > 0.05
    assert_orthogonal(model)


def test_only_the_strict_upper_triangle_of_the_free_matrix_is_trained():
    """A = U - U^T reads U's strict upper triangle: the rest gets no gradient, so it never moves."""
    model = exprnn(hidden=6)
    logits, _ = model(torch.as_tensor(random_windows(4, 0, 8)).t(), model.init_hidden(4))
    logits.square().sum().backward()
    grad = model.rnn.log_weight_hh_l0.grad
    strict_upper = torch.ones(6, 6, dtype=torch.bool).triu(1)
    assert torch.all(grad[~strict_upper] == 0) and torch.all(grad[strict_upper].abs() > 0)


# ---------------------------------------------------------------- modReLU and the step Jacobian


def test_modrelu_and_its_derivative_against_numpy_finite_differences():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1, 4000)
    bias = rng.uniform(-1.0, 0.5, 4000)
    # away from modReLU's kinks (|z| + b = 0) and its jump at z = 0 (where b > 0)
    keep = (np.abs(np.abs(z) + bias) > 1e-3) & (np.abs(z) > 1e-3)
    z, bias = z[keep], bias[keep]
    by_hand = lambda values: np.sign(values) * np.maximum(np.abs(values) + bias, 0.0)  # noqa: E731
    eps = 1e-7
    finite = (by_hand(z + eps) - by_hand(z - eps)) / (2 * eps)
    z_t, bias_t = torch.as_tensor(z), torch.as_tensor(bias)
    np.testing.assert_allclose(modrelu(z_t, bias_t).numpy(), by_hand(z), rtol=0, atol=1e-15)
    derivative = modrelu_derivative(z_t, bias_t).numpy()
    np.testing.assert_allclose(derivative, finite, rtol=0, atol=1e-6)
    assert np.all((derivative == 0) | (derivative == 1))
    assert 0.1 < derivative.mean() < 0.9, "both the on and the off branch are exercised"


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
def test_the_step_jacobian_has_norm_at_most_one_and_g_never_grows(trained, layers):
    """gamma = 1 and lambda_1 = 1: Pascanu's bound g(k) <= g(0) window by window (the top layer), and
    ||J_t|| = ||diag(modReLU') W|| <= 1; where every unit is on J_t = W, and a single layer's g(k) = g(0)."""
    model = exprnn(hidden=8, layers=layers)
    if trained:
        train_steps(model, optimizer_of(model, lr=0.05), 20)
    windows = random_windows(6, 5, 25)
    g, _ = assert_bound_holds(model, windows, 5)
    assert np.all(g[:, 1:] <= g[:, :1] * (1 + 1e-9))
    result = probe.probe_model(model, windows, 5, jacobian_windows=2)
    assert np.all(result["step_jacobian"] <= 1 + 1e-12)
    if layers == 1:
        # modReLU's bias starts within +-0.01: almost every unit is on, so almost nothing is lost
        unrolled = probe.unroll(model, torch.as_tensor(windows), 5)
        weights = probe.layer_weights(model)[0]
        pre = unrolled.x_proj[0] + torch.cat([unrolled.prev_state[0][0][None], torch.stack(
            [state[0] for state in unrolled.states[0][:-1]])]) @ weights["weight_hh"].t()
        all_on = (modrelu_derivative(pre, weights["bias"]) == 1).all(dim=-1).all(dim=0)  # (windows,)
        if not trained:
            assert all_on.any()
        np.testing.assert_allclose(g[all_on.numpy()], np.repeat(g[all_on.numpy(), :1], g.shape[1], axis=1),
                                   rtol=1e-10)


def test_closed_form_step_jacobian_is_diag_of_modrelu_derivative_times_w():
    """J = d h_t / d h_{t-1} by central differences of a step written here, against step_jacobian."""
    model = exprnn(hidden=5)
    weights = probe.layer_weights(model)[0]
    rng = np.random.default_rng(2)
    prev = torch.as_tensor(rng.normal(0, 1, (3, 5)))
    x_proj = torch.as_tensor(rng.normal(0, 1, (3, 5)))

    def step(h):
        z = x_proj + h @ weights["weight_hh"].t()
        return torch.sign(z) * torch.clamp(z.abs() + weights["bias"], min=0)

    eps = 1e-6
    finite = torch.stack([(step(prev + eps * torch.eye(5)[j]) - step(prev - eps * torch.eye(5)[j])) / (2 * eps)
                          for j in range(5)], dim=-1)
    closed = model.spec.step_jacobian(weights, prev, x_proj)
    assert torch.allclose(closed, finite, rtol=0, atol=1e-8)
    assert torch.all(torch.linalg.matrix_norm(closed, ord=2) <= 1 + 1e-12)


# ---------------------------------------------------------------- the orthogonal part's learning rate


@pytest.mark.parametrize("scale", [0.1, 0.5])
def test_one_sgd_step_moves_a_by_lr_scale_times_lr_times_its_gradient(scale):
    model = exprnn(hidden=6, layers=2, exprnn_orthogonal_lr_scale=scale).double()
    spec, lr = model.spec, 0.3
    optimizer = make_optimizer("sgd", spec.parameter_groups(model, spec.options({"exprnn_orthogonal_lr_scale": scale})),
                               lr)
    before = {name: value.detach().clone() for name, value in model.named_parameters()}
    tokens = torch.as_tensor(random_windows(4, 0, 10)).t()
    logits, _ = model(tokens[:-1], model.init_hidden(4))
    F.cross_entropy(logits.flatten(0, 1), tokens[1:].flatten()).backward()
    grads = {name: value.grad.detach().clone() for name, value in model.named_parameters()}
    optimizer.step()
    orthogonal = {f"rnn.log_weight_hh_l{layer}" for layer in range(2)}
    assert len(before) == 9  # embedding, decoder (2), and per layer T, A's free matrix, modReLU's bias
    for name, value in model.named_parameters():
        rate = lr * scale if name in orthogonal else lr
        assert grads[name].abs().max() > 0, name
        assert torch.allclose(value.detach() - before[name], -rate * grads[name], rtol=1e-12, atol=1e-15), name


def test_every_other_arch_has_one_group_and_the_same_optimizer_state():
    """The default parameter_groups: one group of all parameters, no lr_scale; after a step the
    optimizer's state dict equals that of torch.optim.Adam(model.parameters())."""
    for arch in archs.names():
        if arch == "exprnn":
            continue
        model = build_model(arch, vocab_size=VOCAB, hidden_size=4, num_layers=1, seed=0)
        plain = copy.deepcopy(model)
        ours = make_optimizer("adam", model.spec.parameter_groups(model, model.spec.options({})), 0.01)
        theirs = torch.optim.Adam(plain.parameters(), lr=0.01)
        for net, optimizer in ((model, ours), (plain, theirs)):
            logits, _ = net(torch.as_tensor(random_windows(2, 0, 5)).t(), net.init_hidden(2))
            logits.square().mean().backward()
            optimizer.step()
        mine, reference = ours.state_dict(), theirs.state_dict()
        assert mine["param_groups"] == reference["param_groups"], arch
        assert all(torch.equal(mine["state"][key][part], reference["state"][key][part])
                   for key in reference["state"] for part in reference["state"][key]), arch


def test_the_trainer_keeps_the_scale_through_set_lr_and_a_resume(tmp_path):
    token_dir = write_tokens(tmp_path)
    splits = [np.load(token_dir / f"{split}.npy") for split in ("train", "valid", "test")]
    cell = make_cell(arch="exprnn", lr=0.5, exprnn_orthogonal_lr_scale=0.25)
    trainer = training.Trainer(cell, make_training(), *splits, VOCAB)
    groups = trainer.optimizer.param_groups
    assert [group["lr"] for group in groups] == [0.5, 0.125]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in trainer.model.rnn.orthogonal_parameters()}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(trainer.params)
    trainer.set_lr(0.1)  # the plateau / step schedules
    assert [group["lr"] for group in groups] == pytest.approx([0.1, 0.025], rel=1e-15)
    state = trainer.state_dict()
    state["progress"]["lr"] = 0.2
    resumed = training.Trainer(cell, make_training(), *splits, VOCAB)
    resumed.load_state_dict(state)
    assert [group["lr"] for group in resumed.optimizer.param_groups] == pytest.approx([0.2, 0.05], rel=1e-15)


def test_exprnn_learns_a_short_copy_task_through_the_trainer(tmp_path):
    """The whole training path (parameter groups, Adam, clipping): copy 5 of 8 symbols over T = 20."""
    config = validate_config({"task": {"name": ["copy"], "T": [20], "steps": 200, "valid_size": 100,
                                       "test_size": 300, "copy_length": 5, "copy_symbols": 8},
                              "probe": {"windows": 8, "jacobian_windows": 2, "fit_lags": [1, 4]},
                              "training": {"checkpoints": [0.0, 0.5, 1.0], "spectral_every": 50}})
    cell = normalise_cell(dict(task="copy", T=20, arch="exprnn", hidden_size=64, num_layers=1, init="orthogonal",
                               init_scale=1.0, forget_bias=1.0, lr=0.001, optimizer="adam", clip=1.0, bptt="na",
                               batch_size=32, epochs="na", seed=0))
    summary = training.train_run(cell, config["training"], None, tmp_path, task=config["task"], device="cpu",
                                 log_every_s=1e9)
    assert summary["status"] == "ok" and summary["solved"] and summary["test_ratio"] < 0.05


# ---------------------------------------------------------------- the inits


def kolmogorov_smirnov(samples: np.ndarray, cdf) -> float:
    """sup |empirical CDF - cdf| of `samples`."""
    values = np.sort(samples)
    n = len(values)
    expected = cdf(values)
    return max(np.max(np.arange(1, n + 1) / n - expected), np.max(expected - np.arange(n) / n))


def eigenvalue_angles(model) -> np.ndarray:
    """|arg lambda| of W's eigenvalues with positive imaginary part (they come in conjugate pairs)."""
    eigenvalues = torch.linalg.eigvals(model.recurrent_weights()[0].detach()).numpy()
    return np.abs(np.angle(eigenvalues[eigenvalues.imag > 1e-9]))


@pytest.mark.parametrize("init,cdf,largest", [
    # Henaff: s uniform in [-pi, pi], so |arg lambda| = |s| is uniform in [0, pi]
    ("henaff", lambda x: x / math.pi, math.pi),
    # Cayley as the code defines it: |s| = tan(u/2), u uniform in [0, pi/2]: P(|s| <= x) = (4/pi) atan(x), x <= 1
    ("cayley", lambda x: 4 / math.pi * np.arctan(x), 1.0),
])
def test_the_inits_give_the_reference_codes_eigenvalue_angles(init, cdf, largest):
    hidden = 800
    model = exprnn(hidden=hidden, exprnn_init=init, seed=3)
    angles = eigenvalue_angles(model)
    assert len(angles) >= hidden // 2 - 2  # all but the rare angle within 1e-9 of 0 or pi
    assert angles.max() <= largest + 1e-9
    # 1.95 / sqrt(n): the 0.1% critical value of the one-sample KS statistic
    assert kolmogorov_smirnov(angles, cdf) < 1.95 / math.sqrt(len(angles))
    # The other init's law is rejected: the test can tell them apart.
    other = (lambda x: x / math.pi) if init == "cayley" else (lambda x: 4 / math.pi * np.arctan(np.minimum(x, 1)))
    assert kolmogorov_smirnov(angles, other) > 1.95 / math.sqrt(len(angles))
    # A itself: 2x2 skew blocks on the diagonal, nothing else
    skew = model.rnn.log_weight_hh_l0.detach().triu(1)
    off_blocks = skew.clone()
    off_blocks[torch.arange(0, hidden - 1, 2), torch.arange(1, hidden, 2)] = 0
    assert torch.all(off_blocks == 0)


def test_input_kernel_and_modrelu_bias_follow_the_reference_code_and_the_seed():
    hidden = 256
    model = exprnn(hidden=hidden, layers=2)
    for layer in range(2):
        weight = getattr(model.rnn, f"weight_ih_l{layer}").detach().double()
        bias = getattr(model.rnn, f"modrelu_bias_l{layer}").detach()
        # kaiming normal with relu's gain: std sqrt(2 / fan_in)
        assert weight.std().item() == pytest.approx(math.sqrt(2 / hidden), rel=0.02)
        assert abs(weight.mean().item()) < 0.01
        assert bias.abs().max() <= 0.01 and bias.abs().max() > 0.009 and bias.std() > 0.005
    again, other = exprnn(hidden=hidden, layers=2), exprnn(hidden=hidden, layers=2, seed=1)
    for name, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
        if name.startswith("rnn."):
            assert not torch.equal(value, other.state_dict()[name]), name
