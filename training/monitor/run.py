"""``salesml monitor``: every champion of a data set checked against the newest data, findings and alerts.

For each product whose champion exists for the data set:

* sales forecast: :func:`training.monitor.forecast.check_forecast` on the forecast periods the data now holds;
* churn: drift of the features and of the score at the newest cutoff against the training profile logged with
  the version (:mod:`training.monitor.drift`), and, once the horizon after the model's data cut-off has passed,
  the realised churn of the customers it scored then: per tier and per probability bin with counts and Wilson
  intervals, ROC AUC (:mod:`training.monitor.calibration`).

Each check gives findings (one frame shape for every product); the alert rules turn them into alerts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from features.churn_checks import parse_as_of
from features.errors import SalesmlError
from features.load import Dataset
from training import score_columns as sc
from training.monitor.reference import REFERENCE_ARTIFACT
from training.monitor.rules import DEFAULT_RULES, FINDING_COLUMNS, Alert, AlertRules, evaluate_rules

__all__ = ["FINDING_COLUMNS", "MonitorResult", "run_monitor"]


@dataclass
class MonitorResult:
    """What one monitoring run found.

    Attributes:
        dataset: the data set's name.
        data_end: the last day of data used (``--as-of`` or the end of the data).
        sections: per product, a JSON-ready summary (status, model version, tables as lists of records).
        findings: every finding (:data:`FINDING_COLUMNS`).
        alerts: the findings that fired a rule.
        skipped: per product without a champion (or not yet checkable), why.
        errors: per product whose champion could not be checked on this data, the error (exit code 2).
    """

    dataset: str
    data_end: str
    sections: dict[str, dict[str, Any]]
    findings: pd.DataFrame
    alerts: list[Alert]
    skipped: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "data_end": self.data_end,
            "created": self.created,
            "alerts": [a.to_message() for a in self.alerts],
            "sections": self.sections,
            "skipped": self.skipped,
            "errors": self.errors,
            "findings": _records(self.findings),
        }


def run_monitor(
    dataset: Dataset,
    *,
    as_of: str | pd.Timestamp | None = None,
    rules: AlertRules = DEFAULT_RULES,
    progress: Callable[[str], None] | None = None,
) -> MonitorResult:
    """Check every champion of ``dataset`` against its data up to ``as_of``; apply ``rules``.

    Raises:
        SalesmlError: no champion at all for the data set, or data the checks cannot read.
    """
    from training.products import load_model

    day = parse_as_of(as_of)
    sections: dict[str, dict[str, Any]] = {}
    findings: list[pd.DataFrame] = []
    skipped: dict[str, str] = {}
    errors: dict[str, str] = {}
    checks: dict[str, Callable[..., tuple[dict[str, Any], pd.DataFrame]]] = {
        "sales_forecast": _sales_section,
        "churn_risk": _churn_section,
        "lead_score": _lead_section,
    }
    for product, check in checks.items():
        try:
            loaded = load_model(product, dataset.name)
        except SalesmlError as err:
            skipped[product] = f"no champion: {err}"
            continue
        if progress:
            progress(f"checking {loaded.name} v{loaded.version}")
        try:
            section, found = check(loaded, dataset, day)
        except _NotYet as wait:
            skipped[product] = str(wait)
            continue
        except SalesmlError as err:  # this product cannot be checked on this data: say so, check the others
            errors[product] = f"{loaded.name} v{loaded.version}: {err}"
            continue
        sections[product] = {"model": loaded.name, "version": loaded.version, **section}
        findings.append(found)
    if not sections and not errors and not any(s.startswith("not yet") for s in skipped.values()):
        raise SalesmlError(
            f"data set {dataset.name!r} has no champion to monitor ({'; '.join(skipped.values())}); train one "
            f"with `salesml train sales|churn|leads --dataset {dataset.name} --promote`"
        )
    frame = pd.concat(findings, ignore_index=True) if findings else pd.DataFrame(columns=FINDING_COLUMNS)
    end = day if day is not None else _data_end(dataset)
    return MonitorResult(
        dataset=dataset.name,
        data_end="" if end is None else f"{end:%Y-%m-%d}",
        sections=sections,
        findings=frame,
        alerts=evaluate_rules(rules, frame),
        skipped=skipped,
        errors=errors,
    )


class _NotYet(Exception):
    """A champion that cannot be judged yet (no actuals or outcomes after its cut-off)."""


def _sales_section(loaded: Any, dataset: Dataset, day: pd.Timestamp | None) -> tuple[dict, pd.DataFrame]:
    from features.series import build_series
    from training.monitor.forecast import check_forecast

    series = build_series(dataset, as_of=day)
    if series.end <= loaded.model.cutoff:
        raise _NotYet(
            f"not yet: the forecast starts after {loaded.model.cutoff.date()} and the data ends "
            f"{series.end.date()}; nothing to compare"
        )
    check = check_forecast(loaded.model, series)
    anomalies = check.anomalies(95)
    section = {
        "kind": "forecast",
        "cutoff": f"{check.cutoff:%Y-%m-%d}",
        "periods": [f"{p:%Y-%m-%d}" for p in check.periods],
        "levels": _records(check.levels),
        "checked": int(len(check.rows)),
        "outside_95": int(check.rows["outside_95"].sum()),
        "outside_80": int(check.rows["outside_80"].sum()),
        "anomalies": _records(anomalies.head(50)),
        "missing_nodes": len(check.missing_nodes),
    }
    return section, check.findings()


def _churn_section(loaded: Any, dataset: Dataset, day: pd.Timestamp | None) -> tuple[dict, pd.DataFrame]:
    from training.churn import scoring_churn_set

    horizon = int(loaded.params.get("horizon_days") or 0) or None
    current = scoring_churn_set(dataset, loaded.model, horizon_days=horizon, as_of=day)
    rows = current.to_score()
    found: list[dict[str, Any]] = []
    section: dict[str, Any] = {"kind": "classifier", "rows_now": int(len(rows))}
    reference = _reference(loaded)
    scores = _score(loaded, rows, current.horizon_days)
    if reference is None:
        section["drift"] = "the version was logged without a training profile; retrain it to see drift"
    else:
        section["drift"], drift_found = _drift(reference, rows, scores, "churn")
        found += drift_found
    section["outcomes"], outcome_found = _churn_outcomes(loaded, dataset, day, current.horizon_days)
    found += outcome_found
    return section, pd.DataFrame(found, columns=FINDING_COLUMNS)


def _score(loaded: Any, rows: pd.DataFrame, horizon: int) -> pd.DataFrame:
    from training.products import PRODUCTS

    return PRODUCTS[loaded.product].score_rows(loaded, rows)


def _reference(loaded: Any) -> dict[str, Any] | None:
    """The training profile logged with the version's run, or None for a version logged before profiles."""
    import mlflow

    run_id = loaded.tags.get("run_id")
    if not run_id:
        return None
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{REFERENCE_ARTIFACT}")
    except Exception:  # noqa: BLE001 - absent artifact: MLflow raises several types by store
        return None


