"""The BG/NBD fit recovers known parameters and agrees with the ``lifetimes`` package on cdnow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.bgnbd import BGNBD, bgnbd_columns, fit_bgnbd


def _simulate(model: BGNBD, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Customers from the BG/NBD story: Poisson purchases at rate lambda, dropout with p after each purchase."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(model.r, 1.0 / model.alpha, n)
    p = rng.beta(model.a, model.b, n)
    T = rng.uniform(20, 60, n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1.0 / lam[i])
            if t > T[i]:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < p[i]:
                break
    return x, t_x, T


def test_fit_recovers_the_parameters_of_simulated_customers() -> None:
    truth = BGNBD(r=0.8, alpha=4.0, a=0.6, b=2.5)
    x, t_x, T = _simulate(truth, 6000, seed=1)
    fit = fit_bgnbd(x, t_x, T)
    assert fit.r == pytest.approx(truth.r, rel=0.15)
    assert fit.alpha == pytest.approx(truth.alpha, rel=0.2)
    assert fit.a / (fit.a + fit.b) == pytest.approx(truth.a / (truth.a + truth.b), rel=0.2)  # mean dropout


def test_probabilities_behave() -> None:
    model = BGNBD(r=0.5, alpha=5.0, a=0.7, b=2.0)
    x = np.array([0.0, 3.0, 3.0])
    t_x = np.array([0.0, 10.0, 29.0])
    T = np.array([30.0, 30.0, 30.0])
    alive = model.p_alive(x, t_x, T)
    assert alive[0] == 1.0 and alive[1] < alive[2] <= 1.0  # a recent purchase means more likely alive
    silent = model.p_no_purchase(x, t_x, T, 13.0)
    assert np.all((silent > 0) & (silent < 1)) and silent[1] > silent[2]


def test_agrees_with_lifetimes_on_cdnow(shared_data: Path) -> None:
    """lifetimes 0.11.3, BetaGeoFitter(penalizer_coef=0).fit on cdnow with observation_period_end 1997-06-30,
    freq "D", gave r 0.245390, alpha 30.073881 (days), a 0.703520, b 1.780731 (run once in a scratch venv)."""
    from features.churn import build_churn_set
    from features.load import load_dataset

    churn_set = build_churn_set(load_dataset("cdnow"), n_cutoffs=None)
    rows = churn_set.frame[churn_set.frame["cutoff"] == pd.Timestamp("1997-06-30")]
    x = rows["purchases_total"].to_numpy() - 1.0
    T = rows["tenure_days"].to_numpy() / 7.0
    fit = fit_bgnbd(x, T - rows["recency_days"].to_numpy() / 7.0, T)
    assert fit.r == pytest.approx(0.245390, rel=1e-3)
    assert fit.alpha * 7.0 == pytest.approx(30.073881, rel=1e-3)
    assert fit.a == pytest.approx(0.703520, rel=1e-3)
    assert fit.b == pytest.approx(1.780731, rel=1e-3)
    cols = bgnbd_columns(rows, horizon_days=180)
    assert cols.notna().all().all() and cols["bgnbd_p_no_purchase"].between(0, 1).all()
