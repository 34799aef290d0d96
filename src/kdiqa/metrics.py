"""The standard NR-IQA evaluation protocol: SRCC, KRCC, PLCC and RMSE after the VQEG 4-parameter
logistic mapping, and bootstrap confidence intervals. Statistics come from scipy."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, stats


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic: (β1 − β2) / (1 + exp(−(x − β3) / |β4|)) + β2."""
    z = np.clip(-(np.asarray(x, np.float64) - b3) / (np.abs(b4) + 1e-12), -500, 500)
    return (b1 - b2) / (1 + np.exp(z)) + b2


def fit_logistic(pred: np.ndarray, mos: np.ndarray) -> np.ndarray:
    """Least-squares fit of :func:`logistic4` mapping predictions to MOS; returns β."""
    pred, mos = np.asarray(pred, np.float64), np.asarray(mos, np.float64)
    sign = 1.0 if stats.spearmanr(pred, mos)[0] >= 0 else -1.0
    # Start: β1/β2 the MOS extremes (ordered by the correlation sign), β3 the median prediction.
    p0 = [mos.max(), mos.min(), np.median(pred), max(pred.std(), 1e-6)]
    if sign < 0:
        p0[0], p0[1] = p0[1], p0[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            beta, _ = optimize.curve_fit(logistic4, pred, mos, p0=p0, maxfev=20000)
    except RuntimeError:
        beta = np.asarray(p0)  # no convergence: the start is already a monotone mapping
    return beta


def srcc(pred, mos) -> float:
    return float(stats.spearmanr(pred, mos)[0])


def krcc(pred, mos) -> float:
    return float(stats.kendalltau(pred, mos)[0])


def plcc(pred, mos, fit: bool = True) -> float:
    """Pearson correlation, after the 4-parameter logistic mapping when ``fit``.

    The fitted mapping may be decreasing; the sign of the result then follows the rank correlation,
    so a predictor of DMOS-like scores reads negative on both SRCC and PLCC.
    """
    pred, mos = np.asarray(pred, np.float64), np.asarray(mos, np.float64)
    if not fit:
        return float(stats.pearsonr(pred, mos)[0])
    mapped = logistic4(pred, *fit_logistic(pred, mos))
    return _signed(float(stats.pearsonr(mapped, mos)[0]), pred, mos)


def _signed(value: float, pred: np.ndarray, mos: np.ndarray) -> float:
    return abs(value) if stats.spearmanr(pred, mos)[0] >= 0 else -abs(value)


def rmse(pred, mos, fit: bool = True) -> float:
    pred, mos = np.asarray(pred, np.float64), np.asarray(mos, np.float64)
    mapped = logistic4(pred, *fit_logistic(pred, mos)) if fit else pred
    return float(np.sqrt(np.mean((mapped - mos) ** 2)))


def bootstrap_ci(pred, mos, metric, n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of ``metric(pred, mos)`` over resampled images."""
    pred, mos = np.asarray(pred, np.float64), np.asarray(mos, np.float64)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        idx = rng.integers(0, len(pred), len(pred))
        if np.ptp(pred[idx]) == 0 or np.ptp(mos[idx]) == 0:
            continue
        vals.append(metric(pred[idx], mos[idx]))
    a = (1 - level) / 2
    return float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))


def evaluate_predictions(pred, mos, n_boot: int = 1000, seed: int = 0) -> dict:
    """All protocol metrics for predictions ``pred`` against human scores ``mos``.

    Example:
        >>> r = evaluate_predictions([1, 2, 3, 4, 5], [10, 20, 30, 40, 50], n_boot=0)
        >>> round(r["srcc"], 6), r["n"]
        (1.0, 5)
    """
    pred, mos = np.asarray(pred, np.float64), np.asarray(mos, np.float64)
    if len(pred) != len(mos):
        raise ValueError(f"{len(pred)} predictions for {len(mos)} scores")
    if len(pred) < 3:
        raise ValueError(f"need at least 3 images to evaluate, got {len(pred)}")
    beta = fit_logistic(pred, mos)
    mapped = logistic4(pred, *beta)
    out = {
        "srcc": srcc(pred, mos),
        "plcc": _signed(float(stats.pearsonr(mapped, mos)[0]), pred, mos),
        "krcc": krcc(pred, mos),
        "rmse": float(np.sqrt(np.mean((mapped - mos) ** 2))),
        "plcc_linear": float(stats.pearsonr(pred, mos)[0]),
        "n": len(pred),
        "logistic_beta": [float(b) for b in beta],
    }
    if n_boot:
        out["srcc_ci95"] = bootstrap_ci(pred, mos, srcc, n_boot, seed)
        out["plcc_ci95"] = bootstrap_ci(pred, mos, plcc, n_boot, seed)
    return out
