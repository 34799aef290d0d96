import numpy as np
import pytest
from scipy import stats

from kdiqa.metrics import evaluate_predictions, fit_logistic, logistic4, plcc, rmse, srcc


def test_hand_computed_case():
    pred = [1.0, 2.0, 3.0, 4.0]
    mos = [1.0, 3.0, 2.0, 4.0]
    # Ranks differ in one swap: d² = 0+1+1+0 = 2, ρ = 1 − 6·2 / (4·15) = 0.8
    # Kendall: 6 pairs, 5 concordant, 1 discordant → τ = 4/6
    r = evaluate_predictions(pred, mos, n_boot=0)
    assert r["srcc"] == pytest.approx(0.8)
    assert r["krcc"] == pytest.approx(4 / 6)
    assert r["plcc_linear"] == pytest.approx(0.8)  # Pearson of these two is also 0.8
    assert r["n"] == 4


def test_matches_scipy_on_random_data():
    rng = np.random.default_rng(1)
    mos = rng.uniform(0, 100, 200)
    pred = mos / 100 + rng.normal(0, 0.2, 200)
    r = evaluate_predictions(pred, mos, n_boot=0)
    assert r["srcc"] == pytest.approx(stats.spearmanr(pred, mos)[0])
    assert r["krcc"] == pytest.approx(stats.kendalltau(pred, mos)[0])
    mapped = logistic4(pred, *fit_logistic(pred, mos))
    assert r["plcc"] == pytest.approx(stats.pearsonr(mapped, mos)[0])
    assert r["rmse"] == pytest.approx(np.sqrt(np.mean((mapped - mos) ** 2)))
    assert r["plcc"] >= r["plcc_linear"] - 1e-6  # the fit can only help a monotone relation


def test_logistic_fit_recovers_a_logistic_relation():
    x = np.linspace(-3, 3, 100)
    mos = logistic4(x, 90.0, 10.0, 0.5, 0.8)
    assert plcc(x, mos) == pytest.approx(1.0, abs=1e-6)
    assert rmse(x, mos) == pytest.approx(0.0, abs=1e-3)
    assert plcc(x, mos, fit=False) < 0.99


def test_negative_correlation_kept_for_dmos():
    x = np.linspace(0, 1, 50)
    assert srcc(x, -x) == pytest.approx(-1.0)
    assert plcc(x, 100 - 80 * x) == pytest.approx(-1.0, abs=1e-6)


def test_bootstrap_ci_contains_estimate():
    rng = np.random.default_rng(0)
    mos = rng.uniform(0, 1, 120)
    pred = mos + rng.normal(0, 0.3, 120)
    r = evaluate_predictions(pred, mos, n_boot=200)
    lo, hi = r["srcc_ci95"]
    assert lo < r["srcc"] < hi and hi - lo < 0.4
    lo, hi = r["plcc_ci95"]
    assert lo < r["plcc"] < hi


def test_too_few_images():
    with pytest.raises(ValueError, match="at least 3"):
        evaluate_predictions([1, 2], [1, 2])


def _logistic_case(n: int = 232, seed: int = 0):
    """Predictions related to MOS by a sigmoid plus noise, like a model's on a test split."""
    rng = np.random.default_rng(seed)
    mos = rng.uniform(5, 95, n)
    return 1 / (1 + np.exp(-(mos - 50) / 15)) + rng.normal(0, 0.08, n), mos


# Intervals of the per-resample reference (bootstrap_ci with a curve_fit per resample), n=1000.
REFERENCE_CIS = {
    "sigmoid": ((0.9445209231361495, 0.9663300471567976), (0.9554969794121488, 0.9711073857100562)),
    "weak": ((0.4601463377396879, 0.6641647692890508), (0.47729771695453144, 0.6626770283125673)),
    "convex": ((0.8429346960347065, 0.9114716645641457), (0.8854801868471339, 0.9301925526762663)),
}


def _weak_case():
    rng = np.random.default_rng(7)
    mos = rng.uniform(1, 5, 232)
    return mos + rng.normal(0, 2.0, 232), mos


