"""Monitoring statistics: drift flagged on the shifted feature and nowhere else at 200 or 200,000 rows, profiles
that count their own training rows exactly, and calibration checked against a hand computation."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency

from features.errors import SalesmlError
from training.monitor.calibration import (
    band_table,
    calibration_table,
    expected_calibration_error,
    roc_auc_or_none,
    wilson_interval,
)
from training.monitor.drift import OTHER, FeatureProfile, bin_counts, drift_table, holm, profile_frame, psi

# Churn-like features: (kind, location, scale); a shift of s sd moves the mean by s times the feature's sd.
NORMAL = {"recency_days": (60.0, 30.0), "tenure_days": (700.0, 250.0), "discount_pct": (0.1, 0.03)}
LOGNORMAL = {"revenue_12m": (7.0, 1.0)}
POISSON = {"orders_90d": 3.0, "tickets": 0.5}
SEGMENTS = (["smb", "mid", "enterprise"], [0.6, 0.3, 0.1])


def _customers(n: int, seed: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    """``n`` customers drawn with ``seed``; ``shift`` moves a feature's mean by that many of its sd."""
    rng = np.random.default_rng(seed)
    shift = shift or {}
    cols: dict[str, np.ndarray] = {}
    for name, (mean, sd) in NORMAL.items():
        cols[name] = rng.normal(mean + shift.get(name, 0.0) * sd, sd, n)
    for name, (mu, sigma) in LOGNORMAL.items():
        sd = math.exp(mu + sigma**2 / 2) * math.sqrt(math.exp(sigma**2) - 1)
        cols[name] = rng.lognormal(mu, sigma, n) + shift.get(name, 0.0) * sd
    for name, lam in POISSON.items():
        cols[name] = rng.poisson(lam + shift.get(name, 0.0) * math.sqrt(lam), n)
    cols["segment"] = rng.choice(SEGMENTS[0], n, p=SEGMENTS[1])
    return pd.DataFrame(cols)


@pytest.fixture(scope="module")
def training() -> pd.DataFrame:
    return _customers(5_000, seed=0)


@pytest.fixture(scope="module")
def reference(training: pd.DataFrame) -> dict[str, FeatureProfile]:
    return profile_frame(training)


def _show(table: pd.DataFrame) -> pd.DataFrame:
    return table[["feature", "psi", "p_adjusted", "flagged"]]


# --- drift: where it is and nowhere else -----------------------------------------------------------------


@pytest.mark.parametrize("feature", ["recency_days", "revenue_12m", "orders_90d"])
def test_a_half_sd_shift_of_one_feature_is_flagged_and_first(reference, feature: str) -> None:
    table = drift_table(reference, _customers(2_000, seed=1, shift={feature: 0.5}))
    assert table.loc[0, "feature"] == feature and table.loc[0, "flagged"], _show(table)
    assert table["flagged"].sum() == 1, _show(table)
    assert list(table.columns) == [
        "feature",
        "kind",
        "n_reference",
        "n_current",
        "psi",
        "statistic",
        "p_value",
        "p_adjusted",
        "flagged",
    ]
    assert set(table["feature"]) == set(reference) and (table["n_current"] == 2_000).all()


@pytest.mark.parametrize("n", [200, 200_000])
def test_unchanged_features_are_not_flagged_at_200_or_200000_rows(reference, n: int) -> None:
    table = drift_table(reference, _customers(n, seed=2))
    assert not table["flagged"].any(), _show(table)


def test_unchanged_samples_of_200_raise_at_most_one_false_alarm_in_20_seeds(reference) -> None:
    runs = [drift_table(reference, _customers(200, seed=100 + s))["flagged"].any() for s in range(20)]
    assert sum(runs) <= 1


def test_a_fixed_psi_threshold_alone_flags_unchanged_small_samples(reference) -> None:
    # why the rule has a test: at 50 rows the PSI of an unchanged feature passes 0.1 by chance alone
    tables = [drift_table(reference, _customers(50, seed=200 + s)) for s in range(20)]
    assert sum(bool((t["psi"] >= 0.1).any()) for t in tables) >= 1
    assert sum(bool(t["flagged"].any()) for t in tables) <= 1


