"""The minGRU's theory (rnngrad.archs.mingru), against computations independent of its code.

- The log-space parallel scan (the GPU training path) and the step loop (the CPU one) against a recurrence
  written here, values and gradients in float64, from random and zero h_0; finite gradients
  in float32 on long sequences with saturated gates, and from h_0 = 0.
- The recurrence is linear and diagonal in h with gates that read x_t alone: the probe's
  g(k) of a one-layer model against dL/dh_{T-k} = dL/dh_T * prod_{j > T-k} (1 - z_j), with
  dL/dh_T by hand (numpy), its Jacobian products and temporal contributions likewise.
- Its bound: lambda_1 = 1 (the identity), gamma = 1: the top layer's g(k) never grows.
- The states stay positive; the training module carries h between batches.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from rnngrad import probe
from rnngrad.archs.mingru import gate_and_candidate, mingru_loop, mingru_scan
from rnngrad.model import build_model, spectral_stats

VOCAB, HIDDEN, BURN_IN, MAX_LAG = 13, 6, 4, 12


def reference_states(gate: np.ndarray, candidate: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """h_t = (1 - z_t) h_{t-1} + z_t htilde_t in numpy, the paper's g written out again."""
    z = 1 / (1 + np.exp(-gate))
    htilde = np.where(candidate >= 0, candidate + 0.5, 1 / (1 + np.exp(-candidate)))
    h, states = h0, []
    for t in range(len(gate)):
        h = (1 - z[t]) * h + z[t] * htilde[t]
        states.append(h)
    return np.stack(states)


def random_inputs(steps: int, seed: int, batch: int = 3, scale: float = 3.0, dtype=torch.float64):
    """Gate and candidate pre-activations on both sides of g's kink; h_0 >= 0 with whole zero rows and zero units."""
    generator = torch.Generator().manual_seed(seed)
    gate = torch.randn(steps, batch, HIDDEN, generator=generator, dtype=dtype) * scale
    candidate = torch.randn(steps, batch, HIDDEN, generator=generator, dtype=dtype) * scale
    h0 = torch.rand(batch, HIDDEN, generator=generator, dtype=dtype) * 2
    h0[0] = 0.0
    h0[1, ::2] = 0.0
    return gate, candidate, h0


