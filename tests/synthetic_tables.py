"""Synthetic tidy tables with the columns of the real pipeline, for testing figures and tables.

The values follow the physics the probe measures (issue 4): at initialisation the
fitted slope of log10 g(k) tracks log10(gamma * lambda_1) of W_hh, after training the
vanilla RNNs decay far faster than the LSTM and GRU, and curves below `floor` are
censored (NaN with n_censored = n) as the probe reports underflow. Diverged runs stop
early, with NaN perplexities and an infinite last gradient norm. The remedies (orthogonal
RNN, IndRNN, LRU, minGRU) have no init scale: lambda_1 is their constraint's (1, bound^(1/bptt),
r_max), fixed during training, and their curves decay slowly under their bound.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rnngrad.grid import NOT_APPLICABLE, expand_grid, run_path

GAMMA = {"rnn_tanh": 1.0, "rnn_sigmoid": 0.25, "rnn_relu": 1.0, "irnn": 1.0}
# lambda_1 of the remedies (gamma = 1): orthogonal, IndRNN 2^(1/20) at bptt 20, LRU r_max; expRNN orthogonal,
# minGRU's identity and the S6's bound 1 on |exp(Delta A)|.
REMEDY_SIGMA = {"orthogonal_rnn": 1.0, "indrnn": 2.0 ** (1 / 20), "lru": 0.99, "exprnn": 1.0, "mingru": 1.0, "s6": 1.0}
# Slope offset below the bound at initialisation, and slope after training (log10 per step).
INIT_OFFSET = {"rnn_tanh": -0.12, "rnn_sigmoid": -0.05, "rnn_relu": -0.08, "irnn": -0.03,
               "orthogonal_rnn": -0.06, "indrnn": -0.04, "lru": -0.02}
GATED_INIT = {"gru": -0.21}
TRAINED = {"rnn_tanh": -0.5, "rnn_sigmoid": -1.2, "rnn_relu": -0.4, "irnn": -0.3, "lstm": -0.03, "gru": -0.05,
           "orthogonal_rnn": -0.12, "indrnn": -0.08, "lru": -0.02}
PPL = {"rnn_tanh": 210, "rnn_sigmoid": 400, "rnn_relu": 230, "irnn": 220, "lstm": 150, "gru": 160,
       "orthogonal_rnn": 200, "indrnn": 190, "lru": 140}

DEFAULT_GRID = {
    "arch": ["rnn_tanh", "rnn_sigmoid", "lstm", "gru", "orthogonal_rnn", "indrnn", "lru"],
    "hidden_size": [32, 64],
    "num_layers": [1],
    "init": ["orthogonal"],
    "init_scale": [0.5, 1.0, 1.5],
    "forget_bias": [0.0, 1.0],
    "indrnn_bound": [2.0],
    "lru_r_min": [0.0],
    "lru_r_max": [0.99],
    "lr": [1.0],
    "optimizer": ["sgd"],
    "clip": [5.0, None],
    "bptt": [20],
    "batch_size": [8],
    "epochs": [3],
    "seed": [0, 1],
}


def _diverges(cell: dict) -> bool:
    """Exploding regime without clipping: the usual way a run diverges."""
    return cell["arch"] in GAMMA and cell["init_scale"] >= 1.5 and cell["clip"] is None


def _scale(cell: dict) -> float:
    """lambda_1 at initialisation: the init scale, or a remedy's constraint (1 for an arch with its own
    init and no constraint, such as LEM)."""
    return REMEDY_SIGMA.get(cell["arch"]) or (1.0 if cell["init_scale"] == NOT_APPLICABLE else cell["init_scale"])


def _init_slope(cell: dict, sigma: float) -> float:
    arch = cell["arch"]
    if arch == "lstm":
        return -0.09 if float(cell["forget_bias"]) >= 1 else -0.22
    if arch in GATED_INIT:
        return GATED_INIT[arch]
    return math.log10(GAMMA.get(arch, 1.0) * sigma) + INIT_OFFSET.get(arch, -0.1)  # any other arch: a vanilla's


def make_tables(grid: dict | None = None, max_lag: int = 30, steps: int = 200,
                checkpoints=(0.0, 0.25, 0.5, 1.0), windows: int = 8, floor: float = -40.0,
                fit_lags=(1, 20), diverge=_diverges, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Every table of `results/tables/` for `grid` (lists per grid key)."""
    grid = {**DEFAULT_GRID, **(grid or {})}
    rng = np.random.default_rng(seed)
    rows = {name: [] for name in ("runs", "epochs", "training_steps", "gradient_curves",
                                  "gradient_summary", "temporal_contributions", "jacobian_steps")}
    lags = np.arange(max_lag + 1)
    for cell in expand_grid(grid):
        run = run_path(cell)
        keys = {"run": run, **cell}
        arch = cell["arch"]
        vanilla = arch in GAMMA
        bounded = vanilla or arch in REMEDY_SIGMA  # Pascanu's bound applies
        scale = _scale(cell)
        diverged = diverge(cell)
        diverged_step = int(0.6 * steps) if diverged else None
        last_step = diverged_step - 1 if diverged else steps
        seed_noise = rng.normal(0, 0.01)

        # Training: per-step metrics and per-epoch validation.
        grad = np.exp(rng.normal(0.5, 0.4, steps)) * (1 + scale)
        if diverged:
            grad = grad * np.exp(np.linspace(0, 30, steps))
            grad[diverged_step - 1:] = np.inf
        clip = cell["clip"]
        for step in range(1, last_step + 1):
            row = {**keys, "step": step, "epoch": 1 + (step - 1) * cell["epochs"] // steps,
                   "tokens": step * cell["bptt"] * cell["batch_size"],
                   "train_loss": 6 - 1.5 * step / steps, "grad_norm": grad[step - 1],
                   "clipped": int(clip is not None and grad[step - 1] > clip), "current_lr": cell["lr"],
                   "wall_s": 0.01 * step}
            for layer in range(cell["num_layers"]):
                spectral = step % 5 == 0
                growth = 0.0 if arch in REMEDY_SIGMA else step / steps  # the remedies' constraint holds
                row[f"sigma_max_l{layer}"] = scale * (1 + 0.3 * growth) if spectral else np.nan
                row[f"spectral_radius_l{layer}"] = scale * (1 + 0.2 * growth) if spectral else np.nan
            rows["training_steps"].append(row)
        final_ppl = PPL.get(arch, 200) * (1 + 0.2 * abs(math.log(scale))) * (1 + rng.normal(0, 0.02))
        for epoch in range(1, cell["epochs"] + 1):
            failed = diverged and epoch * steps / cell["epochs"] > diverged_step
            valid = np.nan if failed else final_ppl * (1 + 0.8 / epoch)
            rows["epochs"].append({**keys, "epoch": epoch, "step": epoch * steps // cell["epochs"],
                                   "tokens": epoch * steps // cell["epochs"] * cell["bptt"] * cell["batch_size"],
                                   "current_lr": cell["lr"], "train_loss": math.log(final_ppl) + 0.3 / epoch,
                                   "valid_loss": math.log(valid), "valid_ppl": valid})
        clipped = [r["clipped"] for r in rows["training_steps"] if r["run"] == run]
        rows["runs"].append({
            **keys, "status": "diverged" if diverged else "ok", "diverged_step": diverged_step,
            "steps": last_step, "tokens_seen": last_step * cell["bptt"] * cell["batch_size"],
            "train_loss": math.log(final_ppl) + 0.1,
            "valid_ppl": np.nan if diverged else final_ppl * 1.05,
            "best_valid_ppl": np.nan if diverged else final_ppl * 1.05,
            "test_ppl": np.nan if diverged else final_ppl, "tokens_per_s": 5000.0, "wall_s": 10.0,
            "clipped_fraction": float(np.mean(clipped)) if clipped else 0.0,
        })

        # Probe: every checkpoint saved before divergence.
        for progress in checkpoints:
            step = int(round(progress * steps))
            if diverged and step >= diverged_step:
                continue
            for layer in range(cell["num_layers"]):
                sigma = scale * (1 + 0.3 * (0.0 if arch in REMEDY_SIGMA else progress))
                init = _init_slope(cell, scale)
                slope = init + progress * (TRAINED.get(arch, -0.2) - init) + seed_noise
                gamma = GAMMA.get(arch, 1.0 if bounded else None)
                bound_rate = math.log10(gamma * sigma) if bounded else np.nan
                if bounded:  # the bound holds: measured slope never exceeds it
                    slope = min(slope, bound_rate - 0.01)
                states = ["h", "x", "jacobian"] + (["c"] if arch == "lstm" else [])
                for state in states:
                    s = slope * (0.3 if state == "c" else 1.0)
                    median = s * lags - 0.02 * np.sqrt(lags)
                    spread = 0.1 + 0.05 * np.sqrt(lags)
                    censored = median < floor
                    # each state has its own lag-0 norm (the LSTM's c too: dL_T/dc_T is the total
                    # derivative, non-zero) and norm_* is normalised by it
                    g0 = {"h": -1.5, "c": -1.1, "x": -2.0, "jacobian": 0.0}[state]
                    for k in lags:
                        nan = censored[k]
                        val = lambda v: np.nan if nan else v  # noqa: E731
                        rows["gradient_curves"].append({
                            **keys, "step": step, "tokens_seen": step * cell["bptt"] * cell["batch_size"],
                            "progress": progress, "layer": layer, "state": state, "lag": int(k),
                            "n": windows, "n_censored": windows if nan else 0,
                            "log10_mean": val(g0 + median[k] + 0.2), "log10_median": val(g0 + median[k]),
                            "log10_q25": val(g0 + median[k] - spread[k]), "log10_q75": val(g0 + median[k] + spread[k]),
                            "norm_log10_mean": val(median[k] + 0.2), "norm_log10_median": val(median[k]),
                            "norm_log10_q25": val(median[k] - spread[k]), "norm_log10_q75": val(median[k] + spread[k]),
                        })
                    below = np.nonzero(median < -3)[0]
                    horizon = int(below[0]) if below.size else max_lag
                    rows["gradient_summary"].append({
                        **keys, "step": step, "tokens_seen": step * cell["bptt"] * cell["batch_size"],
                        "progress": progress, "layer": layer, "state": state, "slope": s, "slope_se": 0.003,
                        "fit_first": fit_lags[0], "fit_last": fit_lags[1], "horizon": horizon,
                        "horizon_censored": not below.size, "sigma_max": sigma, "spectral_radius": 0.9 * sigma,
                        "gamma": gamma if bounded else np.nan, "bound_rate": bound_rate,
                    })
                shares = 10.0 ** (slope * lags)
                shares = shares / shares.sum()
                for k in lags:
                    rows["temporal_contributions"].append({
                        **keys, "step": step, "progress": progress, "layer": layer, "lag": int(k),
                        "log10_median": math.log10(shares[k]) - 1 if shares[k] > 0 else np.nan,
                        "share_median": shares[k]})
                per_step = (gamma if bounded else 1.0) * sigma
                rows["jacobian_steps"].append({
                    **keys, "step": step, "progress": progress, "layer": layer,
                    "q05": 0.3 * per_step, "q25": 0.5 * per_step, "median": 0.6 * per_step,
                    "q75": 0.7 * per_step, "q95": 0.8 * per_step, "max": 0.9 * per_step,
                    "bound": per_step if bounded else np.nan})
    return {name: pd.DataFrame(table) for name, table in rows.items()}


def write_tables(tables: dict[str, pd.DataFrame], directory) -> dict[str, str]:
    """Write the tables as the pipeline does; return name -> path."""
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in tables.items():
        paths[name] = str(directory / f"{name}.csv")
        frame.to_csv(paths[name], index=False)
    return paths


__all__ = ["make_tables", "write_tables"]
