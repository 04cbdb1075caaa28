"""The leakage audit that runs before every lead-scoring fit.

For each candidate feature it measures, on an honest split (a later slice when the data has a clock, a
stratified hold-out when it has none):

* ``auc``: the single-feature ROC AUC on the evaluation slice. Numeric columns are cut at deciles of the
  training slice, categoricals keep their values, missing is its own level; each level is scored by its
  smoothed conversion rate on the training slice only, so a feature cannot look good by memorising rows.
* ``fill_ratio``: how many times more often the column is filled for one outcome than for the other.
* ``time_corr``: Spearman correlation of the encoded feature with the clock (row order or decision date),
  where the data has one; reported, not used to exclude (macro context legitimately moves with time).
* ``after_outcome``: for activity counts, the share of that activity's events dated after the lead's outcome.

A feature is **flagged** (and excluded unless the spec lists it in ``keep_despite_audit``) when

1. ``auc >= 0.90``: one column alone nearly decides the outcome, or
2. ``after_outcome > 0.5``: it is filled mostly after the outcome (where timestamps allow), or
3. ``auc >= 0.75`` and ``fill_ratio >= 2``: an informative column that is filled at least twice as often for
   one outcome, the mark of a field written while or after the lead is worked (where no timestamps exist, this
   is the evidence the data allows).

Columns the spec declares ``post_outcome`` never get this far; they are listed as excluded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.leads import DECISION_TIME, LABEL, LeadSet

__all__ = ["AuditResult", "AuditThresholds", "audit_leads", "audit_table_rich"]

_MISSING = "<missing>"


@dataclass(frozen=True)
class AuditThresholds:
    """Where the audit draws its lines (see the module docstring)."""

    auc: float = 0.90
    after_outcome: float = 0.5
    fill_auc: float = 0.75
    fill_ratio: float = 2.0
    train_share: float = 0.7
    smoothing: float = 10.0
    random_state: int = 42


@dataclass(frozen=True)
class AuditResult:
    """The audit table (one row per column considered) and the resulting feature lists.

    Attributes:
        table: ``feature, kind, status, auc, fill_ratio, missing_share, time_corr, after_outcome, reason``.
        numeric: numeric features that pass (or are kept despite the audit).
        categorical: categorical features that pass (or are kept despite the audit).
        flagged: features the audit flagged (including those kept on purpose).
        excluded: every column that will not reach the model, with the reason.
    """

    table: pd.DataFrame
    numeric: list[str]
    categorical: list[str]
    flagged: list[str]
    excluded: dict[str, str]


def _split(frame: pd.DataFrame, time_kind: str, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    y = frame[LABEL].to_numpy()
    idx = np.arange(len(frame))
    if time_kind == "none":
        from sklearn.model_selection import train_test_split  # here: the CLI imports this module at start-up

        tr, ev = train_test_split(idx, train_size=share, stratify=y, random_state=seed)
        return np.sort(tr), np.sort(ev)
    order = np.argsort(frame[DECISION_TIME].to_numpy(), kind="stable")
    cut = int(round(share * len(order)))
    return order[:cut], order[cut:]


def _levels(s: pd.Series, train: np.ndarray) -> pd.Series:
    """Discrete levels of a column: decile bins (edges from the training slice) or values; missing is a level."""
    if pd.api.types.is_numeric_dtype(s):
        x = s.astype(float)
        edges = (
            np.unique(np.nanquantile(x.iloc[train], np.linspace(0, 1, 11)))
            if x.iloc[train].notna().any()
            else []
        )
        if len(edges) > 2:
            binned = np.searchsorted(edges[1:-1], x.to_numpy(), side="right").astype(float)
            lv = pd.Series(binned, index=s.index).astype("Int64").astype("string")
        else:
            lv = x.astype("string")
        return lv.fillna(_MISSING)
    return s.astype("string").fillna(_MISSING)


def _single_feature(
    s: pd.Series, y: pd.Series, train: np.ndarray, evaluate: np.ndarray, smoothing: float
) -> tuple[float, pd.Series]:
    levels = _levels(s, train)
    y_tr = y.iloc[train]
    prior = float(y_tr.mean())
    stats = y_tr.groupby(levels.iloc[train].to_numpy()).agg(["sum", "count"])
    rate = (stats["sum"] + smoothing * prior) / (stats["count"] + smoothing)
    encoded = levels.map(rate).astype(float).fillna(prior)
    y_ev = y.iloc[evaluate]
    auc = float("nan")
    if y_ev.nunique() == 2:
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(y_ev, encoded.iloc[evaluate]))
    return auc, encoded


def _fill_ratio(s: pd.Series, y: pd.Series) -> float:
    filled = s.notna()
    a, b = float(filled[y == 1].mean()), float(filled[y == 0].mean())
    lo, hi = min(a, b), max(a, b)
    if hi == 0:
        return 1.0
    return float("inf") if lo == 0 else hi / lo


def audit_leads(
    lead_set: LeadSet,
    *,
    keep_despite_audit: Iterable[str] = (),
    thresholds: AuditThresholds | None = None,
) -> AuditResult:
    """Audit every candidate feature of a lead set; return the table and the features that pass.

    Args:
        lead_set: the candidate features (only closed leads are used).
        keep_despite_audit: columns the spec keeps even when flagged (they are reported as such).
        thresholds: where the lines are drawn.

    Returns:
        The :class:`AuditResult`.
    """
    th = thresholds or AuditThresholds()
    keep = set(keep_despite_audit)
    closed = lead_set.closed()
    y = closed[LABEL].astype(int)
    train, evaluate = _split(closed, lead_set.time_kind, th.train_share, th.random_state)
    clock = closed[DECISION_TIME].rank(method="average") if lead_set.time_kind != "none" else None
    rows = []
    numeric, categorical, flagged = [], [], []
    for col in lead_set.features:
        s = closed[col]
        auc, encoded = _single_feature(s, y, train, evaluate, th.smoothing)
        ratio = _fill_ratio(s, y)
        corr = float("nan")
        if clock is not None and encoded.nunique() > 1:
            corr = float(encoded.rank().corr(clock))
        after = float("nan")
        if col.startswith("n_") and col.removeprefix("n_") in lead_set.activity_timing:
            after = lead_set.activity_timing[col.removeprefix("n_")]
        reasons = []
        if auc >= th.auc:
            reasons.append(f"single-feature AUC {auc:.3f} >= {th.auc:.2f}")
        if after > th.after_outcome:
            reasons.append(f"{after:.0%} of its events come after the outcome")
        if auc >= th.fill_auc and ratio >= th.fill_ratio:
            reasons.append(
                f"AUC {auc:.3f} >= {th.fill_auc:.2f} and filled {ratio:.1f}x as often for one outcome"
            )
        if reasons:
            flagged.append(col)
            status = "kept despite audit" if col in keep else "flagged: excluded"
        else:
            status = "kept"
        if status != "flagged: excluded":
            (numeric if col in lead_set.numeric else categorical).append(col)
        rows.append(
            {
                "feature": col,
                "kind": "numeric" if col in lead_set.numeric else "categorical",
                "status": status,
                "auc": auc,
                "fill_ratio": ratio,
                "missing_share": float(s.isna().mean()),
                "time_corr": corr,
                "after_outcome": after,
                "reason": "; ".join(reasons),
            }
        )
    excluded = {c: r for c, r in lead_set.excluded.items()}
    for col, reason in lead_set.excluded.items():
        rows.append(
            {
                "feature": col,
                "kind": "-",
                "status": "excluded",
                "auc": float("nan"),
                "fill_ratio": float("nan"),
                "missing_share": float("nan"),
                "time_corr": float("nan"),
                "after_outcome": float("nan"),
                "reason": reason,
            }
        )
    for col in flagged:
        if col not in keep:
            excluded[col] = "flagged by the leakage audit"
    table = pd.DataFrame(rows)
    order = {"flagged: excluded": 0, "kept despite audit": 1, "excluded": 2, "kept": 3}
    table = table.sort_values(
        ["status", "auc"], key=lambda c: c.map(order) if c.name == "status" else -c.fillna(0), kind="stable"
    ).reset_index(drop=True)
    return AuditResult(
        table=table, numeric=numeric, categorical=categorical, flagged=flagged, excluded=excluded
    )


def audit_table_rich(result: AuditResult, title: str = "leakage audit"):  # noqa: ANN201 (rich is optional)
    """The audit as a Rich table for the console."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("feature", "status", "auc", "fill_ratio", "missing", "time_corr", "after_outcome", "reason"):
        table.add_column(col, justify="right" if col not in ("feature", "status", "reason") else "left")

    def fmt(v: float) -> str:
        return "" if pd.isna(v) else ("inf" if np.isinf(v) else f"{v:.3f}")

    for r in result.table.itertuples(index=False):
        style = {"flagged: excluded": "red", "kept despite audit": "yellow", "excluded": "dim"}.get(r.status)
        table.add_row(
            r.feature,
            r.status,
            fmt(r.auc),
            fmt(r.fill_ratio),
            fmt(r.missing_share),
            fmt(r.time_corr),
            fmt(r.after_outcome),
            r.reason,
            style=style,
        )
    return table
