"""g(k) = ||dL_T/dh_{T-k}|| of every named state, the input sensitivity and the temporal
contributions at every lag, from ONE backward pass per chunk of windows."""

from __future__ import annotations

import numpy as np
import torch

from rnngrad.probe.jacobians import layer_jacobians
from rnngrad.probe.unroll import layer_weights, task_loss_fn, unroll


def _norms_by_lag(grads) -> torch.Tensor:
    """(K+1, W, D) gradients (or a list of (W, D) by step t) -> (W, K+1) norms by lag k = K - t."""
    return torch.stack(list(grads)).norm(dim=-1).flip(0).t()


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
        result.update(layer_jacobians(arch, weights, jacobian_unrolled, min(jacobian_windows, chunk_size)))
    return result
