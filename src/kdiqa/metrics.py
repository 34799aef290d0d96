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
    """Percentile bootstrap CI of any ``metric(pred, mos)`` over resampled images, one call per
    resample. :func:`bootstrap_cis` gives the same SRCC/PLCC intervals from the same resamples, at once."""
    pred, mos = np.asarray(pred, np.float64), np.asarray(mos, np.float64)
    vals = [metric(pred[idx], mos[idx]) for idx in _resamples(pred, mos, n, seed)]
    return _percentiles(vals, level)


def _resamples(pred: np.ndarray, mos: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` seeded resamples of the image indices (one per row), less those where either side is constant."""
    idx = np.random.default_rng(seed).integers(0, len(pred), (n, len(pred)))
    return idx[(np.ptp(pred[idx], axis=1) > 0) & (np.ptp(mos[idx], axis=1) > 0)]


def _percentiles(vals, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    return float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson's r of each row of ``a`` with the same row of ``b``."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def _logistic_rows(x: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`logistic4` of each row of ``x`` with that row's β (B, 4), and its Jacobian (B, n, 4)."""
    b1, b2, b3, b4 = (beta[:, i : i + 1] for i in range(4))
    scale = np.abs(b4) + 1e-12
    s = 1 / (1 + np.exp(np.clip(-(x - b3) / scale, -500, 500)))
    slope = -(b1 - b2) * s * (1 - s) / scale  # ∂f/∂β3; ∂f/∂β4 is slope · (x − β3)/|β4| · sign(β4)
    jac = np.stack([s, 1 - s, slope, slope * (x - b3) / scale * np.sign(b4)], axis=-1)
    return (b1 - b2) * s + b2, jac


def fit_logistic_rows(x: np.ndarray, y: np.ndarray, beta0, max_iter: int = 100, tol: float = 1e-12) -> np.ndarray:
    """Least-squares :func:`logistic4` fits of many (x, y) rows at once: Levenberg–Marquardt (as
    ``curve_fit``'s MINPACK) vectorised over the rows, each row with its own damping.

    Args:
        x, y: (B, n) predictions and scores.
        beta0: the start, (4,) for every row or (B, 4).
        max_iter: iterations at most; a row stops when a step lowers its squared error by less than
            ``tol`` (relative) or its damping grows past any useful step.

    Example:
        >>> x = np.linspace(-3, 3, 40)[None]
        >>> beta = fit_logistic_rows(x, logistic4(x, 5.0, 1.0, 0.5, 0.8), [4.0, 0.0, 0.0, 1.0])
        >>> np.round(beta[0], 4).tolist()
        [5.0, 1.0, 0.5, 0.8]
    """
    beta = np.array(np.broadcast_to(np.asarray(beta0, np.float64), (len(x), 4)))
    f, jac = _logistic_rows(x, beta)
    res = f - y
    cost = (res * res).sum(axis=1)
    damping = np.full(len(x), 1e-3)
    rows = np.arange(len(x))  # rows still iterating
    for _ in range(max_iter):
        if not len(rows):
            break
        j, r = jac[rows], res[rows]
        jtj = np.einsum("bni,bnj->bij", j, j)
        diag = np.maximum(np.diagonal(jtj, axis1=1, axis2=2), 1e-12)
        lhs = jtj + damping[rows, None, None] * diag[:, None, :] * np.eye(4)
        step = np.linalg.solve(lhs, -np.einsum("bni,bn->bi", j, r)[..., None])[..., 0]
        trial = beta[rows] + step
        f_new, jac_new = _logistic_rows(x[rows], trial)
        res_new = f_new - y[rows]
        cost_new = (res_new * res_new).sum(axis=1)
        better = cost_new < cost[rows]
        done = (better & (cost[rows] - cost_new <= tol * cost[rows])) | (damping[rows] > 1e12)
        take = rows[better]
        beta[take], jac[take], res[take], cost[take] = trial[better], jac_new[better], res_new[better], cost_new[better]
        damping[rows] = np.where(better, np.maximum(damping[rows] / 10, 1e-12), damping[rows] * 10)
        rows = rows[~done]
    return beta


def bootstrap_cis(pred, mos, n: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CIs of SRCC and PLCC (after the logistic mapping), every resample at once.

    The resamples are :func:`bootstrap_ci`'s (same ``seed``, same images), and so are the intervals:
    the ranks come from ``scipy.stats.rankdata`` row-wise, and each resample's logistic fit starts
    from the fit to all images (:func:`fit_logistic_rows`) instead of a fresh ``curve_fit``.

    Example:
        >>> x = np.arange(30.0)
        >>> cis = bootstrap_cis(x, x**2, n=200)
        >>> [round(v, 6) for v in cis["srcc_ci95"]]
        [1.0, 1.0]
    """
    pred, mos = np.asarray(pred, np.float64), np.asarray(mos, np.float64)
    idx = _resamples(pred, mos, n, seed)
    x, y = pred[idx], mos[idx]
    rank_r = _pearson_rows(stats.rankdata(x, axis=1), stats.rankdata(y, axis=1))
    beta = fit_logistic_rows(x, y, fit_logistic(pred, mos))
    mapped_r = np.abs(_pearson_rows(_logistic_rows(x, beta)[0], y))
    signed = np.where(rank_r >= 0, mapped_r, -mapped_r)  # as plcc(): the sign follows the rank correlation
    return {"srcc_ci95": _percentiles(rank_r, level), "plcc_ci95": _percentiles(signed, level)}


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
        out.update(bootstrap_cis(pred, mos, n_boot, seed))
    return out