def _convex_case():
    """A convex relation: the logistic fits of many resamples lie near its exponential tail, where the
    error surface is flat and a curve_fit per resample needs thousands of evaluations."""
    rng = np.random.default_rng(11)
    pred = rng.uniform(10, 65, 232)
    return pred, np.clip(0.02 * pred**2 + rng.normal(0, 12, 232), 1, 99)


@pytest.mark.parametrize(("name", "seed"), [("sigmoid", 0), ("weak", 3), ("convex", 0)])
def test_vectorised_bootstrap_matches_reference(name, seed):
    from kdiqa.metrics import bootstrap_cis

    pred, mos = {"sigmoid": _logistic_case, "weak": _weak_case, "convex": _convex_case}[name]()
    cis = bootstrap_cis(pred, mos, n=1000, seed=seed)
    srcc_ref, plcc_ref = REFERENCE_CIS[name]
    assert cis["srcc_ci95"] == pytest.approx(srcc_ref, abs=1e-4)  # the same to 3 decimals
    assert cis["plcc_ci95"] == pytest.approx(plcc_ref, abs=1e-4)


def test_vectorised_bootstrap_matches_the_per_resample_loop():
    from kdiqa.metrics import bootstrap_ci, bootstrap_cis

    pred, mos = _logistic_case(80, seed=4)
    pred = 100 - 40 * pred  # a decreasing predictor: negative SRCC and PLCC
    cis = bootstrap_cis(pred, mos, n=150, seed=9, level=0.9)
    assert cis["srcc_ci95"] == pytest.approx(bootstrap_ci(pred, mos, srcc, 150, 9, 0.9), abs=1e-9)
    assert cis["plcc_ci95"] == pytest.approx(bootstrap_ci(pred, mos, plcc, 150, 9, 0.9), abs=5e-4)
    assert cis["plcc_ci95"][1] < 0


def test_vectorised_logistic_fit_matches_curve_fit():
    from kdiqa.metrics import fit_logistic_rows

    pred, mos = _logistic_case(120, seed=2)
    idx = np.random.default_rng(1).integers(0, 120, (20, 120))
    beta = fit_logistic_rows(pred[idx], mos[idx])
    for row, b in zip(idx, beta, strict=True):
        ref = logistic4(pred[row], *fit_logistic(pred[row], mos[row]))
        fit = logistic4(pred[row], *b)
        # a fit at least as good as curve_fit's (both stop within their tolerances of a flat optimum, so either
        # may be the lower by a hair), and the same mapping to within 0.01 in MOS units
        sse, sse_ref = ((fit - mos[row]) ** 2).sum(), ((ref - mos[row]) ** 2).sum()
        assert sse <= sse_ref * (1 + 1e-7)
        assert np.abs(fit - ref).max() < 1e-2


def test_bootstrap_takes_a_fraction_of_a_second():
    import time

    from kdiqa.metrics import evaluate_predictions

    pred, mos = _convex_case()
    start = time.perf_counter()
    r = evaluate_predictions(pred, mos, n_boot=1000)
    assert time.perf_counter() - start < 5.0  # a curve_fit per resample: over 10 s on this case
    assert r["plcc_ci95"] == pytest.approx(REFERENCE_CIS["convex"][1], abs=1e-4)


def test_only_the_deciding_resamples_are_refitted():
    from kdiqa.metrics import _exact_near_quantiles, _percentiles

    rng = np.random.default_rng(0)
    exact = rng.normal(0.8, 0.05, 1000)
    approx = exact + rng.normal(0, 2e-4, 1000)
    approx[[3, 500]] = np.nan  # degenerate estimates are always computed exactly
    calls = []
    out = _exact_near_quantiles(approx, lambda i: calls.append(i) or exact[i], 0.95)
    assert _percentiles(out, 0.95) == _percentiles(exact, 0.95)
    assert 3 in calls and 500 in calls and len(calls) < 40
    assert _percentiles(approx[~np.isnan(approx)], 0.95) != _percentiles(exact, 0.95)
