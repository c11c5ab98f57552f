"""Gradient-vs-distance probe: how dL_T/dh_{T-k} decays (or grows) with the lag k.

Definition (docs/probe.md and the report repeat it):

- Windows: W windows of B + K + 2 tokens at random positions of a split, drawn with a
  fixed seed, so every run sees the same positions. The model reads B + K + 1 tokens:
  B burn-in steps without gradient from a zero state (realistic states), then K + 1
  steps t = T-K..T unrolled with gradient; L_T is the cross-entropy of predicting the
  token after step T, one loss per window.
- Everything runs in float64, cell by cell, with the weights read by their torch.nn
  names (`weight_ih_l0`, `weight_hh_l0`, ...): the unrolled cells give exactly the
  fused module's outputs (tests/test_probe.py).
- One forward and ONE backward pass give every lag of every window and layer: a zero
  "probe" tensor is added to every h_t (and to c_t before h_t is computed from it) of
  every layer, to every embedding output x_t and to every recurrent pre-activation
  W_hh h_{t-1}; the gradients of the
  summed loss with respect to the probes are the total derivatives dL_T/dh_{T-k}
  (windows are independent, so summing their losses does not mix them).
- Records per window, layer and lag k = 0..K: g(k) = ||dL_T/dh_{T-k}||_2 (state `h`),
  ||dL_T/dc_{T-k}||_2 for the LSTM (`c`: the total derivative, c_t perturbed before
  h_t = o_t tanh(c_t) is computed, so delta_c_t = delta_h_t o_t (1 - tanh(c_t)^2)
  + delta_c_{t+1} f_{t+1}; at lag 0 only the first term), ||dL_T/dx_{T-k}||_2 for the embedding
  vector (`x`, layer 0), and the temporal contributions of Pascanu et al. (2013,
  eq. 4-5): the part of dL_T/dW_hh that comes from step T-k is the rank-one matrix
  (dL_T/de_{T-k}) h_{T-k-1}^T, whose Frobenius norm is ||dL_T/de_{T-k}|| ||h_{T-k-1}||.
- Loss-free Jacobian products on the first `jacobian_windows` windows, per layer:
  ||dh_T/dh_{T-k}||_2 (spectral norm; for the LSTM the state is (h, c)) as state
  `jacobian`, and the per-step norms ||dh_t/dh_{t-1}||_2. Per-step Jacobians come from
  closed forms (tests check them against torch.func's vmap of jacrev); the product is
  accumulated backward from T and rescaled every step, so it never under- or overflows.
- Theory beside it: sigma_max and spectral radius of each W_hh, gamma (bound on the
  activation's derivative) and Pascanu's bound g(k) <= g(0) (gamma sigma_max)^k. It
  holds window by window for a single-layer vanilla RNN and for the TOP layer of a
  stack (`bound_rate` only there, and on every layer's Jacobian product); a lower layer's
  h_{T-k} also reaches L_T through the layers above at later steps, so the bound does not
  apply to it. Its premise is one loss at one output step, which every probe loss is.
- The remedies (docs/architectures.md). orthogonal_rnn: a tanh RNN, its
  materialised W_hh read as weight_hh. indrnn: the recurrent pre-activation is u * h_{t-1}
  (elementwise; `e` probes it), the per-step Jacobian diag(relu'(a_t) u). lru: the state
  `h` is the complex recurrent state x_t, a real 2N vector (Re, Im) for every norm;
  complex128 inside the cell; `e` is added to lambda * x_{t-1}; the per-step Jacobian of
  the state, diag(lambda) as a real 2N x 2N matrix, does not depend on the input, so a
  one-layer LRU's dL_T/dx_{T-k} is exactly conj(lambda)^k dL_T/dx_T per unit. For the
  diagonal recurrences (indrnn, lru) the part of dL_T/du (dL_T/dlambda) from step T-k is
  the elementwise product (dL_T/de_{T-k}) * h_{T-k-1}: its norm is the contribution.
- Task runs (rnngrad.tasks): the windows are the first `windows` sequences of the task's
  fixed test set, read from a zero state without burn-in. The loss is ONE output step's,
  as for a corpus, so that lag k is a distance from the step whose loss it is: adding, the
  squared error of the last step's prediction; copy, the cross-entropy of the last recall
  step (a sum over recall steps would mix losses whose dependencies lie at different
  distances). The information lies at each window's own lags (tasks.dependency_lags):
  adding, its first and second markers, T - 1 - position; copy, the last symbol,
  T + copy_length. The summary reads each window's g(lag_w)/g(0) at its own lag and
  reports the median over windows with censored and underflowed counts (dependency_stats:
  `dep_*` for the first marker / last symbol, `second_marker_*` for the adding problem's
  second).
- Censoring: a norm that underflows float64 (== 0) has log10 = -inf; an overflow or a
  NaN has log10 = +inf. Both are censored: counted in `n_censored`, left out of means;
  quantiles sort them as -inf / +inf, and a quantile that falls on a censored value is
  reported as NaN, never as log10(0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from rnngrad import archs, tasks
from rnngrad.grid import run_columns
from rnngrad.io import write_csv
from rnngrad.model import load_checkpoint, spectral_stats

TABLES = ("curves", "summary", "contributions", "jacobians")
CURVE_STATS = ("n", "n_censored", "n_underflow", "log10_mean", "log10_median", "log10_q25", "log10_q75",
               "norm_log10_mean", "norm_log10_median", "norm_log10_q25", "norm_log10_q75")


# ---------------------------------------------------------------- windows and cells


def make_windows(tokens: np.ndarray, n_windows: int, burn_in: int, max_lag: int, seed: int) -> np.ndarray:
    """(n_windows, burn_in + max_lag + 2) token windows at seeded random positions.

    The positions depend only on (len(tokens), n_windows, window length, seed), so every
    run probed on the same split sees the same text.
    """
    length = burn_in + max_lag + 2
    if len(tokens) < length:
        raise ValueError(f"split has {len(tokens)} tokens, fewer than one probe window ({length})")
    starts = np.random.default_rng(seed).integers(0, len(tokens) - length + 1, size=n_windows)
    return np.stack([np.asarray(tokens[s:s + length], dtype=np.int64) for s in starts])


def layer_weights(model) -> list[dict[str, torch.Tensor]]:
    """float64 copies of each layer's weights as the arch's step function reads them (archs.Arch.layer_weights)."""
    spec = model.spec
    return [{name: value.detach().double().clone() for name, value in spec.layer_weights(model.rnn, layer).items()}
            for layer in range(model.num_layers)]


def embed(model, inputs: torch.Tensor) -> torch.Tensor:
    """The input layer in float64: embedding rows of tokens, or the linear layer of a task's real inputs."""
    layer = model.embedding
    if isinstance(layer, torch.nn.Embedding):
        return F.embedding(inputs, layer.weight.detach().double())
    return F.linear(inputs.double(), layer.weight.detach().double(), layer.bias.detach().double())


