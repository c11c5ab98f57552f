"""Long Expressive Memory (rnngrad.archs.lem) against the paper's own statements, computed independently.

- Bounded states (Rusch et al. 2022, Prop. 4.1): with Delta t <= 1 each of dt_t, dtbar_t lies in
  (0, 1), so every unit of z_t and y_t is a convex combination of its previous value and a tanh:
  |z_t^i| <= max(|z_0^i|, 1) and |y_t^i| <= max(|y_0^i|, 1), whatever the weights and inputs.
- The time discretisation: a step is an explicit step of the multiscale ODE
  y' = dtbar_hat (tanh(W_y z + V_y u + b_y) - y), z' = dt_hat (tanh(W_z y + V_z u + b_z) - z),
  so the step Jacobian is I + Delta t F'(y, z) + O(Delta t^2), F' the ODE's Jacobian.
- The z-into-y path: z reaches the loss only through y_t = ... tanh(W_y z_t + ...) of the same step.
The references are a loop over the paper's equations written here from the raw weight tensors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rnngrad import archs, probe
from rnngrad.archs.lem import ADDING_DT, LEM
from rnngrad.config import ConfigError, validate_config
from rnngrad.model import build_model

VOCAB, HIDDEN = 13, 6

pytestmark = pytest.mark.usefixtures("one_thread")


def paper_step(weights: dict, u: torch.Tensor, y: torch.Tensor, z: torch.Tensor, dt: float):
    """One step of the paper's equations (3) from the named weight blocks; returns y_t, z_t, dtbar_t, a_y."""
    v_1, v_2, v_z, v_y = weights["weight_ih"].chunk(4)
    c_1, c_2, c_z, c_y = weights["bias_ih"].chunk(4)
    w_1, w_2, w_z = weights["weight_hh"].chunk(3)
    b_1, b_2, b_z = weights["bias_hh"].chunk(3)
    rate_z = dt * torch.sigmoid(y @ w_1.T + b_1 + u @ v_1.T + c_1)
    rate_y = dt * torch.sigmoid(y @ w_2.T + b_2 + u @ v_2.T + c_2)
    z_new = (1 - rate_z) * z + rate_z * torch.tanh(y @ w_z.T + b_z + u @ v_z.T + c_z)
    a_y = z_new @ weights["weight_zh"].T + weights["bias_zh"] + u @ v_y.T + c_y
    return (1 - rate_y) * y + rate_y * torch.tanh(a_y), z_new, rate_y, a_y


