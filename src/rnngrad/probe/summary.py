"""One checkpoint's probe result as tidy tables: curves, the summary (slopes, horizons, the theory
beside them, the dependency lags of a task run), temporal contributions and step Jacobians."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rnngrad.model import spectral_stats
from rnngrad.probe.statistics import (
    censored_log10,
    censored_quantile,
    curve_stats,
    dependency_stats,
    fit_slope,
    gradient_horizon,
)

TABLES = ("curves", "summary", "contributions", "jacobians")


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