def task_loss_fn(model, name: str, targets: torch.Tensor):
    """The probe's loss of a task, per window: ONE output step's loss, so that every lag k of
    g(k) = ||dL/dh_{T-k}|| is a distance from that step (tasks.dependency_lags).

    Adding: the squared error of the last step's prediction (targets (W,)). Copy: the
    cross-entropy of the last recall step, whose symbol was shown T + copy_length steps
    before it (targets (W, steps)). From the top layer's outputs (steps, W, H); float64,
    weights detached.
    """
    weight, bias = model.decoder.weight.detach().double(), model.decoder.bias.detach().double()
    if name == "adding":
        return lambda outputs: (F.linear(outputs[-1], weight, bias)[:, 0] - targets.double()) ** 2
    last_symbol = targets[:, -1]
    return lambda outputs: F.cross_entropy(F.linear(outputs[-1], weight, bias), last_symbol, reduction="none")


@dataclass
class Unrolled:
    """The graph of one batch of windows (time index t = 0..K, lag k = K - t)."""

    loss: torch.Tensor               # (W,) cross-entropy per window
    hidden: list                     # [layer][t] h_t (probes added), t = 0..K (LRU: the complex state x_t)
    prev_hidden: list                # [layer] h before t = 0 (end of burn-in, no grad)
    prev_state: list                 # [layer] full state before t = 0 ((h, c) for LSTM)
    x_proj: list                     # [layer] (K+1, W, G*H) input projections, detached (LRU: complex)
    states: list                     # [layer][t] full states, detached (for Jacobians)
    probes: dict                     # 'h', 'c', 'e': [layer] (K+1, W, D) leaves; 'x': (K+1, W, H)