def test_a_trivial_shift_on_a_huge_sample_is_detected_but_not_flagged(reference) -> None:
    # why the rule has a PSI floor: 0.1 sd on 200,000 rows is beyond doubt, and too small to matter
    table = drift_table(reference, _customers(200_000, seed=3, shift={"recency_days": 0.1}))
    row = table.set_index("feature").loc["recency_days"]
    assert row["p_adjusted"] < 0.01 and row["psi"] < 0.1 and not row["flagged"]
    assert not table["flagged"].any()


def test_the_test_is_the_chi_square_test_of_homogeneity_and_holm_adjusts_over_features(reference) -> None:
    current = _customers(300, seed=4, shift={"tenure_days": 0.3})
    table = drift_table(reference, current).set_index("feature")
    for name, profile in reference.items():
        both = np.vstack([profile.counts, bin_counts(profile, current[name])])
        res = chi2_contingency(both[:, both.sum(axis=0) > 0], correction=False)
        assert table.loc[name, "statistic"] == pytest.approx(res.statistic, rel=1e-9)
        assert table.loc[name, "p_value"] == pytest.approx(res.pvalue, rel=1e-9, abs=1e-300)
    np.testing.assert_allclose(table["p_adjusted"], holm(table["p_value"].to_numpy()))


def test_psi_and_holm_by_hand() -> None:
    # PSI of (50, 50) against (25, 75): (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    assert psi(np.array([50, 50]), np.array([25, 75])) == pytest.approx(
        0.25 * math.log(2) + 0.25 * math.log(1.5)
    )
    # an empty current bin is floored at eps = 1e-4: (1e-4 - 0.5) ln(1e-4 / 0.5) + (1 - 0.5) ln(1 / 0.5)
    assert psi(np.array([5, 5]), np.array([0, 10])) == pytest.approx(
        (1e-4 - 0.5) * math.log(1e-4 / 0.5) + 0.5 * math.log(2)
    )
    # Holm: sorted 0.01, 0.02, 0.04, 0.5 times 4, 3, 2, 1 = 0.04, 0.06, 0.08, 0.5, given back in the input order
    np.testing.assert_allclose(holm([0.04, 0.01, 0.5, 0.02]), [0.08, 0.04, 0.5, 0.06])
    # a step below the one before it is raised to it (monotone): 0.01 * 3 = 0.03, 0.0101 * 2 = 0.0202 -> 0.03
    np.testing.assert_allclose(holm([0.01, 0.0101, 0.9]), [0.03, 0.03, 0.9])
    np.testing.assert_allclose(holm([0.4, 0.6]), [0.8, 0.8])  # 0.6 * 1 < 0.4 * 2: raised to 0.8
    np.testing.assert_allclose(holm([0.7, 0.9]), [1.0, 1.0])  # 1.4 and 0.9 -> 1.4, capped at 1


# --- profiles ----------------------------------------------------------------------------------------------


def test_training_counts_equal_the_counts_of_the_training_values(training, reference) -> None:
    for name, profile in reference.items():
        assert tuple(bin_counts(profile, training[name])) == profile.counts, name
        assert sum(profile.counts) == profile.n == len(training)
    assert reference["segment"].kind == "categorical" and reference["recency_days"].kind == "numeric"
    assert len(reference["recency_days"].edges) == 9  # deciles
    # Poisson(0.5) puts 61 % at 0 and 91 % at or below 1: deciles 0 (six times), 1 (three times) -> edges 0, 1,
    # 3 bins (-inf, 0], (0, 1], (1, inf) instead of 10
    assert reference["tickets"].edges == (0.0, 1.0) and len(reference["tickets"].counts) == 3 + 1


def test_numeric_bins_are_closed_on_the_right_and_missing_values_have_their_own_bin() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0, None, np.nan]})
    profile = profile_frame(frame, bins=2)["x"]
    assert profile.edges == (3.0,) and profile.counts == (3, 2, 2)  # (-inf, 3], (3, inf), missing
    assert tuple(bin_counts(profile, [3.0, 3.0001, -1e9, np.nan, None])) == (2, 1, 2)
    flags = pd.DataFrame({"b": [True, False, True, None]})
    assert profile_frame(flags)["b"].kind == "categorical"  # bool counts as a category, not a number


