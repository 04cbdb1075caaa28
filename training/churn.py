"""Churn risk: the churn training set -> the shared classifier trainer -> MLflow; scoring the active customers.

* :func:`train_churn` builds the training set (:mod:`features.churn`), picks the time slices (below) and calls
  :func:`training.classifier.train_classifier` with the recency rule as a baseline; :func:`log_churn_training`
  logs one MLflow run, registers ``churn_risk.<data set>`` and applies the shared gate (ROC AUC and Brier).
* :func:`score_churn` scores every customer active at the last cutoff with a loaded version
  (:func:`training.products.load_model`) and writes the serving snapshot; :func:`score_churn_rows` scores rows of
  feature values (the snapshot's, or a client's) and is what the service calls. :func:`churn_output` turns the
  classifier's predictions into the published row in the fixed names of :mod:`training.score_columns`.

Time slices for transaction data (:func:`plan_slices`). A row's label looks ``H`` days past its cutoff, so a
fitted row whose label window reaches a later slice would learn from that slice's period. The test slice is the
latest labelled cutoff; every fitted cutoff has ``t + H < test``. With enough history the calibration slice is
the latest such cutoffs and training uses cutoffs whose window also ends before calibration (policy ``both``,
the trainer's ``purge = H`` then has nothing left to drop); with a short history (cdnow: 9 labelled months,
H = 180 days) train and calibration share the period before the test cutoff without a gap between them (policy
``test``). The planned cutoffs are passed to the trainer as its row fractions, the slices it reports are checked
against the plan, and the policy is logged (``purge_policy``). The hyperparameter search fits its trial models
on train cutoffs as far before the calibration slice as the test cutoff is after the last fitted one (the
trainer's ``search_gap``; with a short history, the earliest train cutoff), so it selects for ranking that far
ahead; the final model is refitted on train + calibration cutoffs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from features.churn import CUTOFF, LABEL, REVENUE_12M, ChurnSet, build_churn_set
from features.churn_columns import (
    BGNBD_COLUMNS,
    RANK_SUFFIX,
    RANKED_COLUMNS,
    cutoff_rank_reference,
    fill_cutoff_ranks,
    with_bgnbd,
    with_cutoff_ranks,
)
from features.churn_snapshot import write_churn_snapshot
from features.distributed import entity_buckets, map_partitions, n_workers
from features.errors import SalesmlError
from features.load import Dataset
from features.spec import CUSTOMER_ID
from training import score_columns as sc
from training.classifier import (
    ClassifierData,
    ScoringModel,
    TrainConfig,
    TrainedClassifier,
    train_classifier,
)
from training.registry import model_name

__all__ = [
    "PRODUCT",
    "TIERS",
    "ChurnTraining",
    "SlicePlan",
    "churn_classifier_data",
    "churn_output",
    "log_churn_training",
    "plan_slices",
    "prepare_churn_snapshot",
    "score_churn",
    "score_churn_rows",
    "scoring_churn_set",
    "train_churn",
]

PRODUCT = "churn_risk"  # registered per data set as churn_risk.<data set>
TIERS = ("high", "medium", "low")


@dataclass
class ChurnTraining:
    """A trained churn model with the training set it came from and how the slices were made."""

    dataset: Dataset
    churn_set: ChurnSet
    data: ClassifierData
    result: TrainedClassifier
    purge_policy: str

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return self.result.metrics


def churn_classifier_data(churn_set: ChurnSet, *, purge: bool = True) -> ClassifierData:
    """The labelled rows as :class:`ClassifierData`; ``purge`` = drop rows whose label window reaches the next
    slice (transaction data only; snapshots have no time)."""
    timed = churn_set.kind == "transactions"
    return ClassifierData(
        frame=churn_set.labeled(),
        id_col=CUSTOMER_ID,
        time_col=CUTOFF,
        label_col=LABEL,
        numeric=list(churn_set.numeric),
        categorical=list(churn_set.categorical),
        rule_baselines=dict(churn_set.rule_baselines) if timed else {},
        purge=pd.Timedelta(days=churn_set.horizon_days) if (timed and purge) else None,
    )


@dataclass(frozen=True)
class SlicePlan:
    """Which labelled cutoffs train, calibrate and test, and how label windows are kept apart.

    ``policy`` is ``both`` (no train label window reaches the calibration slice, no calibration window reaches
    the test slice) or ``test`` (train and calibration share the period before the test cutoff; no fitted row's
    window reaches the test slice).
    """

    train: tuple[pd.Timestamp, ...]
    calibration: tuple[pd.Timestamp, ...]
    test: tuple[pd.Timestamp, ...]
    policy: str


def plan_slices(cutoffs: list[pd.Timestamp], horizon_days: int, *, n_calibration: int = 2) -> SlicePlan:
    """Slices of labelled cutoffs for an honest time split with label windows of ``horizon_days``.

    The test slice is the latest cutoff. Fitted cutoffs must have their whole window before it
    (``t + H < test``). With enough history the calibration slice is the latest ``n_calibration`` of those and
    training uses cutoffs whose window ends before calibration (``both``); otherwise the fitted cutoffs are split
    in time order without a gap between train and calibration (``test``).
    """
    h = pd.Timedelta(days=horizon_days)
    cuts = sorted(pd.Timestamp(c) for c in set(cutoffs))
    if not cuts:
        raise SalesmlError("no labelled cutoff to train on")
    test = cuts[-1]
    fit = [c for c in cuts if c + h < test]
    if len(fit) >= 2:
        cal = fit[-n_calibration:]
        train = [c for c in fit if c + h < cal[0]]
        if train:
            return SlicePlan(tuple(train), tuple(cal), (test,), "both")
        n_cal = max(1, len(fit) // 3)
        return SlicePlan(tuple(fit[:-n_cal]), tuple(fit[-n_cal:]), (test,), "test")
    raise SalesmlError(
        f"the labelled cutoffs {[f'{c:%Y-%m-%d}' for c in cuts]} leave fewer than two cutoffs whose {horizon_days}-day "
        f"label window ends before the test cutoff {test:%Y-%m-%d}; more history (--cutoffs) or a shorter horizon "
        "is needed"
    )


def _sliced(data: ClassifierData, plan: SlicePlan) -> tuple[ClassifierData, tuple[float, float, float]]:
    """The rows of the planned cutoffs and the trainer fractions whose boundaries fall on the plan."""
    times = data.frame[CUTOFF]
    keep = times.isin([*plan.train, *plan.calibration, *plan.test])
    frame = data.frame[keep].reset_index(drop=True)
    counts = frame[CUTOFF].value_counts().sort_index()
    cum = (counts.cumsum() / counts.sum()).to_numpy()
    eps = 0.5 / counts.sum()  # half a row: strictly between two cumulative shares
    f_train = cum[len(plan.train) - 1] - eps
    f_fit = cum[len(plan.train) + len(plan.calibration) - 1] - eps
    purge = data.purge if (plan.policy == "both" and data.purge is not None) else None
    return replace(data, frame=frame, purge=purge), (f_train, f_fit - f_train, 1.0 - f_fit)


def _check_slices(result: TrainedClassifier, plan: SlicePlan, horizon_days: int) -> None:
    """The trainer's slices are the plan's, and no fitted label window reaches a later slice it must not."""
    tp = result.slices
    bounds = {k: [pd.Timestamp(x) for x in tp[k].split(" .. ")] for k in ("train", "calibration", "test")}
    want = {"train": plan.train, "calibration": plan.calibration, "test": plan.test}
    for name, cuts in want.items():
        if bounds[name] != [cuts[0], cuts[-1]]:
            raise RuntimeError(
                f"churn slices: the trainer's {name} slice {tp[name]} is not the planned {cuts}"
            )
    h = pd.Timedelta(days=horizon_days)
    if max(bounds["train"][1], bounds["calibration"][1]) + h >= bounds["test"][0]:
        raise RuntimeError(f"churn slices: label windows of fitted rows reach the test slice: {tp}")
    if plan.policy == "both" and bounds["train"][1] + h >= bounds["calibration"][0]:
        raise RuntimeError(f"churn slices: training label windows reach the calibration slice: {tp}")


def train_churn(
    dataset: Dataset,
    *,
    horizon_days: int | None = None,
    n_cutoffs: int | None = 18,
    as_of: str | None = None,
    n_trials: int = 20,
    timeout_s: float = 240.0,
    random_state: int = 42,
    bgnbd: bool = True,
    cutoff_ranks: bool = True,
    refit: str | None = None,
    forward_search: bool = True,
    n_jobs: int | None = None,
    blend: bool = True,
    client: Any | None = None,
) -> ChurnTraining:
    """Build the churn training set and fit the shared classifier (time slices, or stratified for snapshots).

    ``bgnbd`` / ``cutoff_ranks``: add the BG/NBD columns (:func:`with_bgnbd`) and the within-cutoff ranks
    (:func:`with_cutoff_ranks`) as features (transaction data). ``refit``: the trainer's ``TrainConfig.refit``;
    default ``train+calibration`` for transaction data (the final model also learns from the latest fitted
    cutoffs, whose customers are closest in age to the test and scoring cutoffs; hyperparameters, calibrator and
    tiers stay chosen out of sample) and ``train`` for snapshots (no drift to follow). ``forward_search``
    (transaction data): the trainer's ``search_gap`` is the distance from the last fitted cutoff to the test
    cutoff, so hyperparameters are chosen for how well they rank that far ahead (a cohort ages between the
    fitted cutoffs and the scored one; see :class:`~training.classifier.TrainConfig`). ``blend``: let the trainer
    choose a LightGBM + logistic regression blend on the calibration slice (``TrainConfig.blend_shares``);
    ``False``: LightGBM alone.
    """
    churn_set = build_churn_set(
        dataset, horizon_days=horizon_days, n_cutoffs=n_cutoffs, as_of=as_of, client=client
    )
    if bgnbd:
        churn_set = with_bgnbd(churn_set)
    if cutoff_ranks:
        churn_set = with_cutoff_ranks(churn_set)
    data = churn_classifier_data(churn_set)
    timed = churn_set.kind == "transactions"
    config = TrainConfig(
        split="time" if timed else "stratified",
        n_trials=n_trials,
        timeout_s=timeout_s,
        random_state=random_state,
        band_labels=TIERS,
        **({} if n_jobs is None else {"n_jobs": n_jobs}),  # None: TrainConfig's default
        refit=refit or ("train+calibration" if timed else "train"),  # type: ignore[arg-type]
        **({} if blend else {"blend_shares": (1.0,)}),
    )
    if churn_set.kind != "transactions":
        return ChurnTraining(
            dataset, churn_set, data, train_classifier(data, config), "none (snapshot, stratified)"
        )
    plan = plan_slices(list(data.frame[CUTOFF].unique()), churn_set.horizon_days)
    data, fractions = _sliced(data, plan)
    if forward_search:
        ahead = plan.test[0] - max(plan.calibration)
        config = replace(config, search_gap=float(ahead / pd.Timedelta(days=1)))
    # Tiers rank the customers being scored: the calibration cutoffs' customers can be a different population
    # (cdnow: one 1997 cohort, young at the calibration cutoffs, 18 months older when scored), and their
    # quantiles put every scored customer in one tier.
    result = train_classifier(
        data,
        replace(config, fractions=fractions),
        band_population=churn_set.to_score(),
        band_basis=f"customers active at the scoring cutoff {churn_set.score_cutoff:%Y-%m-%d}",
    )
    _check_slices(result, plan, churn_set.horizon_days)
    return ChurnTraining(
        dataset=dataset, churn_set=churn_set, data=data, result=result, purge_policy=plan.policy
    )


def log_churn_training(training: ChurnTraining, *, promote: bool = False) -> tuple[str, Any]:
    """One MLflow run registered as ``churn_risk.<data set>``, with its card (gate: ROC AUC and Brier, same test
    slice)."""
    from training.cards import log_card
    from training.classifier import log_and_register
    from training.registry import model_name, promote_if_better

    cs, name = training.churn_set, model_name(PRODUCT, training.dataset.name)
    cutoff = "" if cs.score_cutoff is None else f"{cs.score_cutoff:%Y-%m-%d}"
    version, _ = log_and_register(
        training.result,
        name,
        training.dataset,
        promote=False,
        data_cutoff=cutoff,
        extra_params={
            "horizon_days": cs.horizon_days,
            "kind": cs.kind,
            "label_cutoffs": ",".join(f"{c:%Y-%m-%d}" for c in cs.label_cutoffs),
            "purge_policy": training.purge_policy,
        },
    )
    log_card(name, version)  # the card describes the version as registered, before the gate
    return version, (promote_if_better(name, version) if promote else None)


def churn_output(
    features: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    dataset: str,
    model_version: str,
    horizon_days: int,
) -> pd.DataFrame:
    """The published churn row for each feature row, in the fixed names of :mod:`training.score_columns`.

    Columns: ``customer_id``, ``probability`` (no purchase within ``horizon_days``), ``band`` (risk tier),
    ``reasons`` (the top 3 as JSON text), ``value`` (trailing 12-month revenue; empty for snapshot data without
    revenue), ``expected_value`` (probability x value), ``as_of`` (the feature cut-off; empty for rows sent
    without one), ``horizon_days``, ``dataset``, ``model_name``, ``model_version``.
    """
    preds = predictions.reset_index(drop=True)
    feats = features.reset_index(drop=True)
    cutoff = feats[CUTOFF] if CUTOFF in feats.columns else pd.Series(pd.NaT, index=feats.index)  # sent rows
    revenue = (
        pd.to_numeric(feats[REVENUE_12M], errors="coerce").astype(float)  # a client may send "120.5"
        if REVENUE_12M in feats.columns
        else pd.Series(np.nan, index=feats.index)
    )
    probability = preds["probability"].astype(float)
    return pd.DataFrame(
        {
            CUSTOMER_ID: feats[CUSTOMER_ID].astype(str),
            sc.PROBABILITY: probability,
            sc.BAND: preds["band"].astype(str),
            sc.REASONS: sc.reasons_json(sc.reason_lists(preds, len(preds))),
            sc.VALUE: revenue,
            sc.EXPECTED_VALUE: probability * revenue,
            sc.AS_OF: cutoff,
            sc.HORIZON_DAYS: int(horizon_days),
            sc.DATASET: dataset,
            sc.MODEL_NAME: model_name(PRODUCT, dataset),
            sc.MODEL_VERSION: str(model_version),
        }
    )


def prepare_churn_snapshot(
    snapshot: pd.DataFrame, scoring: ScoringModel
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The feature snapshot ready to be scored by ``scoring``, and what rows sent by clients are ranked against.

    The snapshot gets ``customer_id`` as text, a 0..n-1 index and every model feature (one it lacks is missing
    for every customer); the reference is :func:`~features.churn_columns.cutoff_rank_reference` of the ranked
    columns whose rank the model uses. Done once per loaded model (the service, at load), not per request.
    """
    out = snapshot.assign(**{CUSTOMER_ID: snapshot[CUSTOMER_ID].astype(str)}).reset_index(drop=True)
    for col in scoring.features:
        if col not in out.columns:
            out[col] = np.nan
    ranked = [c for c in RANKED_COLUMNS if f"{c}{RANK_SUFFIX}" in scoring.features]
    return out, cutoff_rank_reference(out[ranked])