def unroll(model, tokens: torch.Tensor, burn_in: int, weights: list | None = None,
           probe_values: dict | None = None, loss_fn=None) -> Unrolled:
    """Run the windows cell by cell in float64 with zero probes on every state.

    tokens: (W, B + K + 2) int64, the last token of each window its target. `weights`
    defaults to layer_weights(model); pass tensors that require grad to differentiate with
    respect to them. `probe_values` (tests: finite differences) replaces chosen zero
    probes, {('h', layer, t): tensor}. With `loss_fn` (a task's, task_loss_fn), `tokens`
    are the inputs (W, steps[, features]) and loss_fn maps the top layer's outputs
    (steps - burn_in, W, H) to one loss per window.
    """
    spec = model.spec
    weights = layer_weights(model) if weights is None else weights
    probe_values = probe_values or {}
    if loss_fn is None:
        inputs, target = tokens[:, :-1].t(), tokens[:, -1]
        decoder = (model.decoder.weight.detach().double(), model.decoder.bias.detach().double())

        def loss_fn(outputs):  # the next token after the last step
            return F.cross_entropy(F.linear(outputs[-1], *decoder), target, reduction="none")
    else:
        inputs = tokens.transpose(0, 1)
    n_windows, steps = tokens.shape[0], inputs.shape[0] - burn_in
    x = embed(model, inputs)

    def zero_state():
        zeros = x.new_zeros(n_windows, model.hidden_size)
        if spec.complex_state:
            zeros = torch.complex(zeros, zeros)
        return tuple(zeros.clone() if i else zeros for i in range(len(spec.states)))

    def probe(kind, layer, width):
        """One zero leaf (K+1, W, width) per kind and layer; step t adds its slice t.

        A single leaf per kind (sliced by unbind) keeps the graph small: its gradient
        is every step's gradient at once. A complex state's probes (and e's) are complex.
        """
        dtype = torch.complex128 if spec.complex_state and kind != "x" else x.dtype
        value = x.new_zeros(steps, n_windows, width, dtype=dtype)
        for (which, where, t), given in probe_values.items():
            if (which, where) == (kind, layer):
                value[t] = given
        return value.requires_grad_(True)

    # Burn-in: no gradient, from a zero state.
    prev_state, layer_input = [], x[:burn_in]
    with torch.no_grad():
        for w in weights:
            state = zero_state()
            if burn_in:
                projected = spec.project_input(w, layer_input)
                outputs = []
                for t in range(burn_in):
                    state = spec.step(w, projected[t], state)
                    outputs.append(state[0])
                layer_input = spec.layer_output(w, layer_input, torch.stack(outputs))
            prev_state.append(state)

    hidden_size, kinds = model.hidden_size, spec.states + ("e",)
    probes = {"x": probe("x", 0, hidden_size), **{kind: [] for kind in kinds}}
    layer_input = x[burn_in:] + probes["x"]
    hidden, prev_hidden, x_proj, states = [], [], [], []
    for layer, w in enumerate(weights):
        projected = spec.project_input(w, layer_input)
        # unbind: one backward node for all steps (indexing projected[t] would make
        # every step's backward write a zero tensor the size of all steps).
        projected_steps = projected.unbind(0)
        state = prev_state[layer]
        layer_probes = {kind: probe(kind, layer, len(spec.gates) * hidden_size if kind == "e" else hidden_size)
                        for kind in kinds}
        steps_of = {kind: leaf.unbind(0) for kind, leaf in layer_probes.items()}
        outputs, layer_states = [], []
        for t in range(steps):
            probed = set()

            def add_probe(name, value, t=t):  # a state the arch perturbs where it computes it
                probed.add(name)
                return value + steps_of[name][t]

            e = spec.recurrent_input(w, state[0]) + steps_of["e"][t]
            state = spec.update(w, projected_steps[t], state, e, add_probe)
            state = tuple(value if name in probed else value + steps_of[name][t]
                          for name, value in zip(spec.states, state))
            outputs.append(state[0])
            layer_states.append(tuple(value.detach() for value in state))
        for kind, leaf in layer_probes.items():
            probes[kind].append(leaf)
        hidden.append(outputs)
        prev_hidden.append(prev_state[layer][0])
        x_proj.append(projected.detach())
        states.append(layer_states)
        layer_input = spec.layer_output(w, layer_input, torch.stack(outputs))
    loss = loss_fn(layer_input)
    return Unrolled(loss, hidden, prev_hidden, prev_state, x_proj, states, probes)