@pytest.mark.parametrize("steps", [1, 2, 37, 500])
def test_scan_and_loop_equal_the_recurrence_values_and_gradients(steps):
    gate, candidate, h0 = random_inputs(steps, seed=steps)
    expected = reference_states(gate.numpy(), candidate.numpy(), h0.numpy())
    cotangent = torch.randn(gate.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = {}
    for name, function in (("scan", mingru_scan), ("loop", mingru_loop)):
        inputs = [tensor.clone().requires_grad_(True) for tensor in (gate, candidate, h0)]
        states = function(*inputs)
        np.testing.assert_allclose(states.detach().numpy(), expected, rtol=1e-10, atol=1e-300, err_msg=name)
        grads[name] = torch.autograd.grad((states * cotangent).sum(), inputs)
    for scan, loop in zip(grads["scan"], grads["loop"]):
        assert torch.isfinite(scan).all()
        # the scan's rounding grows with |log prod (1 - z)| (~750 at T = 500): 1e-10 of gradients ~0.1-1
        np.testing.assert_allclose(scan.numpy(), loop.numpy(), rtol=1e-9, atol=1e-10)
    # h_0's gradient in closed form: sum_t cotangent_t * prod_{j<=t} (1 - z_j), finite at h_0 = 0 too
    decay = np.cumprod(1 - 1 / (1 + np.exp(-gate.numpy())), axis=0)
    np.testing.assert_allclose(grads["scan"][2].numpy(), (cotangent.numpy() * decay).sum(axis=0),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_float32_scan_gradients_stay_finite_from_zero_h0_on_long_sequences(scale):
    """T = 1000 with gates up to +-60 (z saturated both ways: log(1 - z) down to -60 a step),
    h_0 = 0 as in a language model's first batch: finite values and gradients, the float64
    loop's within the chunked scan's rounding (measured 2e-5 of the largest gradient at scale 1,
    2e-4 at 20; one scan over all 1000 steps: 2e-4 and 4e-3)."""
    gate, candidate, _ = random_inputs(1000, seed=7, scale=scale, dtype=torch.float32)
    results = {}
    for name, function, dtype in (("scan", mingru_scan, torch.float32), ("loop", mingru_loop, torch.float64)):
        inputs = [gate.to(dtype).requires_grad_(True), candidate.to(dtype).requires_grad_(True),
                  torch.zeros(gate.shape[1:], dtype=dtype, requires_grad=True)]
        states = function(*inputs)
        results[name] = (states.detach().double(), torch.autograd.grad(states[-5:].sum(), inputs))
        assert torch.isfinite(states).all() and (states > 0).all(), name
        assert all(torch.isfinite(grad).all() for grad in results[name][1]), name
    torch.testing.assert_close(results["scan"][0], results["loop"][0], rtol=1e-4, atol=1e-9)
    for scan, loop in zip(results["scan"][1], results["loop"][1]):
        torch.testing.assert_close(scan.double(), loop, rtol=0, atol=5e-4 * loop.abs().max().item())


def model_of(layers: int, seed: int = 0):
    return build_model("mingru", VOCAB, HIDDEN, layers, seed=seed)


def windows(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, size=(n, BURN_IN + MAX_LAG + 2))


def by_hand(model, tokens: np.ndarray) -> dict[str, np.ndarray]:
    """The one-layer model in numpy: z_t, h_t of every step, and dL/dh_T of the last step's cross-entropy."""
    w = {name: value.detach().double().numpy() for name, value in model.rnn.weights(0).items()}
    embedding = model.embedding.weight.detach().double().numpy()
    decoder_w, decoder_b = (model.decoder.weight.detach().double().numpy(),
                            model.decoder.bias.detach().double().numpy())
    u = embedding[tokens[:, :-1]].transpose(1, 0, 2)  # (steps, windows, H)
    v = u / np.linalg.norm(u, axis=-1, keepdims=True) * math.sqrt(HIDDEN) * w["norm_weight"]
    gate = v @ w["gate_weight"].T + w["gate_bias"]
    states = reference_states(gate, v @ w["candidate_weight"].T + w["candidate_bias"], np.zeros(u.shape[1:]))
    logits = (u[-1] + states[-1] @ w["out_weight"].T + w["out_bias"]) @ decoder_w.T + decoder_b
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(tokens)), tokens[:, -1]] -= 1  # dL/dlogits = softmax - onehot
    return {"z": 1 / (1 + np.exp(-gate)), "h": states, "dl_dh_last": p @ decoder_w @ w["out_weight"]}


def test_probe_gradients_jacobians_and_contributions_equal_the_diagonal_closed_form():
    """One layer: dL/dh_{T-k} = dL/dh_T * prod_{j=T-k+1}^T (1 - z_j) unit by unit;
    ||dh_T/dh_{T-k}||_2 = max_i prod_j (1 - z_j,i); the contribution of step t = T-k is
    ||(1 - z_t) dL/dh_t h_{t-1}||, its part of dL/du at u = 1 for a per-unit gain u."""
    model, tokens = model_of(1), windows()
    result = probe.probe_model(model, tokens, BURN_IN, jacobian_windows=len(tokens))
    hand = by_hand(model, tokens)
    last = tokens.shape[1] - 2  # the index of step T in the whole sequence
    coefficient = 1 - hand["z"]
    for k in range(MAX_LAG + 1):
        t = last - k
        decay = np.prod(coefficient[t + 1:last + 1], axis=0)  # (windows, H); the empty product at k = 0
        gradient = hand["dl_dh_last"] * decay
        np.testing.assert_allclose(result["h"][0][:, k], np.linalg.norm(gradient, axis=1), rtol=1e-10)
        np.testing.assert_allclose(result["jacobian"][0][:, k], np.log10(decay.max(axis=1)), rtol=0, atol=1e-10)
        contribution = coefficient[t] * gradient * hand["h"][t - 1]
        np.testing.assert_allclose(result["contributions"][0][:, k], np.linalg.norm(contribution, axis=1),
                                   rtol=1e-10)
    assert np.all(result["h"][0][:, MAX_LAG] < 0.5 * result["h"][0][:, 0]), "the comparison spans a real decay"