def ode_field(weights: dict, u: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """The multiscale ODE's right-hand side (y', z') at a flattened state (y, z) (one sample)."""
    y, z = state.chunk(2)
    v_1, v_2, v_z, v_y = weights["weight_ih"].chunk(4)
    c_1, c_2, c_z, c_y = weights["bias_ih"].chunk(4)
    w_1, w_2, w_z = weights["weight_hh"].chunk(3)
    b_1, b_2, b_z = weights["bias_hh"].chunk(3)
    dz = torch.sigmoid(w_1 @ y + b_1 + v_1 @ u + c_1) * (torch.tanh(w_z @ y + b_z + v_z @ u + c_z) - z)
    dy = torch.sigmoid(w_2 @ y + b_2 + v_2 @ u + c_2) * (
        torch.tanh(weights["weight_zh"] @ z + weights["bias_zh"] + v_y @ u + c_y) - y)
    return torch.cat([dy, dz])


def scaled_weights(generator: torch.Generator, scale: float, size: int = HIDDEN) -> dict:
    """Float64 weights of one layer (input width = size), uniform in +-scale: large enough to saturate every gate."""
    shapes = {"weight_ih": (4 * size, size), "bias_ih": (4 * size,), "weight_hh": (3 * size, size),
              "bias_hh": (3 * size,), "weight_zh": (size, size), "bias_zh": (size,)}
    return {name: (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * scale
            for name, shape in shapes.items()}


def module_with(weights: dict, dt: float) -> LEM:
    """A one-layer training module holding `weights`, in float64."""
    module = LEM(HIDDEN, HIDDEN, 1, dt).double()
    with torch.no_grad():
        for name, value in weights.items():
            getattr(module, f"{name}_l0").copy_(value)
    return module


def states_over_time(module: LEM, inputs: torch.Tensor, y0: torch.Tensor, z0: torch.Tensor):
    """Every step's (y_t, z_t) of the training module, fed one step at a time."""
    hidden, ys, zs = (y0[None], z0[None]), [], []
    with torch.no_grad():
        for step in inputs:
            _, hidden = module(step[None], hidden)
            ys.append(hidden[0][0])
            zs.append(hidden[1][0])
    return torch.stack(ys), torch.stack(zs)


# ---------------------------------------------------------------- Prop. 4.1: bounded hidden states


@pytest.mark.parametrize("dt", [1.0, 0.5, ADDING_DT])
def test_hidden_states_stay_within_the_papers_bound_whatever_the_weights(dt):
    """|z_t^i| <= max(|z_0^i|, 1) and |y_t^i| <= max(|y_0^i|, 1) at every step, with weights and inputs
    large enough that an RNN's state would be far outside [-1, 1]; initial states up to 3."""
    generator = torch.Generator().manual_seed(7)
    module = module_with(scaled_weights(generator, scale=20.0), dt)
    inputs = torch.randn(400, 16, HIDDEN, generator=generator, dtype=torch.float64) * 10
    y0 = (torch.rand(16, HIDDEN, generator=generator, dtype=torch.float64) * 2 - 1) * 3
    z0 = (torch.rand(16, HIDDEN, generator=generator, dtype=torch.float64) * 2 - 1) * 3
    ys, zs = states_over_time(module, inputs, y0, z0)
    rounding = 1e-12
    assert (ys.abs() <= y0.abs().clamp(min=1) + rounding).all()
    assert (zs.abs() <= z0.abs().clamp(min=1) + rounding).all()
    # the bound is tight: saturated tanh targets pull states that start inside [-1, 1] to |.| near 1
    assert ys.abs().max() > 0.99 and zs.abs().max() > 0.99


def test_the_bound_needs_delta_t_at_most_one():
    """The same weights with Delta t = 2 (outside lem_dt's schema): rates up to 2 extrapolate, and the
    states leave the bound, so the test above can fail."""
    generator = torch.Generator().manual_seed(7)
    module = module_with(scaled_weights(generator, scale=20.0), 2.0)
    inputs = torch.randn(400, 16, HIDDEN, generator=generator, dtype=torch.float64) * 10
    zeros = torch.zeros(16, HIDDEN, dtype=torch.float64)
    ys, zs = states_over_time(module, inputs, zeros, zeros)
    assert max(ys.abs().max(), zs.abs().max()) > 1.5


def test_lem_dt_is_validated_in_zero_to_one():
    assert validate_config({"grid": {"arch": ["lem"], "lem_dt": [1.0, 0.5]}})["grid"]["lem_dt"] == [1.0, 0.5]
    for bad in (0, 1.5):
        with pytest.raises(ConfigError, match="lem_dt"):
            validate_config({"grid": {"arch": ["lem"], "lem_dt": [bad]}})


# ---------------------------------------------------------------- the step Jacobian


@pytest.mark.parametrize("dt", [1.0, 0.3])
def test_closed_form_step_jacobian_equals_torch_func_away_from_the_identity(dt):
    """tests/test_archs.py checks the closed form at the default Delta t, where it is close to I;
    here at large Delta t and weights, where every term counts."""
    generator = torch.Generator().manual_seed(3)
    weights = {**scaled_weights(generator, scale=1.5), "dt": torch.tensor(dt, dtype=torch.float64)}
    spec = archs.get("lem")
    prev = torch.randn(20, 2 * HIDDEN, generator=generator, dtype=torch.float64).tanh()
    x_proj = spec.project_input(weights, torch.randn(20, HIDDEN, generator=generator, dtype=torch.float64))
    closed = spec.step_jacobian(weights, prev, x_proj)
    reference = probe.step_jacobians_autograd("lem", weights, prev, x_proj)
    assert torch.allclose(closed, reference, rtol=1e-12, atol=1e-14)
    # z_t's own block is diag(1 - dt_t), every entry in [1 - Delta t, 1)
    z_block = closed[:, HIDDEN:, HIDDEN:]
    diagonal = torch.diagonal(z_block, dim1=1, dim2=2)
    assert torch.equal(z_block, torch.diag_embed(diagonal))
    assert (diagonal >= 1 - dt).all() and (diagonal < 1).all()


def test_step_jacobian_is_identity_plus_delta_t_times_the_odes_jacobian():
    """||J(Delta t) - I - Delta t F'|| shrinks as Delta t^2 (the error of the explicit step), F' the
    Jacobian of the multiscale ODE written above (torch.func), at every sample."""
    generator = torch.Generator().manual_seed(5)
    weights = scaled_weights(generator, scale=1.0)
    spec = archs.get("lem")
    prev = torch.randn(8, 2 * HIDDEN, generator=generator, dtype=torch.float64).tanh()
    inputs = torch.randn(8, HIDDEN, generator=generator, dtype=torch.float64)
    x_proj = spec.project_input(weights, inputs)
    field_jacobian = torch.func.vmap(torch.func.jacrev(lambda s, u: ode_field(weights, u, s)))(prev, inputs)
    identity = torch.eye(2 * HIDDEN, dtype=torch.float64)
    errors = []
    for dt in (1e-2, 1e-3, 1e-4):
        jacobian = spec.step_jacobian({**weights, "dt": torch.tensor(dt, dtype=torch.float64)}, prev, x_proj)
        errors.append(torch.linalg.matrix_norm(jacobian - identity - dt * field_jacobian, ord=2))
        assert (errors[-1] < 10 * dt ** 2).all(), dt
    first_order = torch.linalg.matrix_norm(field_jacobian, ord=2)
    assert (first_order > 0.1).all()  # the first-order term is there to be matched
    for coarse, fine in zip(errors, errors[1:]):
        np.testing.assert_allclose((fine / coarse).numpy(), 0.01, rtol=0.05)  # Delta t / 10: error / 100


# ---------------------------------------------------------------- the z-into-y path


def paper_loss_terms(model, tokens: torch.Tensor):
    """The paper's loop over a one-layer model in float64: dL/dy_T from the decoder in closed form
    (W_dec^T (softmax - onehot)), and the last step's dtbar_T and tanh argument a_y."""
    weights = {name: getattr(model.rnn, f"{name}_l0").detach().double() for name in
               ("weight_ih", "bias_ih", "weight_hh", "bias_hh", "weight_zh", "bias_zh")}
    inputs = model.embedding.weight.detach().double()[tokens[:, :-1].t()]
    y = z = torch.zeros(tokens.shape[0], HIDDEN, dtype=torch.float64)
    for u in inputs:
        y, z, dtbar, a_y = paper_step(weights, u, y, z, model.rnn.dt)
    decoder_weight = model.decoder.weight.detach().double()
    logits = y @ decoder_weight.T + model.decoder.bias.detach().double()
    residual = torch.softmax(logits, dim=-1) - torch.nn.functional.one_hot(tokens[:, -1], VOCAB)
    return residual @ decoder_weight, dtbar, a_y, weights["weight_zh"]


@pytest.mark.parametrize("dt", [ADDING_DT, 1.0])
def test_z_reaches_the_loss_through_w_y_in_the_same_step(dt):
    """At lag 0, dL/dz_T = W_y^T (dtbar_T (1 - tanh(a_y)^2) dL/dy_T): the probe's g_z(0) and g_h(0)
    against that closed form, window by window."""
    model = build_model("lem", VOCAB, HIDDEN, 1, seed=4, lem_dt=dt)
    tokens = torch.as_tensor(np.random.default_rng(2).integers(0, VOCAB, size=(5, 12)))
    result = probe.probe_model(model, tokens.numpy(), burn_in=3)
    dl_dy, dtbar, a_y, w_y = paper_loss_terms(model, tokens)
    dl_dz = (dtbar * (1 - torch.tanh(a_y) ** 2) * dl_dy) @ w_y
    np.testing.assert_allclose(result["h"][0][:, 0], dl_dy.norm(dim=-1).numpy(), rtol=1e-10)
    np.testing.assert_allclose(result["z"][0][:, 0], dl_dz.norm(dim=-1).numpy(), rtol=1e-10)
    assert (result["z"][0][:, 0] > 1e-8).all()


def test_without_w_y_z_never_reaches_the_loss():
    """W_y = 0 cuts the only path from z to y: g_z is exactly 0 at every lag, g_h is not."""
    model = build_model("lem", VOCAB, HIDDEN, 2, seed=1, lem_dt=0.5)
    with torch.no_grad():
        for layer in range(2):
            getattr(model.rnn, f"weight_zh_l{layer}").zero_()
    result = probe.probe_model(model, np.random.default_rng(0).integers(0, VOCAB, size=(3, 14)), burn_in=3)
    assert not result["z"].any()
    assert (result["h"] > 0).all()


# ---------------------------------------------------------------- init


def test_init_is_the_authors_uniform_and_the_recurrence_keeps_it_under_init_range():
    """Every weight uniform in +-1/sqrt(H) (the authors' reset_parameters), the same seed the same
    weights; with init_range, W_hh and W_y keep the paper's init and everything else takes the range."""
    size = 64
    bound = 1 / math.sqrt(size)
    model = build_model("lem", VOCAB, size, 2, seed=3)
    for name, param in model.rnn.named_parameters():
        assert param.abs().max() <= bound and param.abs().max() > 0.9 * bound, name
    again = build_model("lem", VOCAB, size, 2, seed=3)
    other = build_model("lem", VOCAB, size, 2, seed=4)
    for name, param in model.state_dict().items():
        assert torch.equal(param, again.state_dict()[name]), name
        assert not torch.equal(param, other.state_dict()[name]), name
    wide = build_model("lem", VOCAB, size, 2, seed=3, init_range=0.5)
    for name, param in wide.rnn.named_parameters():
        recurrent = name.startswith(("weight_hh", "weight_zh"))
        assert (param.abs().max() <= bound) == recurrent, name
        if recurrent:
            assert torch.equal(param, getattr(model.rnn, name)), name
