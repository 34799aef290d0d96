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


def _sigmoid_fit_state(x: np.ndarray, y: np.ndarray, centre: np.ndarray, log_scale: np.ndarray):
    """For each row, the logistic's sigmoid at (β3 = ``centre``, |β4| = exp(``log_scale``)), the
    least-squares line from it to ``y`` (β1 − β2 = slope), the squared error, the residual and its
    Jacobian in (β3, log|β4|) (variable projection: β1, β2 are solved, not searched; Kaufman's form)."""
    scale = np.exp(np.clip(log_scale, -200, 200))[:, None]
    z = np.clip((x - centre[:, None]) / scale, -500, 500)
    sig = 1 / (1 + np.exp(-z))
    sig_c = sig - sig.mean(axis=1, keepdims=True)
    norm = (sig_c * sig_c).sum(axis=1) + 1e-300
    slope = (sig_c * (y - y.mean(axis=1, keepdims=True))).sum(axis=1) / norm
    res = y - y.mean(axis=1, keepdims=True) - slope[:, None] * sig_c

    def project_out(v: np.ndarray) -> np.ndarray:  # the part of v outside span{1, sigmoid}
        v = v - v.mean(axis=1, keepdims=True)
        return v - ((v * sig_c).sum(axis=1) / norm)[:, None] * sig_c

    d_sig = slope[:, None] * sig * (1 - sig)
    jac = np.stack([project_out(d_sig / scale), project_out(d_sig * z)], axis=-1)
    return (res * res).sum(axis=1), res, jac, slope, sig


def fit_logistic_rows(x: np.ndarray, y: np.ndarray, max_iter: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Least-squares :func:`logistic4` fits of many (x, y) rows at once, from :func:`fit_logistic`'s
    start (β3 the median prediction, |β4| its standard deviation).

    Levenberg–Marquardt over (β3, log|β4|) only, vectorised over the rows with a damping per row and
    bounded steps; β1 and β2 enter the logistic linearly and are solved exactly at every step
    (variable projection, Golub & Pereyra 1973). A row stops when a step lowers its squared error by less than ``tol``
    (relative). On flat error surfaces the optimum found may differ from ``curve_fit``'s.

    Args:
        x, y: (B, n) predictions and scores.

    Returns:
        (B, 4) β, as :func:`fit_logistic` returns for one row (with β4 > 0).

    Example:
        >>> x = np.linspace(-3, 3, 40)[None]
        >>> np.round(fit_logistic_rows(x, logistic4(x, 5.0, 1.0, 0.5, 0.8))[0], 4).tolist()
        [5.0, 1.0, 0.5, 0.8]
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    centre, log_scale = np.median(x, axis=1), np.log(np.maximum(x.std(axis=1), 1e-6))
    cost, res, jac, _, _ = _sigmoid_fit_state(x, y, centre, log_scale)
    damping = np.full(len(x), 1e-3)
    rows = np.arange(len(x))  # rows still iterating
    for _ in range(max_iter):
        if not len(rows):
            break
        j = jac[rows]
        jtj = np.einsum("bni,bnj->bij", j, j)
        diag = np.maximum(np.diagonal(jtj, axis1=1, axis2=2), 1e-30)
        lhs = jtj + damping[rows, None, None] * diag[:, None, :] * np.eye(2)
        step = np.linalg.solve(lhs, -np.einsum("bni,bn->bi", j, res[rows])[..., None])[..., 0]
        # Bounded steps (at most 2 scales of β3, a factor e of |β4|): an unbounded first step can leap
        # into the exponential tail, where β3 and the slope trade off along a flat valley.
        bound = 2 * np.exp(log_scale[rows])
        c_new = centre[rows] + np.clip(step[:, 0], -bound, bound)
        l_new = log_scale[rows] + np.clip(step[:, 1], -1.0, 1.0)
        cost_new, res_new, jac_new, _, _ = _sigmoid_fit_state(x[rows], y[rows], c_new, l_new)
        better = cost_new < cost[rows]
        done = (better & (cost[rows] - cost_new <= tol * cost[rows])) | (damping[rows] > 1e12)
        take = rows[better]
        centre[take], log_scale[take], cost[take] = c_new[better], l_new[better], cost_new[better]
        res[take], jac[take] = res_new[better], jac_new[better]
        damping[rows] = np.where(better, np.maximum(damping[rows] / 10, 1e-12), damping[rows] * 10)
        rows = rows[~done]
    _, _, _, slope, sig = _sigmoid_fit_state(x, y, centre, log_scale)
    b2 = y.mean(axis=1) - slope * sig.mean(axis=1)
    return np.stack([b2 + slope, b2, centre, np.exp(log_scale)], axis=1)


def _exact_near_quantiles(approx: np.ndarray, exact, level: float, margin: int = 3) -> np.ndarray:
    """``approx`` with the values that decide the percentile interval replaced by ``exact(i)``.

    A percentile depends only on the order statistics at its position. The rows ranked within
    ``margin`` of each position are recomputed exactly, then again any row that the exact values
    move onto a position, until the values at the positions are all exact. NaN estimates are
    recomputed too.
    """
    vals, done = approx.copy(), np.zeros(len(approx), bool)
    a = (1 - level) / 2
    positions = [p for q in (a, 1 - a) for p in {int(np.floor(q * (len(vals) - 1))), int(np.ceil(q * (len(vals) - 1)))}]
    wanted = {int(i) for p in positions for i in np.argsort(vals)[max(p - margin, 0) : p + margin + 1]}
    wanted |= {int(i) for i in np.flatnonzero(np.isnan(vals))}  # a degenerate fit: no estimate to rank
    while wanted:
        for i in wanted:
            vals[i], done[i] = exact(i), True
        order = np.argsort(vals)
        wanted = {int(order[p]) for p in positions if not done[order[p]]}
    return vals


def bootstrap_cis(pred, mos, n: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CIs of SRCC and PLCC (after the logistic mapping), every resample at once.

    The resamples and the intervals are :func:`bootstrap_ci`'s with :func:`srcc` and :func:`plcc`
    (same ``seed``, same images, same numbers): ranks come from ``scipy.stats.rankdata`` row-wise,
    and the logistic of every resample from :func:`fit_logistic_rows`; the few resamples whose PLCC
    decides the interval are then refitted exactly as :func:`plcc` does.

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
    beta = fit_logistic_rows(x, y)
    mapped = (beta[:, :1] - beta[:, 1:2]) / (1 + np.exp(np.clip(-(x - beta[:, 2:3]) / beta[:, 3:], -500, 500)))
    mapped_r = np.abs(_pearson_rows(mapped, y))
    signed = np.where(rank_r >= 0, mapped_r, -mapped_r)  # as plcc(): the sign follows the rank correlation
    signed = _exact_near_quantiles(signed, lambda i: plcc(x[i], y[i]), level)
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
