"""Loss-free Jacobian products ||dh_T/dh_{T-k}||_2 and per-step norms: closed forms where the arch
gives one, torch.func's jacrev where it does not."""

from __future__ import annotations

import math

import numpy as np
import torch

from rnngrad import archs
from rnngrad.probe.unroll import Unrolled


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
    """Per-step Jacobians d s_t / d s_{t-1} of one layer, (N, S, S), S = state width x named states (x 2 if
    complex); or their diagonals (N, S), where the arch's closed form says the Jacobian is diagonal (the S6).

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


def diagonal_jacobian_products(diagonals: torch.Tensor) -> torch.Tensor:
    """jacobian_products of diagonal Jacobians, given their diagonals (W, K+1, S), t-ordered: exactly
    log10 max_i |prod_k d_ik|, each unit's product summed in log space (no under- or overflow).

    Censored as jacobian_products censors: a product that is exactly zero in every unit gives -inf
    from then on, a non-finite factor +inf from then on, whichever comes first.
    """
    factors = diagonals[:, 1:].flip(1)  # lag k multiplies in the Jacobian of step T-k+1, k = 1..K
    finite = torch.isfinite(factors)
    logs = torch.where(finite, torch.log10(factors.abs()), 0.0)  # an exact zero: -inf, and so it stays
    products = torch.cumsum(logs, dim=1).amax(dim=-1)
    broken = (~finite).any(dim=-1).cummax(dim=1).values
    dead_first = ((products == -math.inf) & ~broken).cummax(dim=1).values
    products = torch.where(dead_first, -math.inf, torch.where(broken, math.inf, products))
    return torch.cat([products.new_zeros(len(products), 1), products], dim=1)  # lag 0: ||I|| = 1


def layer_jacobians(arch: str, weights: list, unrolled: Unrolled, n_windows: int,
                     windows_per_chunk: int = 4) -> dict[str, np.ndarray]:
    """Jacobian products and per-step norms of every layer, a few windows at a time
    (an LSTM's (K+1) x 2H x 2H Jacobians per window are large). A diagonal Jacobian's norm is
    its largest |entry|."""
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
            if jac.dim() == 3:  # diagonals (windows, steps, S)
                layer_norms.append(jac.abs().amax(dim=-1).flatten())
                layer_products.append(diagonal_jacobian_products(jac))
            else:
                layer_norms.append(torch.linalg.matrix_norm(jac, ord=2).flatten())
                layer_products.append(jacobian_products(jac))
        step_norms.append(torch.cat(layer_norms))
        products.append(torch.cat(layer_products))
    return {"jacobian": torch.stack(products).numpy(), "step_jacobian": torch.stack(step_norms).numpy()}
