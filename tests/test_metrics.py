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