# ---------------------------------------------------------------- the probe


def _norms_by_lag(grads) -> torch.Tensor:
    """(K+1, W, D) gradients (or a list of (W, D) by step t) -> (W, K+1) norms by lag k = K - t."""
    return torch.stack(list(grads)).norm(dim=-1).flip(0).t()


def flatten_state(state: tuple) -> torch.Tensor:
    """A state tuple as one real vector (..., S): the named states side by side; a complex one as (Re, Im)."""
    flat = torch.cat(state, dim=-1)
    return torch.cat([flat.real, flat.imag], dim=-1) if flat.is_complex() else flat


def step_jacobians_autograd(arch: str, weights: dict, prev_states, x_proj: torch.Tensor) -> torch.Tensor:
    """Per-step Jacobians by torch.func (vmap of jacrev of one step of the arch's step function):
    the probe's path for an arch without a closed form, and what closed forms are tested against."""
    spec = archs.get(arch)

    def as_complex(flat):
        half = flat.shape[-1] // 2
        return torch.complex(flat[..., :half], flat[..., half:])

    def step(s, xp):  # real vectors in and out: jacrev takes real inputs only
        s = as_complex(s) if spec.complex_state else s
        xp = as_complex(xp) if input_complex else xp
        return flatten_state(spec.step(weights, xp, tuple(s.chunk(len(spec.states), dim=-1))))

    input_complex = x_proj.is_complex()
    if input_complex:
        x_proj = torch.cat([x_proj.real, x_proj.imag], dim=-1)
    return torch.func.vmap(torch.func.jacrev(step))(prev_states, x_proj)


def step_jacobians(arch: str, weights: dict, prev_states, x_proj: torch.Tensor) -> torch.Tensor:
    """Per-step Jacobians d s_t / d s_{t-1} of one layer, (N, S, S), S = H x named states (x 2 if complex).

    prev_states: (N, S) flattened states s_{t-1} (flatten_state); x_proj: (N, G*H) input
    projections of step t. The arch's closed form where it gives one (far cheaper than
    jacrev, which tests check it against), else torch.func's (step_jacobians_autograd).
    """
    closed = archs.get(arch).step_jacobian(weights, prev_states, x_proj)
    return closed if closed is not None else step_jacobians_autograd(arch, weights, prev_states, x_proj)


def jacobian_products(jacobians: torch.Tensor) -> torch.Tensor:
    """log10 ||J_T J_{T-1} ... J_{T-k+1}||_2 for k = 0..K from (W, K+1, S, S), t-ordered.

    The running product is divided by its norm every step (the log of the scale is
    kept), so the result neither underflows nor overflows. A product that becomes
    exactly zero (saturated gates, ReLU units all off) stays zero at every larger lag:
    log10 = -inf, censored like an underflowed gradient. A non-finite one (non-finite
    Jacobian entries) gives +inf from there on.
    """
    n_windows, steps, size, _ = jacobians.shape
    product = torch.eye(size, dtype=jacobians.dtype).expand(n_windows, size, size)
    log10_scale = torch.zeros(n_windows, dtype=jacobians.dtype)
    out = [log10_scale.clone()]
    for k in range(1, steps):
        product = product @ jacobians[:, steps - k]
        finite = torch.isfinite(product).flatten(1).all(dim=1)
        # The SVD fails on NaN: a window whose product is no longer finite is frozen at zero.
        product = torch.where(finite[:, None, None], product, torch.zeros_like(product))
        norm = torch.linalg.matrix_norm(product, ord=2)
        alive = finite & (norm > 0)
        step_scale = torch.where(alive, log10_scale + torch.log10(torch.where(alive, norm, 1.0)),
                                 torch.where(finite, -math.inf, math.inf))
        log10_scale = torch.where(torch.isfinite(log10_scale), step_scale, log10_scale)  # censored stays so
        product = product / torch.where(alive, norm, 1.0)[:, None, None]
        out.append(log10_scale.clone())
    return torch.stack(out, dim=1)


