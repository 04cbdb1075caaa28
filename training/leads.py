"""Lead and deal scoring: training set -> leakage audit -> the shared classifier trainer -> scores.

The glue only: features come from :mod:`features.leads`, the audit from :mod:`features.audit`, fitting,
calibration, grades and factors from :mod:`training.classifier`. Grades A-D are probability bands chosen on the
calibration slice (10 / 20 / 30 / 40 % of leads from the top).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.audit import AuditResult, audit_leads
from features.churn_checks import parse_as_of  # one rule for every --as-of
from features.errors import SalesmlError
from features.lead_records import NewLeadContext, lead_record_columns
from features.leads import DECISION_TIME, LABEL, LeadSet, LeadSetOptions, build_lead_set, leads_as_of
from features.load import Dataset
from features.spec import CLOSED_AT, CREATED_AT, LEAD_ID, OWNER, Role
from training import score_columns as sc
from training.classifier import ClassifierData, ScoringModel, TrainConfig, TrainedClassifier, train_classifier
from training.registry import model_name

__all__ = [
    "GRADES",
    "PRODUCT",
    "LeadTraining",
    "log_lead_training",
    "score_lead_records",
    "score_leads",
    "train_leads",
]

PRODUCT = "lead_score"  # registered per data set as lead_score.<data set>
LABEL_KNOWN_AT = "label_known_at"
GRADES = ("A", "B", "C", "D")
GRADE_SHARES = (0.1, 0.2, 0.3, 0.4)
# Time-ordered data: refit on train + calibration rows before scoring the test slice (the latest history
# matters on drifting data; bank-marketing, later 20 %: logistic ROC AUC 0.638 -> 0.748, LightGBM Brier
# 0.245 -> 0.224, benchmarks/README.md). Stratified (clock-less) data keeps the train-only fit.
DEFAULT_REFIT_TIME: Literal["train", "train+calibration"] = "train+calibration"


@dataclass
class LeadTraining:
    """Everything one lead-scoring training run produced."""

    dataset: Dataset
    lead_set: LeadSet
    audit: AuditResult
    data: ClassifierData
    result: TrainedClassifier

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return self.result.metrics


def _owner_rate(lead_set: LeadSet, dataset: Dataset) -> str | None:
    """The finest-grained owner win rate (``owner`` or the last level of the first hierarchy holding it)."""
    candidates = [OWNER]
    for levels in dataset.spec.hierarchies:
        candidates += list(reversed(levels))
    for key in candidates:
        col = f"{key}_win_rate"
        if col in lead_set.numeric:
            return col
    return None


def _label_known_at(closed: pd.DataFrame, dataset: Dataset) -> pd.Series | None:
    """When each closed lead's outcome became known (its ``closed_at``), aligned with ``closed``; None without
    close dates. Not a feature: the trainer only uses it to keep outcomes known after a slice starts out of the
    slices before it."""
    name, _ = dataset.spec.table_of(Role.leads)  # type: ignore[misc]
    leads = dataset.tables[name]
    if CLOSED_AT not in leads.columns or not pd.api.types.is_datetime64_any_dtype(leads[CLOSED_AT]):
        return None
    if not pd.api.types.is_datetime64_any_dtype(closed[DECISION_TIME]):
        return None
    close = leads.assign(_id=leads[LEAD_ID].astype(str)).drop_duplicates("_id").set_index("_id")[CLOSED_AT]
    return closed[LEAD_ID].astype(str).map(close)


def lead_classifier_data(lead_set: LeadSet, audit: AuditResult, dataset: Dataset) -> ClassifierData:
    """The audited training frame for the shared trainer, with the rule baselines.

    Baselines: the best single feature (numeric or categorical) kept by the audit, by its honest single-feature
    AUC (the trainer scores a categorical one by its level's train-slice win rate), and for deals with an
    owner the owner's (agent's) point-in-time win rate. Dated leads with a close date carry it as the non-feature
    column ``label_known_at`` (the lead set itself does not), passed as the trainer's ``label_time_col``.
    """
    closed = lead_set.closed().copy()
    closed[LABEL] = closed[LABEL].astype(int)
    known_at = _label_known_at(closed, dataset)
    if known_at is not None:
        closed[LABEL_KNOWN_AT] = known_at.to_numpy()
    kept = audit.table[audit.table["feature"].isin([*audit.numeric, *audit.categorical])]
    kept = kept.dropna(subset=["auc"])
    rules: dict[str, str] = {}
    if len(kept):
        # Orientation does not matter: the trainer orients each rule on its train slice.
        best = kept.assign(strength=(kept["auc"] - 0.5).abs()).sort_values("strength", ascending=False)
        rules["best_single_feature"] = str(best["feature"].iloc[0])
    owner = _owner_rate(lead_set, dataset)
    if owner is not None and owner in audit.numeric:
        rules["owner_win_rate"] = owner
    if not audit.numeric and not audit.categorical:
        raise SalesmlError("the leakage audit left no feature to train on; see the audit table")
    return ClassifierData(
        frame=closed,
        id_col=LEAD_ID,
        time_col=DECISION_TIME,
        label_col=LABEL,
        numeric=audit.numeric,
        categorical=audit.categorical,
        rule_baselines=rules,
        label_time_col=LABEL_KNOWN_AT if known_at is not None else None,
    )


def train_leads(
    dataset: Dataset,
    *,
    n_trials: int = 15,
    timeout_s: float = 180.0,
    random_state: int = 42,
    options: LeadSetOptions | None = None,
    split: Literal["auto", "time", "stratified"] = "auto",
    keep_despite_audit: Iterable[str] = (),
    refit: Literal["train", "train+calibration"] | None = None,
    recency_halflife: float | None = None,
    n_jobs: int | None = None,
    blend: bool = True,
    as_of: str | pd.Timestamp | None = None,
    client: Any | None = None,
) -> LeadTraining:
    """Build the lead set, audit it, and train the calibrated classifier with grades A-D.

    Dated or row-ordered data is split in time order (train, calibration, test = 70 / 10 / 20 %, the test slice
    the latest; the chosen model is refitted on train + calibration before the test slice is scored); data
    without any clock (x-education) is split stratified with ``random_state``.
    ``split="stratified"`` forces a random split (benchmarks only: it overstates a deployed model on
    time-ordered data). ``keep_despite_audit`` adds to the spec's list (benchmarks: the model with the
    flagged columns, to show what they would add). ``refit`` / ``recency_halflife``: see
    :class:`training.classifier.TrainConfig`; ``refit=None``: :data:`DEFAULT_REFIT_TIME` for a time split,
    ``"train"`` for a stratified one. ``n_jobs``: LightGBM threads (``None``: the trainer's default).
    ``blend``: let the trainer choose a LightGBM + logistic regression blend on the calibration slice
    (``TrainConfig.blend_shares``); ``False``: LightGBM alone. ``as_of`` (``YYYY-MM-DD``): train on the data as
    it stood at the end of that day (:func:`features.leads.leads_as_of`), open leads scored as of it.
    ``client``: a ``distributed.Client``; the lead set is built per partition of leads on its workers
    (:func:`features.leads.build_lead_set`), the same set.
    """
    day = parse_as_of(as_of)
    if day is not None:
        dataset = leads_as_of(dataset, day)
    # open leads as of the last event on or before the day
    lead_set = build_lead_set(dataset, options=options, client=client)
    _, table = dataset.spec.table_of(Role.leads)  # type: ignore[misc]
    keep = [*table.keep_despite_audit, *keep_despite_audit]
    audit = audit_leads(lead_set, keep_despite_audit=keep)
    data = lead_classifier_data(lead_set, audit, dataset)
    if split == "auto":
        split = "stratified" if lead_set.time_kind == "none" else "time"
    if split == "time" and lead_set.time_kind == "none":
        raise SalesmlError(
            f"data set {dataset.name!r} has no clock (no dates, rows not in time order): use a stratified split"
        )
    config = TrainConfig(
        split=split,
        # The test slice is always the latest 20 %; calibrating on the next 10 % keeps training close to it.
        fractions=(0.7, 0.1, 0.2),
        n_trials=n_trials,
        timeout_s=timeout_s,
        random_state=random_state,
        band_labels=GRADES,
        band_shares=GRADE_SHARES,
        refit=refit or (DEFAULT_REFIT_TIME if split == "time" else "train"),
        recency_halflife=recency_halflife,
        **({"n_jobs": n_jobs} if n_jobs is not None else {}),
        **({} if blend else {"blend_shares": (1.0,)}),
    )
    result = train_classifier(data, config)
    return LeadTraining(dataset=dataset, lead_set=lead_set, audit=audit, data=data, result=result)


def log_lead_training(training: LeadTraining, *, promote: bool = False) -> tuple[str, Any]:
    """One MLflow run for the training (audit table included), registered as ``lead_score.<data set>`` with its
    card."""
    from training.cards import log_card
    from training.classifier import log_and_register
    from training.registry import promote_if_better

    audit = training.audit
    flagged = [f for f in audit.flagged]
    as_of = training.lead_set.as_of
    name = model_name(PRODUCT, training.dataset.name)
    version, _ = log_and_register(
        training.result,
        registered_name=name,
        dataset=training.dataset,
        promote=False,
        data_cutoff=str(as_of.date()) if as_of is not None else "",
        extra_artifacts={"leakage_audit.csv": audit.table},
        extra_metrics={"audit_flagged": float(len(flagged)), "audit_excluded": float(len(audit.excluded))},
        extra_params={
            "audit.flagged": ",".join(flagged) or "-",
            "audit.excluded": ",".join(sorted(audit.excluded)) or "-",
            "lead_set.time_kind": training.lead_set.time_kind,
        },
    )
    log_card(name, version)  # the card describes the version as registered, before the gate
    return version, (promote_if_better(name, version) if promote else None)


def _output(
    frame: pd.DataFrame | Mapping[str, Any],
    scoring: ScoringModel,
    value_col: str | None,
    dataset: str,
    version: str,
) -> pd.DataFrame:
    """The published lead rows in the fixed names of :mod:`training.score_columns` (and ``age_days``);
    ``frame``: feature rows as a frame or as a mapping of column arrays (the plain path's)."""
    scored = scoring.score(scoring.encode(frame))  # arrays: a frame of them costs ~1 ms per call
    probability = scored["probability"]
    n = len(probability)
    value = (
        np.asarray(pd.to_numeric(frame[value_col], errors="coerce"), dtype=float)
        if value_col is not None
        else np.full(n, np.nan)
    )
    decided = np.asarray(frame[DECISION_TIME])
    columns = {
        LEAD_ID: np.asarray(frame[LEAD_ID]),
        sc.PROBABILITY: probability,
        sc.BAND: scored["band"],
        sc.REASONS: sc.reasons_json(sc.reason_lists(scored, n)),
        sc.VALUE: value,
        sc.EXPECTED_VALUE: probability * value,
        sc.AS_OF: decided,
    }
    if CREATED_AT in frame and np.issubdtype(decided.dtype, np.datetime64):
        age = pd.Series(decided) - pd.Series(np.asarray(frame[CREATED_AT]))
        columns["age_days"] = age.dt.days.to_numpy()
    names = {sc.DATASET: dataset, sc.MODEL_NAME: model_name(PRODUCT, dataset), sc.MODEL_VERSION: str(version)}
    columns.update({k: np.full(n, v, dtype=object) for k, v in names.items()})
    return pd.DataFrame(columns)  # one construction: each column set on a frame afterwards costs ~0.3 ms


def score_leads(dataset: Dataset, scoring: ScoringModel, *, version: str) -> tuple[pd.DataFrame, str]:
    """Score the open leads (crm: the open deals) with a loaded version (:func:`training.products.load_model`);
    every lead when none is open.

    Returns:
        The scores (the fixed names of :mod:`training.score_columns`, and ``age_days`` for dated leads) and what
        was scored.
    """
    lead_set = build_lead_set(dataset)
    rows = lead_set.open()
    what = "open leads"
    if rows.empty:
        rows, what = lead_set.frame, "every lead (the data set has no open lead)"
    return _output(rows, scoring, lead_set.value_col, dataset.name, version), what


def score_lead_records(
    records: Iterable[Mapping[str, Any]], context: NewLeadContext, scoring: ScoringModel, *, version: str
) -> pd.DataFrame:
    """Score a batch of raw leads (attribute dicts with canonical names) as of the end of the data set.

    The feature rows are :func:`features.lead_records.lead_record_features` (built exactly as for training, as
    of the end of the data set, from ``context``); a lead's score therefore does not depend on the other leads in
    the batch or their order. This is the function the service and ``salesml score leads --input`` call.

    Args:
        records: dicts with ``lead_id`` and any of the leads table's attribute columns.
        context: :func:`features.lead_records.new_lead_context` of the data set the model was trained on
            (history, lookups, activities), built once per loaded model (the service: at load).
        scoring: the loaded scoring model (:func:`training.products.load_model`; the service loads it once).
        version: its registered version.

    Raises:
        SalesmlError: a record without ``lead_id``, an unknown field or a repeated id.
    """
    rows, value_col = lead_record_columns(records, context)
    return _output(rows, scoring, value_col, context.dataset.name, version)