def score_churn_rows(
    rows: pd.DataFrame,
    scoring: ScoringModel,
    *,
    dataset: str,
    version: str,
    horizon_days: int,
    rank_reference: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """:func:`churn_output` for rows of feature values (the snapshot's, or sent by a client).

    A model feature absent from ``rows`` is missing. With ``rank_reference`` (:func:`prepare_churn_snapshot`),
    the ``*_rank_in_cutoff`` ranks a client cannot know are filled from the raw values it sent
    (:func:`~features.churn_columns.fill_cutoff_ranks`).

    Raises:
        SalesmlError: a feature value the model cannot read.
    """
    frame = rows.copy() if rank_reference is None else fill_cutoff_ranks(rows, rank_reference)
    for col in scoring.features:
        if col not in frame.columns:
            frame[col] = np.nan
    return churn_output(
        frame, scoring.predict(frame), dataset=dataset, model_version=version, horizon_days=horizon_days
    )


def scoring_churn_set(
    dataset: Dataset,
    scoring: ScoringModel,
    *,
    horizon_days: int | None,
    as_of: str | pd.Timestamp | None = None,
    client: Any | None = None,
) -> ChurnSet:
    """The churn set at the last cutoff (``as_of``) with every column family ``scoring`` uses (BG/NBD, the
    within-cutoff ranks): the rows :func:`score_churn` scores and ``salesml monitor`` checks. ``client``: built on
    a Dask cluster (:func:`features.churn.build_churn_set`); the column families, fitted over the whole cutoff,
    are added here."""
    churn_set = build_churn_set(dataset, horizon_days=horizon_days, n_cutoffs=1, as_of=as_of, client=client)
    if any(c in scoring.features for c in BGNBD_COLUMNS):
        churn_set = with_bgnbd(churn_set)
    if any(c.endswith(RANK_SUFFIX) for c in scoring.features):
        churn_set = with_cutoff_ranks(churn_set)
    return churn_set


def score_churn(
    dataset: Dataset,
    scoring: ScoringModel,
    *,
    version: str,
    trained_horizon: int | None = None,
    as_of: str | None = None,
    horizon_days: int | None = None,
    write_snapshot: bool = True,
    client: Any | None = None,
) -> pd.DataFrame:
    """Score every customer active at the last cutoff (snapshot data: every customer) with a registered model
    (``scoring``, version ``version``, from :func:`training.products.load_model`).

    The feature rows are also written to the serving snapshot (``features.churn_snapshot``). The horizon is the
    model's (``trained_horizon``); a different ``horizon_days`` is refused. ``client``: the features are built on
    a Dask cluster and the rows scored there, a partition of customers per task (the model sent once to each
    worker); the same scores, in the same order.
    """
    if horizon_days is not None and trained_horizon is not None and horizon_days != trained_horizon:
        raise SalesmlError(
            f"{model_name(PRODUCT, dataset.name)} v{version} predicts churn within {trained_horizon} days; "
            f"--horizon-days {horizon_days} does not match (retrain with that horizon, or leave it out)"
        )
    horizon_days = horizon_days or trained_horizon
    churn_set = scoring_churn_set(dataset, scoring, horizon_days=horizon_days, as_of=as_of, client=client)
    rows = churn_set.to_score()
    if write_snapshot:
        write_churn_snapshot(churn_set, spec_fingerprint=dataset.spec.fingerprint())
    how = {"dataset": dataset.name, "model_version": version, "horizon_days": churn_set.horizon_days}
    if client is None:
        return _scored(rows, scoring, **how)
    part = entity_buckets(rows[CUSTOMER_ID], 4 * n_workers(client))
    where = [np.flatnonzero(part == p) for p in range(int(part.max(initial=0)) + 1)]
    model = client.scatter(scoring, broadcast=True)
    scored = map_partitions(client, _scored, [(rows.iloc[i],) for i in where], scoring=model, **how)
    out = pd.concat(scored, ignore_index=True)
    return out.iloc[np.argsort(np.concatenate(where), kind="stable")].reset_index(drop=True)


def _scored(rows: pd.DataFrame, scoring: ScoringModel, **how: Any) -> pd.DataFrame:
    return churn_output(rows, scoring.predict(rows), **how)