def probe_model(model, windows: np.ndarray, burn_in: int, jacobian_windows: int = 0,
                chunk_size: int = 128, task: dict | None = None, targets: np.ndarray | None = None
                ) -> dict[str, np.ndarray]:
    """Probe one model on token windows (W, B + K + 2), or, with `task` ({'name', 'copy_length'}),
    on task sequences `windows` (W, steps[, features]) with their `targets` (task_loss_fn).

    Returns float64 arrays indexed [layer, window, lag] (lag k = 0..K): 'h', 'c' (LSTM),
    'contributions' (||dL_T/dW_hh part from step T-k||_F), 'x' [window, lag] and 'loss'
    [window]; plus 'jacobian' [layer, window, lag] as log10 ||dh_T/dh_{T-k}||_2 and
    'step_jacobian' [layer, n] per-step norms on the first `jacobian_windows` windows
    (at most `chunk_size`).
    Windows are processed in chunks (one forward + one backward each) to bound memory.
    """
    model = model.cpu().eval()
    arch, n_layers = model.arch, model.num_layers
    weights = layer_weights(model)
    tokens = torch.as_tensor(windows)  # int64 tokens, or a task's real inputs
    keys = model.spec.states + ("contributions",)
    parts = {key: [] for key in keys + ("x", "loss")}
    jacobian_unrolled = None
    for start in range(0, len(tokens), chunk_size):
        loss_fn = None if task is None else task_loss_fn(model, task["name"],
                                                         torch.as_tensor(targets[start:start + chunk_size]))
        unrolled = unroll(model, tokens[start:start + chunk_size], burn_in, weights, loss_fn=loss_fn)
        leaves = [unrolled.probes["x"]] + [leaf for kind in keys[:-1] + ("e",) for leaf in unrolled.probes[kind]]
        # The one backward pass.
        grads = iter(torch.autograd.grad(unrolled.loss.sum(), leaves))
        parts["x"].append(_norms_by_lag(next(grads)))
        for kind in keys[:-1]:
            parts[kind].append(torch.stack([_norms_by_lag(next(grads)) for _ in range(n_layers)]))
        contributions = []
        for layer in range(n_layers):
            e_grads = next(grads)
            h_prev = torch.stack([unrolled.prev_hidden[layer]] + [h.detach() for h in unrolled.hidden[layer][:-1]])
            if model.spec.diagonal:  # the step's part of dL/du is e-gradient * h_prev, unit by unit
                contributions.append(_norms_by_lag(e_grads * h_prev.conj()))
            else:  # rank one: ||e-gradient|| ||h_prev||
                contributions.append(_norms_by_lag(e_grads) * _norms_by_lag(h_prev))
        parts["contributions"].append(torch.stack(contributions))
        parts["loss"].append(unrolled.loss.detach())
        if start == 0 and jacobian_windows:
            jacobian_unrolled = unrolled
    # Per-layer arrays are (layers, windows, lags): chunks join on the windows axis.
    result = {key: torch.cat(value, dim=0 if key in ("x", "loss") else 1).numpy() for key, value in parts.items()}
    if jacobian_unrolled is not None:
        result.update(_probe_jacobians(arch, weights, jacobian_unrolled, min(jacobian_windows, chunk_size)))
    return result


def _probe_jacobians(arch: str, weights: list, unrolled: Unrolled, n_windows: int,
                     windows_per_chunk: int = 4) -> dict[str, np.ndarray]:
    """Jacobian products and per-step norms of every layer, a few windows at a time
    (an LSTM's (K+1) x 2H x 2H Jacobians per window are large)."""
    products, step_norms = [], []
    for layer, w in enumerate(weights):
        def flat(state):
            return flatten_state(state)[:n_windows]

        prev = torch.stack([flat(unrolled.prev_state[layer])] + [flat(s) for s in unrolled.states[layer][:-1]], dim=1)
        x_proj = unrolled.x_proj[layer][:, :n_windows].transpose(0, 1)
        layer_products, layer_norms = [], []
        for start in range(0, n_windows, windows_per_chunk):
            chunk_prev, chunk_x = prev[start:start + windows_per_chunk], x_proj[start:start + windows_per_chunk]
            windows, steps = chunk_prev.shape[:2]
            jac = step_jacobians(arch, w, chunk_prev.flatten(0, 1), chunk_x.flatten(0, 1))
            jac = jac.view(windows, steps, *jac.shape[1:])
            layer_norms.append(torch.linalg.matrix_norm(jac, ord=2).flatten())
            layer_products.append(jacobian_products(jac))
        step_norms.append(torch.cat(layer_norms))
        products.append(torch.cat(layer_products))
    return {"jacobian": torch.stack(products).numpy(), "step_jacobian": torch.stack(step_norms).numpy()}


# ---------------------------------------------------------------- censored statistics