def _drift(
    reference: dict[str, Any], rows: pd.DataFrame, scores: pd.DataFrame, prefix: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from training.monitor.drift import FeatureProfile, drift_table

    features = {k: FeatureProfile.from_dict(v) for k, v in reference["features"].items()}
    table = drift_table({k: v for k, v in features.items() if k in rows.columns}, rows)
    score_ref = {"probability": FeatureProfile.from_dict(reference["score"])}
    score_table = drift_table(
        score_ref, scores[[sc.PROBABILITY]].rename(columns={sc.PROBABILITY: "probability"})
    )
    found = []
    for metric, t in ((f"{prefix}.drift_p", table), (f"{prefix}.score_drift_p", score_table)):
        for r in t.itertuples(index=False):
            found.append(
                {
                    "product": _PRODUCT_OF[prefix],
                    "metric": metric,
                    "level": None,
                    "node": r.feature,
                    "period": None,
                    "value": float(r.p_adjusted),
                    "n": int(r.n_current),
                    "effect": float(r.psi),
                    "message": f"{r.feature}: PSI {r.psi:.3f}, adjusted p {_p(r.p_adjusted)} "
                    f"({r.n_current:,} rows now vs {r.n_reference:,} in training)",
                }
            )
    summary = {"features": _records(table), "score": _records(score_table)}
    return summary, found


def _churn_outcomes(
    loaded: Any, dataset: Dataset, day: pd.Timestamp | None, horizon: int
) -> tuple[dict[str, Any] | str, list[dict[str, Any]]]:
    """Realised churn of the customers the model scored at its own data cut-off, once the horizon passed."""
    from features.churn_history import churn_labels
    from features.spec import AMOUNT, CUSTOMER_ID, TIME, Role
    from training.churn import TIERS, scoring_churn_set

    cutoff_text = loaded.tags.get("data_cutoff") or ""
    if not cutoff_text:
        return "a snapshot model: outcomes come with a new labelled snapshot", []
    cutoff = pd.Timestamp(cutoff_text)
    end = day if day is not None else _data_end(dataset)
    if end is None or cutoff + pd.Timedelta(days=horizon) > end:
        return (
            f"outcomes of the customers scored at {cutoff:%Y-%m-%d} are known from "
            f"{cutoff + pd.Timedelta(days=horizon):%Y-%m-%d} (horizon {horizon} days); the data ends "
            f"{'' if end is None else f'{end:%Y-%m-%d}'}"
        ), []
    then = scoring_churn_set(dataset, loaded.model, horizon_days=horizon, as_of=cutoff).to_score()
    tx = dataset.require(Role.transactions, "churn outcomes")
    tx = tx[tx[TIME] < end + pd.Timedelta(days=1)][[CUSTOMER_ID, TIME, AMOUNT]]
    outcome = churn_labels(tx, then, horizon_days=horizon, data_end=end).to_numpy()
    scored = _score(loaded, then, horizon)
    return _outcomes("churn", cutoff, scored, outcome, TIERS)


def _outcomes(
    prefix: str, cutoff: pd.Timestamp, scored: pd.DataFrame, outcome: np.ndarray, order: tuple[str, ...]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Calibration per bin and band, ROC AUC and their findings, of scores made at ``cutoff`` whose outcomes are
    known (``outcome``: 1 churned / converted, 0 not)."""
    from training.monitor.calibration import (
        band_table,
        calibration_table,
        expected_calibration_error,
        roc_auc_or_none,
    )

    prob = scored[sc.PROBABILITY].to_numpy(dtype=float)
    table = calibration_table(prob, outcome)
    bands = band_table(scored[sc.BAND].to_numpy(), prob, outcome, order=list(order))
    auc = roc_auc_or_none(prob, outcome)
    ece = expected_calibration_error(table)
    n = int(len(outcome))
    found = [
        {
            "product": _PRODUCT_OF[prefix],
            "metric": f"{prefix}.calibration_error",
            "level": None,
            "node": None,
            "period": f"{cutoff:%Y-%m-%d}",
            "value": ece,
            "n": n,
            "effect": float("nan"),
            "message": f"scored at {cutoff:%Y-%m-%d}: expected calibration error {ece:.3f} over {n:,}",
        }
    ]
    if auc is not None:
        found.append(
            {**found[0], "metric": f"{prefix}.auc", "value": auc, "message": f"ROC AUC {auc:.3f} ({n:,})"}
        )
    summary = {
        "scored_at": f"{cutoff:%Y-%m-%d}",
        "n": n,
        "events": int(np.nansum(outcome)),
        "roc_auc": auc,
        "ece": ece,
        "calibration": _records(table),
        "bands": _records(bands),
    }
    return summary, found


def _lead_section(loaded: Any, dataset: Dataset, day: pd.Timestamp | None) -> tuple[dict, pd.DataFrame]:
    """Drift of the open leads now against the training profile; the leads open at the model's cut-off and
    decided since, against their outcomes."""
    from features.leads import build_lead_set, leads_as_of, time_kind_of
    from features.spec import LEAD_ID, OUTCOME, Role
    from training.leads import GRADES, score_leads

    name, table = dataset.spec.table_of(Role.leads)  # type: ignore[misc]
    dated = time_kind_of(dataset.tables[name], table) == "datetime"
    now = leads_as_of(dataset, day) if day is not None and dated else dataset
    lead_set = build_lead_set(now)
    rows = lead_set.open() if len(lead_set.open()) else lead_set.frame
    scores, _ = score_leads(now, loaded.model, version=loaded.version)
    section: dict[str, Any] = {"kind": "classifier", "rows_now": int(len(rows))}
    found: list[dict[str, Any]] = []
    reference = _reference(loaded)
    if reference is None:
        section["drift"] = "the version was logged without a training profile; retrain it to see drift"
    else:
        section["drift"], found = _drift(reference, rows, scores, "leads")
    cutoff_text = loaded.tags.get("data_cutoff") or ""
    if not dated or not cutoff_text:
        section["outcomes"] = "leads without dates: outcomes after the model's cut-off cannot be told apart"
    else:
        cutoff = pd.Timestamp(cutoff_text)
        then, _ = score_leads(leads_as_of(now, cutoff), loaded.model, version=loaded.version)
        outcome = now.tables[name].set_index(LEAD_ID)[OUTCOME].astype("string")
        decided = then[then[LEAD_ID].map(outcome).isin(["won", "lost"])]
        if len(decided) == 0:
            section["outcomes"] = f"none of the leads open at {cutoff:%Y-%m-%d} has been decided yet"
        else:
            won = (decided[LEAD_ID].map(outcome) == "won").to_numpy(dtype=float)
            section["outcomes"], more = _outcomes("leads", cutoff, decided, won, GRADES)
            found += more
    return section, pd.DataFrame(found, columns=FINDING_COLUMNS)


_PRODUCT_OF = {"churn": "churn_risk", "leads": "lead_score"}


def _p(value: float) -> str:
    return "< 1e-300" if value == 0 else f"{value:.2g}"


def _data_end(dataset: Dataset) -> pd.Timestamp | None:
    from features.spec import TIME, Role

    found = dataset.spec.table_of(Role.transactions)
    if found is None:
        return None
    return pd.Timestamp(dataset.tables[found[0]][TIME].max()).normalize()


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows (NaN -> None, numpy scalars -> Python)."""
    return json.loads(frame.to_json(orient="records", date_format="iso", double_precision=15))