def test_unseen_categories_go_to_other_and_missing_ones_to_the_missing_bin() -> None:
    frame = pd.DataFrame({"c": ["a", "b", "a", None, "a", "b"]})
    profile = profile_frame(frame)["c"]
    assert profile.categories == ("a", "b", OTHER) and profile.counts == (3, 2, 0, 1)
    assert tuple(bin_counts(profile, pd.Series(["z", "a", None, "y", np.nan]))) == (1, 0, 2, 2)
    many = pd.DataFrame({"c": [f"k{i:02d}" for i in range(25) for _ in range(25 - i)]})
    kept = profile_frame(many)["c"]
    assert len(kept.categories) == 21 and kept.categories[-1] == OTHER  # the 20 most frequent, then (other)
    assert kept.counts[-2] == 5 + 4 + 3 + 2 + 1 and kept.counts[-1] == 0  # k20 .. k24 pooled


def test_a_profile_survives_a_json_round_trip(reference) -> None:
    for profile in reference.values():
        text = json.dumps(profile.to_dict())
        assert FeatureProfile.from_dict(json.loads(text)) == profile
    with pytest.raises(SalesmlError, match=r"'segment'.*expected kind numeric or categorical and 5 counts"):
        FeatureProfile.from_dict({**reference["segment"].to_dict(), "counts": [1, 2]})
    with pytest.raises(SalesmlError, match="needs name, kind, edges, categories, counts and n"):
        FeatureProfile.from_dict({"name": "x", "kind": "numeric"})


def test_a_profiled_feature_missing_from_the_current_rows_is_named(reference) -> None:
    current = _customers(100, seed=5).drop(columns=["tickets", "segment"])
    with pytest.raises(SalesmlError, match=r"lack 2 feature\(s\).*'tickets', 'segment'.*expected the same"):
        drift_table(reference, current)


# --- calibration ---------------------------------------------------------------------------------------------

PROBS = [0.02, 0.07, 0.10, 0.18, 0.30, 0.34, 0.38, 0.62, 0.66, 0.85, 0.93, 1.0]
OUTCOMES = [0, 0, 0, 1, 0, 1, 0, 1, 1, 0, 1, 1]


def test_calibration_table_matches_a_hand_computation() -> None:
    table = calibration_table(PROBS, OUTCOMES)
    # by hand: [0, .1) 0.02 0.07; [.1, .2) 0.10 0.18; [.3, .4) 0.30 0.34 0.38; [.6, .7) 0.62 0.66; [.8, .9) 0.85;
    # [.9, 1] 0.93 1.0 (1.0 in the last bin); a value on an edge (0.10, 0.30) in the bin it opens
    np.testing.assert_allclose(table["bin_low"], [0.0, 0.1, 0.3, 0.6, 0.8, 0.9])
    np.testing.assert_allclose(table["bin_high"], [0.1, 0.2, 0.4, 0.7, 0.9, 1.0])
    assert table["n"].tolist() == [2, 2, 3, 2, 1, 2]
    assert table["events"].tolist() == [0, 1, 1, 2, 0, 2]
    np.testing.assert_allclose(table["mean_predicted"], [0.045, 0.14, 0.34, 0.64, 0.85, 0.965])
    np.testing.assert_allclose(table["observed_rate"], [0.0, 0.5, 1 / 3, 1.0, 0.0, 1.0])
    low, high = wilson_interval(table["events"].to_numpy(), table["n"].to_numpy())
    np.testing.assert_allclose(table["ci_low"], low)
    np.testing.assert_allclose(table["ci_high"], high)
    # ECE = (2 * .045 + 2 * |.5 - .14| + 3 * |1/3 - .34| + 2 * |1 - .64| + 1 * .85 + 2 * |1 - .965|) / 12
    #     = (0.09 + 0.72 + 0.02 + 0.72 + 0.85 + 0.07) / 12 = 2.47 / 12
    assert expected_calibration_error(table) == pytest.approx(2.47 / 12, abs=1e-12)