def censored_log10(values: np.ndarray) -> np.ndarray:
    """log10 of norms; 0 (underflow) -> -inf, overflow or NaN -> +inf (both censored)."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(values)
    logs[np.isnan(logs)] = np.inf
    return logs


def _quantile_signed(logs: np.ndarray, q: float) -> np.ndarray:
    """Linear-interpolated quantile over axis 0 of logs that may hold +-inf.

    Returns -inf / +inf where the quantile falls on (or interpolates with) an
    underflowed / overflowed value, NaN where it would mix both.
    """
    ordered = np.sort(logs, axis=0)
    position = q * (ordered.shape[0] - 1)
    lo, hi = math.floor(position), math.ceil(position)
    frac = position - lo
    a, b = ordered[lo], ordered[hi]
    if frac == 0:
        return a.copy()
    low, high = a == -np.inf, b == np.inf
    with np.errstate(invalid="ignore"):
        out = a + frac * (b - a)
    return np.where(low & high, np.nan, np.where(low, -np.inf, np.where(high, np.inf, out)))


def censored_quantile(logs: np.ndarray, q: float) -> np.ndarray:
    """Quantile over axis 0; NaN where it falls on a censored value."""
    out = _quantile_signed(logs, q)
    return np.where(np.isfinite(out), out, np.nan)


def log10_mean(logs: np.ndarray) -> np.ndarray:
    """log10 of the mean of 10**logs over axis 0, every window counted.

    An underflowed window (-inf) is a value below float64's smallest, so it adds (next
    to) nothing to the sum but counts in the denominator: the mean stays exact. An
    overflowed window (+inf) makes the mean unknown (NaN), and so does a mean of
    underflowed windows only (it is below what float64 holds).
    """
    finite = np.isfinite(logs)
    peak = np.max(np.where(finite, logs, -np.inf), axis=0)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore", over="ignore"):
        total = np.sum(np.where(finite, 10.0 ** (np.where(finite, logs, 0.0) - peak), 0.0), axis=0)
        out = peak + np.log10(total) - np.log10(logs.shape[0])
    overflow = (logs == np.inf).any(axis=0)
    return np.where(overflow | ~finite.any(axis=0), np.nan, out)


def normalise(logs: np.ndarray) -> np.ndarray:
    """logs minus each window's lag-0 log; censored stays censored."""
    reference = logs[:, 0]
    normalised = logs - reference[:, None]
    normalised[~np.isfinite(reference)] = np.inf  # nothing to divide by: censored
    normalised[np.isnan(normalised)] = np.inf
    return normalised


def curve_stats(logs: np.ndarray) -> dict[str, np.ndarray]:
    """Per-lag statistics of (windows, lags) log10 norms, raw and normalised (see normalise)."""
    normalised = normalise(logs)
    stats = {"n": np.full(logs.shape[1], logs.shape[0]), "n_censored": (~np.isfinite(logs)).sum(axis=0),
             "n_underflow": (logs == -np.inf).sum(axis=0)}
    for prefix, values in (("", logs), ("norm_", normalised)):
        stats[f"{prefix}log10_mean"] = log10_mean(values)
        stats[f"{prefix}log10_median"] = censored_quantile(values, 0.5)
        stats[f"{prefix}log10_q25"] = censored_quantile(values, 0.25)
        stats[f"{prefix}log10_q75"] = censored_quantile(values, 0.75)
    return stats


def fit_slope(lags: np.ndarray, values: np.ndarray, first: int, last: int) -> dict:
    """OLS slope (per step) of values vs lags over [first, last], finite values only.

    Returns slope, its standard error and the first/last lag actually used (a median
    that is censored inside the range shortens it).
    """
    keep = (lags >= first) & (lags <= last) & np.isfinite(values)
    x, y = lags[keep].astype(np.float64), values[keep]
    if len(x) < 2:
        return {"slope": np.nan, "slope_se": np.nan, "fit_first": np.nan, "fit_last": np.nan}
    dx = x - x.mean()
    sxx = float(dx @ dx)
    slope = float(dx @ (y - y.mean())) / sxx
    residuals = y - y.mean() - slope * dx
    se = math.sqrt(float(residuals @ residuals) / (len(x) - 2) / sxx) if len(x) > 2 else np.nan
    return {"slope": slope, "slope_se": se, "fit_first": int(x[0]), "fit_last": int(x[-1])}


