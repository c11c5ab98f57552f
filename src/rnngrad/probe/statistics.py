"""Censored statistics of log10 norms: an underflow (0) is -inf, an overflow or NaN +inf; both are
counted, left out of means, and a quantile that falls on one is NaN, never log10(0)."""

from __future__ import annotations

import math

import numpy as np

CURVE_STATS = ("n", "n_censored", "n_underflow", "log10_mean", "log10_median", "log10_q25", "log10_q75",
               "norm_log10_mean", "norm_log10_median", "norm_log10_q25", "norm_log10_q75")


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