def test_pascanus_bound_with_the_identity_holds_the_top_layer_never_grows():
    """lambda_1 = 1 (the identity), gamma = 1: g(k) <= g(0) (gamma lambda_1)^k for the top layer; every
    step's ||diag(1 - z_t)|| < 1, so g(k) falls at every lag and no Jacobian product exceeds 1."""
    model = model_of(3, seed=1)
    assert model.spec.gamma == 1.0
    for weight in model.recurrent_weights():
        stats = spectral_stats(weight, "mingru")
        assert stats["sigma_max"] == pytest.approx(1.0, abs=1e-12)
        assert stats["spectral_radius"] == pytest.approx(1.0, abs=1e-12)
    result = probe.probe_model(model, windows(6, seed=2), BURN_IN, jacobian_windows=6)
    top = result["h"][-1]
    assert np.all(np.diff(top, axis=1) < 0)
    assert np.all(result["jacobian"] <= 1e-12) and np.all(np.diff(result["jacobian"], axis=2) < 0)
    assert np.all(result["step_jacobian"] < 1)


def test_states_stay_positive_and_the_carried_state_continues_the_sequence():
    """From h_0 = 0 every state is positive (g > 0, 0 < z < 1); a sequence run as two batches with the
    final state carried equals it run at once (float64), and gradients through the second batch are finite."""
    model = copy.deepcopy(model_of(2, seed=3)).double()
    tokens = torch.as_tensor(np.random.default_rng(4).integers(0, VOCAB, size=(40, 5)))
    embedded = model.embedding(tokens)
    with torch.no_grad():
        whole, whole_final = model.rnn(embedded, model.init_hidden(5))
        first, carried = model.rnn(embedded[:25], model.init_hidden(5))
        second, final = model.rnn(embedded[25:], carried)
        states = mingru_scan(*gate_and_candidate(model.rnn.weights(0), embedded).chunk(2, dim=-1),
                             torch.zeros(5, HIDDEN, dtype=torch.float64))
    assert (states > 0).all() and (carried > 0).all() and (final > 0).all()
    torch.testing.assert_close(torch.cat([first, second]), whole, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(final, whole_final, rtol=1e-12, atol=1e-12)
    unrolled = probe.unroll(model_of(2, seed=3), torch.as_tensor(windows(3, seed=5)), BURN_IN)
    assert all((state[0] > 0).all() for layer in unrolled.states for state in layer)
    model = model_of(2, seed=3)  # float32 training: the first batch from zeros, the second from its state
    hidden = model.init_hidden(5)
    for batch in (tokens[:20], tokens[20:]):
        model.zero_grad()
        output, hidden = model(batch, hidden.detach())
        output.logsumexp(-1).sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters()), "gradients finite"


def test_initialisation_is_the_authors_and_deterministic():
    """torch's nn.Linear init (uniform +-1/sqrt(H)) drawn from the seed, RMSNorm's weight 1."""
    first, again, other = model_of(2, seed=8), model_of(2, seed=8), model_of(2, seed=9)
    for name, value in first.rnn.named_parameters():
        assert torch.equal(value, dict(again.rnn.named_parameters())[name]), name
        if name.startswith("norm_weight"):
            assert torch.equal(value, torch.ones_like(value))
        else:
            assert value.abs().max() <= 1 / math.sqrt(HIDDEN) and value.std() > 0.2 / math.sqrt(HIDDEN), name
            assert not torch.equal(value, dict(other.rnn.named_parameters())[name]), name