def gradient_horizon(logs: np.ndarray, threshold: float) -> tuple[int, bool]:
    """First lag k >= 1 where the median of g(k)/g(0) is below `threshold`.

    A median that falls on underflowed values counts as below. Never: (K, True).
    """
    normalised = normalise(logs)
    median = _quantile_signed(normalised, 0.5)
    below = np.nonzero(median[1:] < math.log10(threshold))[0]
    if len(below):
        return int(below[0]) + 1, False
    return logs.shape[1] - 1, True


# ---------------------------------------------------------------- per-checkpoint tables


def dependency_stats(logs: np.ndarray, lags: np.ndarray) -> dict:
    """The normalised curve read at each window's own dependency lag: log10 g(lag_w)/g(0), window by window.

    logs: (windows, lags) log10 norms of the first windows of a probe; lags: (>= windows,)
    per-window lags. Returns the median over windows (NaN when it falls on a censored
    value), the windows counted, censored and underflowed there, and the lags' range.
    """
    lags = np.asarray(lags)[:logs.shape[0]]
    at_lag = normalise(logs)[np.arange(logs.shape[0]), lags]
    return {"lag_median": float(np.median(lags)), "lag_min": int(lags.min()), "lag_max": int(lags.max()),
            "n": len(at_lag), "norm_log10_median": float(censored_quantile(at_lag[:, None], 0.5)[0]),
            "n_censored": int((~np.isfinite(at_lag)).sum()), "n_underflow": int((at_lag == -np.inf).sum())}


def summarise_probe(result: dict, model, probe_config: dict, dependencies: dict[str, np.ndarray] | None = None
                    ) -> dict[str, pd.DataFrame]:
    """Tidy tables (without run keys) of one checkpoint's probe result.

    With `dependencies` (task runs: tasks.dependency_lags of the probed windows, the
    headline first), each summary row also has dependency_stats of its curve: the headline
    as `dep_*` with its name in `dependency` (adding: first_marker; copy: last_symbol), the
    others as `{name}_*` (adding: second_marker_*). `bound_rate` = log10(gamma sigma_max) where
    Pascanu's bound applies to the row: the probe's loss is one output step's, and the bound
    holds for h of the top layer (a lower layer's h also reaches the loss through the layers
    above) and for every layer's loss-free Jacobian product.
    """
    arch = model.arch
    first, last = probe_config["fit_lags"]
    threshold = probe_config["horizon_threshold"]
    gamma = model.spec.gamma
    spectra = [spectral_stats(w, arch) for w in model.recurrent_weights()]
    top = model.num_layers - 1
    curves, summary, contributions, jacobians = [], [], [], []

    # (layer, state, log10 norms [window, lag]).
    series = [(layer, state, censored_log10(result[state][layer]))
              for state in model.spec.states for layer in range(model.num_layers)]
    series.append((0, "x", censored_log10(result["x"])))
    if "jacobian" in result:
        series += [(layer, "jacobian", result["jacobian"][layer]) for layer in range(model.num_layers)]

    for layer, state, logs in series:
        lags = np.arange(logs.shape[1])
        stats = curve_stats(logs)
        curves.append(pd.DataFrame({"layer": layer, "state": state, "lag": lags, **stats}))
        horizon, censored = gradient_horizon(logs, threshold)
        sigma, radius = spectra[layer]["sigma_max"], spectra[layer]["spectral_radius"]
        bounded = gamma is not None and sigma > 0 and (state == "jacobian" or (state == "h" and layer == top))
        summary.append({
            "layer": layer, "state": state, **fit_slope(lags, stats["log10_median"], first, last),
            "horizon": horizon, "horizon_censored": censored, "sigma_max": sigma, "spectral_radius": radius,
            "gamma": gamma, "bound_rate": math.log10(gamma * sigma) if bounded else None,
        })
        for i, (name, dependency_lags) in enumerate((dependencies or {}).items()):
            prefix = "dep" if i == 0 else name
            if i == 0:
                summary[-1]["dependency"] = name
            summary[-1].update({f"{prefix}_{key}": value
                                for key, value in dependency_stats(logs, dependency_lags).items()})

    for layer in range(model.num_layers):
        values = result["contributions"][layer]
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = values / values.sum(axis=1, keepdims=True)
        shares[~np.isfinite(shares)] = np.inf  # no finite total: censored
        contributions.append(pd.DataFrame({
            "layer": layer, "lag": np.arange(values.shape[1]),
            "log10_median": censored_quantile(censored_log10(values), 0.5),
            "share_median": censored_quantile(shares, 0.5),
        }))
        if "step_jacobian" in result:
            norms = result["step_jacobian"][layer]
            q = np.quantile(norms, [0.05, 0.25, 0.5, 0.75, 0.95])
            jacobians.append({
                "layer": layer, "q05": q[0], "q25": q[1], "median": q[2], "q75": q[3], "q95": q[4],
                "max": norms.max(), "bound": gamma * spectra[layer]["sigma_max"] if gamma is not None else None,
            })
    return {
        "curves": pd.concat(curves, ignore_index=True),
        "summary": pd.DataFrame(summary),
        "contributions": pd.concat(contributions, ignore_index=True),
        "jacobians": pd.DataFrame(jacobians, columns=["layer", "q05", "q25", "median", "q75", "q95", "max", "bound"]),
    }


