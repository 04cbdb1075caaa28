"""cdnow: does a discrete-time hazard model, which also learns from censored cutoffs, beat a plain classifier?

Usage::

    nice -n 10 .venv/bin/python benchmarks/churn_cdnow_hazard.py            # both settings below

Why: the fully labelled cutoffs of cdnow (label window of H = 180 days ending before the 1997-12-30 test cutoff)
stop at 1997-06-30, when the one 1997 cohort is 3-6 months old; the test cutoff sees it 9-12 months old. A
hazard model can also learn from the cutoffs in between: at cutoff c, the 30-day chunk k of the horizon is a
training row if the customer bought nothing in the chunks before it and the chunk ends at or before the test
cutoff (so nothing after the test cutoff is seen); its target is "bought within chunk k". P(churn) is the product
of (1 - hazard) over the H / 30 chunks. Fixed design (chosen before the first run, not tuned): LightGBM with 15
leaves, learning rate 0.03, 300 trees, 50 rows per leaf, row and column subsampling 0.8; the churn set's numeric
features (with the BG/NBD and within-cutoff rank columns, as ``train_churn`` uses them) plus the chunk index. The
same LightGBM settings and a logistic regression (uncalibrated; not the trainer's calibrated baseline) fitted on
the fully labelled cutoffs are the comparison.

Two settings:

* ``validation`` (no test data): H = 90 days, test cutoff 1997-09-30; fully labelled cutoffs end 1997-06-30,
  the hazard model also uses 1997-07-30 and 08-30. Every label seen ends by 1997-12-29, before the real test
  cutoff.
* ``test``: H = 180 days, test cutoff 1997-12-30 (the issue's setting, as in ``churn_telco_cdnow.py``).

Nothing is logged or registered. Prints ROC AUC and Brier score per model and setting.
"""

from __future__ import annotations

import argparse
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from features.churn import CUTOFF, LABEL, build_churn_set
from features.churn_columns import with_bgnbd, with_cutoff_ranks
from features.load import Dataset, load_dataset
from features.spec import CUSTOMER_ID, TIME, Role

CHUNK_DAYS = 30
LGBM = {
    "n_estimators": 300,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_child_samples": 50,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "verbose": -1,
    "n_jobs": 1,
    "random_state": 0,
}
SETTINGS = {"validation": (90, "1997-09-30"), "test": (180, "1997-12-30")}


def days_to_next_purchase(frame: pd.DataFrame, dataset: Dataset) -> np.ndarray:
    """Days from each row's cutoff to the customer's first purchase after it (inf: none in the data)."""
    tx = dataset.require(Role.transactions, "churn")[[CUSTOMER_ID, TIME]]
    tx = tx.assign(
        **{TIME: pd.to_datetime(tx[TIME]).dt.normalize(), CUSTOMER_ID: tx[CUSTOMER_ID].astype(str)}
    )
    left = frame[[CUSTOMER_ID, CUTOFF]].assign(
        **{CUSTOMER_ID: frame[CUSTOMER_ID].astype(str)}, _row=np.arange(len(frame))
    )
    joined = pd.merge_asof(
        left.sort_values(CUTOFF),
        tx.sort_values(TIME).rename(columns={TIME: "next_time"}),
        left_on=CUTOFF,
        right_on="next_time",
        by=CUSTOMER_ID,
        direction="forward",
        allow_exact_matches=False,
    ).sort_values("_row")
    return ((joined["next_time"] - joined[CUTOFF]) / pd.Timedelta(days=1)).fillna(np.inf).to_numpy()


def run(dataset: Dataset, horizon: int, test_cutoff: str) -> None:
    t0 = time.perf_counter()
    test_cut = pd.Timestamp(test_cutoff)
    churn_set = with_cutoff_ranks(with_bgnbd(build_churn_set(dataset, horizon_days=horizon, n_cutoffs=None)))
    frame = churn_set.frame[churn_set.frame[CUTOFF] <= test_cut].reset_index(drop=True)
    features = list(churn_set.numeric)
    frame["gap"] = days_to_next_purchase(frame, dataset)
    labelled = frame[LABEL].notna()
    if not np.array_equal((frame["gap"] > horizon)[labelled].astype(float), frame.loc[labelled, LABEL]):
        raise AssertionError("the next-purchase gaps disagree with the churn set's labels")
    test = frame[frame[CUTOFF] == test_cut]
    y_test = (test["gap"] > horizon).astype(int).to_numpy()

    full = frame[frame[CUTOFF] + pd.Timedelta(days=horizon) <= test_cut]
    y_full = (full["gap"] > horizon).astype(int)
    scores = {
        "LightGBM, labelled cutoffs": lgb.LGBMClassifier(**LGBM).fit(full[features], y_full),
        "logistic, labelled cutoffs": make_pipeline(
            SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=2000)
        ).fit(full[features], y_full),
    }
    p = {name: m.predict_proba(test[features])[:, 1] for name, m in scores.items()}

    n_chunks = horizon // CHUNK_DAYS
    chunks = []
    for k in range(1, n_chunks + 1):
        lo, hi = CHUNK_DAYS * (k - 1), (CHUNK_DAYS * k if k < n_chunks else horizon)
        known = (frame[CUTOFF] < test_cut) & (frame[CUTOFF] + pd.Timedelta(days=hi) <= test_cut)
        chunk = frame[known & (frame["gap"] > lo)]
        chunks.append(chunk.assign(chunk=k, event=(chunk["gap"] <= hi).astype(int)))
    hazard_rows = pd.concat(chunks)
    hazard = lgb.LGBMClassifier(**LGBM).fit(hazard_rows[[*features, "chunk"]], hazard_rows["event"])
    survival = np.ones(len(test))
    for k in range(1, n_chunks + 1):
        survival *= 1 - hazard.predict_proba(test[features].assign(chunk=k))[:, 1]
    p["hazard LightGBM (+ censored cutoffs)"] = survival

    print(
        f"\n== H = {horizon} days, test cutoff {test_cut:%Y-%m-%d} ({len(test)} customers, churn rate "
        f"{y_test.mean():.3f}); labelled cutoffs {sorted(full[CUTOFF].dt.strftime('%Y-%m-%d').unique())} "
        f"({len(full)} rows); hazard rows {len(hazard_rows)} from {hazard_rows[CUTOFF].nunique()} cutoffs, "
        f"by chunk {hazard_rows.groupby('chunk').size().to_dict()}; {time.perf_counter() - t0:.0f} s"
    )
    print(f"  {'recency rule':38s} ROC AUC {roc_auc_score(y_test, test['recency_days']):.4f}")
    for name, prob in p.items():
        print(
            f"  {name:38s} ROC AUC {roc_auc_score(y_test, prob):.4f}  Brier {brier_score_loss(y_test, prob):.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    args = parser.parse_args()
    dataset = load_dataset("cdnow")
    for name in args.settings:
        run(dataset, *SETTINGS[name])


if __name__ == "__main__":
    main()