def test_wilson_interval_by_hand() -> None:
    # 3 events of 10, z = 1.959963984540054 (z^2 = 3.8414588206941254):
    #   centre = (0.3 + z^2 / 20) / (1 + z^2 / 10)                     = 0.3555065599725778
    #   half   = z * sqrt(0.3 * 0.7 / 10 + z^2 / 400) / (1 + z^2 / 10) = 0.2477152925662768
    #   low, high = centre - half, centre + half                      = 0.10779126740630099, 0.6032218525388546
    low, high = wilson_interval(3, 10)
    assert low == pytest.approx(0.10779126740630099, abs=1e-9)
    assert high == pytest.approx(0.6032218525388546, abs=1e-9)
    lows, highs = wilson_interval(np.array([0, 3, 0]), np.array([5, 10, 0]))
    assert (
        lows[0] == pytest.approx(0.0, abs=1e-12)
        and lows[1] == pytest.approx(low)
        and math.isnan(lows[2])
        and math.isnan(highs[2])
    )
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_fine_bins_put_a_probability_on_an_edge_in_the_bin_it_opens() -> None:
    # 0.29 * 100 = 28.999999999999996 in floating point; 0.29 still opens the bin [0.29, 0.30)
    table = calibration_table([0.29, 0.57, 1.0], [1, 0, 1], bins=100)
    np.testing.assert_allclose(table["bin_low"], [0.29, 0.57, 0.99])


def test_bands_follow_the_given_order_and_leave_out_absent_ones() -> None:
    bands = ["high" if p >= 0.6 else "medium" if p >= 0.3 else "low" for p in PROBS]
    table = band_table(bands, PROBS, OUTCOMES, order=["critical", "high", "medium", "low"])
    assert table["band"].tolist() == ["high", "medium", "low"]  # no critical in the data
    assert table["n"].tolist() == [5, 3, 4] and table["events"].tolist() == [4, 1, 1]
    np.testing.assert_allclose(table["observed_rate"], [0.8, 1 / 3, 0.25])
    np.testing.assert_allclose(table["mean_predicted"], [4.06 / 5, 0.34, 0.37 / 4])
    assert list(table.columns) == [
        "band",
        "n",
        "events",
        "observed_rate",
        "ci_low",
        "ci_high",
        "mean_predicted",
    ]


def test_roc_auc_needs_enough_rows_of_each_class() -> None:
    assert roc_auc_or_none(PROBS, OUTCOMES) is None  # 6 events and 6 non-events: below 10 of each
    # by hand: of the 6 x 6 (event, non-event) pairs the event scores higher in 3 + 4 + 5 + 5 + 6 + 6 = 29
    assert roc_auc_or_none(PROBS, OUTCOMES, min_each=6) == pytest.approx(29 / 36)
    assert roc_auc_or_none(PROBS, [bool(y) for y in OUTCOMES], min_each=6) == pytest.approx(29 / 36)


@pytest.mark.parametrize(
    ("probability", "outcome", "message"),
    [
        ([0.2, 1.5], [0, 1], r"finite numbers in \[0, 1\]; found \[1.5\]"),
        ([0.2, np.nan], [0, 1], r"finite numbers in \[0, 1\]; found \[nan\]"),
        ([-0.1, 0.5], [0, 1], r"in \[0, 1\]; found \[-0.1\]"),
        (["high", 0.5], [0, 1], "probabilities must be numbers; found values such as \\['high'"),
        ([0.2, 0.5], [0, 2], r"outcomes must be 0 or 1 \(or true / false\); found \[2.0\]"),
        ([0.2, 0.5], ["yes", "no"], "outcomes .* must be numbers; found values such as \\['yes'"),
        ([0.2, 0.5], [0], r"same length; got shapes \(2,\) and \(1,\)"),
    ],
)
def test_bad_probabilities_or_outcomes_are_named(probability, outcome, message: str) -> None:
    with pytest.raises(SalesmlError, match=message):
        calibration_table(probability, outcome)
    with pytest.raises(SalesmlError, match=message):
        roc_auc_or_none(probability, outcome)


def test_bad_bins_or_band_lengths_are_named() -> None:
    with pytest.raises(SalesmlError, match="bins must be a whole number of at least 1; got 0"):
        calibration_table(PROBS, OUTCOMES, bins=0)
    with pytest.raises(SalesmlError, match=r"bands and probabilities must have the same length"):
        band_table(["high"], PROBS, OUTCOMES)