def task_windows(hparams: dict, windows: int) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """A task run's probe input: (the first `windows` sequences of its test set, their targets,
    probe_model's `task`, their dependency lags), rebuilt from a checkpoint's hparams."""
    shape = {key: hparams[key] for key in ("copy_length", "copy_symbols") if key in hparams}
    inputs, targets = tasks.eval_set(hparams["task"], hparams["T"], "test", hparams["test_size"], hparams["data_seed"],
                                     **shape)
    inputs, targets = inputs[:windows], targets[:windows]
    return inputs, targets, {"name": hparams["task"], **shape}, tasks.dependency_lags(hparams["task"], inputs,
                                                                                      hparams["T"], **shape)


def probe_run(checkpoint_dir, tokens_path, probe_config: dict, outputs: dict, threads: int = 1) -> dict:
    """Probe every checkpoint of one run; write the four per-run CSVs.

    outputs: {'curves', 'summary', 'contributions', 'jacobians'} -> path. Checkpoints
    whose weights are not finite (a diverged run) are skipped with a message. A task
    run (its checkpoints' hparams name a task) is probed on its test sequences
    (task_windows; `tokens_path` is not read). Returns the tables as DataFrames.
    """
    torch.set_num_threads(threads)
    tables = {name: [] for name in TABLES}
    paths = sorted(Path(checkpoint_dir).glob("step_*.pt"))
    if not paths:
        raise FileNotFoundError(f"no checkpoints step_*.pt in {checkpoint_dir}")
    windows = None
    for path in paths:
        model, checkpoint = load_checkpoint(path)
        if windows is None:  # the same windows for every checkpoint of the run
            if "task" in checkpoint["hparams"]:
                windows, targets, task, dependency = task_windows(checkpoint["hparams"], probe_config["windows"])
                burn_in = 0
            else:
                burn_in, targets, task, dependency = probe_config["burn_in"], None, None, None
                windows = make_windows(np.load(tokens_path), probe_config["windows"], burn_in,
                                       probe_config["max_lag"], probe_config["seed"])
        # The weights the model runs with: finite parameters can still give a non-finite
        # materialised W_hh (orthogonal RNN: base expm(A)) or lambda (LRU: exp(i exp(theta_log))).
        running = list(model.plain_state_dict().values()) + [w.detach() for w in model.recurrent_weights()]
        if not all(torch.isfinite(w).all() for w in running):
            print(f"{path.name}: weights are not finite (diverged); not probed", flush=True)
            continue
        result = probe_model(model, windows, burn_in, probe_config["jacobian_windows"], task=task, targets=targets)
        keys = {**run_columns(checkpoint["hparams"]), "step": checkpoint["step"],
                "tokens_seen": checkpoint["tokens_seen"], "progress": checkpoint.get("progress")}
        print(f"{path.name}: median loss {np.median(result['loss']):.3f}", flush=True)
        for name, frame in summarise_probe(result, model, probe_config, dependency).items():
            wanted = keys if name in ("curves", "summary") else {k: v for k, v in keys.items() if k != "tokens_seen"}
            frame = frame.copy()
            for column, value in reversed(list(wanted.items())):
                frame.insert(0, column, [value] * len(frame))
            tables[name].append(frame)
    frames = {name: pd.concat(parts, ignore_index=True) if parts else pd.DataFrame() for name, parts in tables.items()}
    for name in TABLES:
        write_csv(outputs[name], frames[name])
    return frames
