"""Alert rules: which findings of ``salesml monitor`` raise an alert, read from YAML and validated like specs.

.. code-block:: yaml

    rules:
      - name: sales anomaly in a region
        metric: forecast.anomaly_p      # see METRICS: each metric fires above or below its threshold
        level: region                   # or node: region=West (at most one of the two)
        threshold: 0.01
        min_samples: 1                  # the finding's sample size must reach it
      - name: churn feature drift
        metric: churn.drift_p
        threshold: 0.01
        min_effect: 0.1                 # PSI for drift, money for anomalies
        min_samples: 100
    webhook:                            # optional: one JSON message per alert
      url: https://hooks.example.com/salesml/${HOOK_TOKEN}
      timeout_seconds: 5
      retries: 3
      backoff_seconds: 0.5
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.errors import SalesmlError

__all__ = [
    "DEFAULT_RULES",
    "FINDING_COLUMNS",
    "METRICS",
    "Alert",
    "AlertRules",
    "Rule",
    "Webhook",
    "evaluate_rules",
    "load_rules",
]

# metric -> (fires when the value is "below" or "above" the threshold, what the threshold may be)
METRICS: dict[str, tuple[str, str]] = {
    "forecast.anomaly_p": ("below", "probability"),
    "forecast.wape": ("above", "nonnegative"),
    "forecast.abs_bias": ("above", "nonnegative"),
    "forecast.coverage_80": ("below", "share"),
    "forecast.coverage_95": ("below", "share"),
    "churn.auc": ("below", "share"),
    "leads.auc": ("below", "share"),
    "churn.calibration_error": ("above", "nonnegative"),
    "leads.calibration_error": ("above", "nonnegative"),
    "churn.drift_p": ("below", "probability"),
    "leads.drift_p": ("below", "probability"),
    "churn.score_drift_p": ("below", "probability"),
    "leads.score_drift_p": ("below", "probability"),
}
Metric = Literal[
    "forecast.anomaly_p",
    "forecast.wape",
    "forecast.abs_bias",
    "forecast.coverage_80",
    "forecast.coverage_95",
    "churn.auc",
    "leads.auc",
    "churn.calibration_error",
    "leads.calibration_error",
    "churn.drift_p",
    "leads.drift_p",
    "churn.score_drift_p",
    "leads.score_drift_p",
]
FINDING_COLUMNS = ["product", "metric", "level", "node", "period", "value", "n", "effect", "message"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Strict):
    """One rule: a metric, where it applies, the threshold, the evidence it needs."""

    name: str = Field(min_length=1)
    metric: Metric
    level: str | None = None
    node: str | None = None
    threshold: float
    min_samples: int = Field(1, ge=1)
    min_effect: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if self.level is not None and self.node is not None:
            raise ValueError("give at most one of 'level' or 'node'")
        kind = METRICS[self.metric][1]
        t = self.threshold
        if not math.isfinite(t):
            raise ValueError(f"threshold must be a finite number, got {t}")
        if kind == "probability" and not 0 < t < 1:
            raise ValueError(
                f"threshold of {self.metric} is a probability: expected 0 < threshold < 1, got {t}"
            )
        if kind == "share" and not 0 < t <= 1:
            raise ValueError(f"threshold of {self.metric} is a share: expected 0 < threshold <= 1, got {t}")
        if kind == "nonnegative" and t < 0:
            raise ValueError(f"threshold of {self.metric} must be >= 0, got {t}")
        return self


class Webhook(_Strict):
    """Where alerts are posted, one JSON message each; ``${VAR}`` in the URL is read from the environment."""

    url: str
    timeout_seconds: float = Field(5.0, gt=0, le=60)
    retries: int = Field(3, ge=0, le=10)
    backoff_seconds: float = Field(0.5, ge=0, le=30)

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"expected an http:// or https:// URL, got {url.split('?')[0]!r}")
        return url

    def resolved_url(self) -> str:
        def sub(match: re.Match[str]) -> str:
            var = match.group(1)
            if var not in os.environ:
                raise SalesmlError(
                    f"webhook.url refers to ${{{var}}} but the environment variable {var} is not set"
                )
            return os.environ[var]

        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, self.url)


class AlertRules(_Strict):
    rules: list[Rule] = Field(min_length=1)
    webhook: Webhook | None = None


def load_rules(path: str | os.PathLike[str]) -> AlertRules:
    """Read and validate an alert rules file; every problem is named by its place (``rules.2.threshold``)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SalesmlError(f"alert rules file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SalesmlError(f"alert rules file {path} cannot be read: {err}") from None
    except yaml.YAMLError as err:
        raise SalesmlError(f"alert rules file {path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise SalesmlError(
            f"alert rules file {path}: expected a mapping with 'rules' (and 'webhook'), got {raw!r}"
        )
    try:
        rules = AlertRules.model_validate(raw)
    except ValidationError as err:
        lines = [f"invalid alert rules {path}:"]
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "(top level)"
            lines.append(f"  - {where}: {e['msg'].removeprefix('Value error, ')}")
        raise SalesmlError("\n".join(lines)) from None
    if rules.webhook is not None:
        rules.webhook.resolved_url()  # a variable that is not set fails now, not when an alert fires
    return rules


DEFAULT_RULES = AlertRules(
    rules=[
        Rule(name="sales outside its forecast range", metric="forecast.anomaly_p", threshold=0.01),
        *(
            Rule(
                name=f"{p} feature drift",
                metric=f"{p}.drift_p",
                threshold=0.01,
                min_effect=0.1,
                min_samples=100,
            )
            for p in ("churn", "leads")
        ),
        *(
            Rule(
                name=f"{p} score drift",
                metric=f"{p}.score_drift_p",
                threshold=0.01,
                min_effect=0.1,
                min_samples=100,
            )
            for p in ("churn", "leads")
        ),
        *(
            Rule(name=f"{p} calibration", metric=f"{p}.calibration_error", threshold=0.1, min_samples=200)
            for p in ("churn", "leads")
        ),
    ]
)


@dataclass(frozen=True)
class Alert:
    """A finding that fired a rule."""

    rule: str
    product: str
    metric: str
    level: str | None
    node: str | None
    period: str | None
    value: float
    threshold: float
    n: int
    effect: float | None
    message: str

    def to_message(self, *, installation: str | None = None) -> dict[str, Any]:
        """The alert as a JSON-ready message (what the webhook receives)."""
        out = {
            "rule": self.rule,
            "product": self.product,
            "metric": self.metric,
            "level": self.level,
            "node": self.node,
            "period": self.period,
            "value": _num(self.value),
            "threshold": self.threshold,
            "n": self.n,
            "effect": _num(self.effect),
            "message": self.message,
        }
        if installation is not None:
            out["installation"] = installation
        return out


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _text(v: Any) -> str | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA else str(v)


def evaluate_rules(rules: AlertRules, findings: pd.DataFrame) -> list[Alert]:
    """One alert per (rule, finding) that fires it; by product, metric, then the most money / effect first."""
    missing = [c for c in FINDING_COLUMNS if c not in findings.columns]
    if missing:
        raise SalesmlError(f"findings lack the column(s) {missing}; expected {FINDING_COLUMNS}")
    alerts = []
    for rule in rules.rules:
        direction = METRICS[rule.metric][0]
        f = findings[findings["metric"] == rule.metric]
        if rule.level is not None:
            f = f[f["level"] == rule.level]
        if rule.node is not None:
            f = f[f["node"] == rule.node]
        f = f[f["n"] >= rule.min_samples]
        if rule.min_effect is not None:
            f = f[f["effect"].astype(float) >= rule.min_effect]  # NaN never passes
        values = f["value"].astype(float)
        f = f[values < rule.threshold] if direction == "below" else f[values > rule.threshold]
        for r in f.itertuples(index=False):
            effect = None if pd.isna(r.effect) else float(r.effect)
            alerts.append(
                Alert(
                    rule=rule.name,
                    product=str(r.product),
                    metric=str(r.metric),
                    level=_text(r.level),
                    node=_text(r.node),
                    period=_text(r.period),
                    value=float(r.value),
                    threshold=rule.threshold,
                    n=int(r.n),
                    effect=effect,
                    message=str(r.message),
                )
            )
    return sorted(alerts, key=lambda a: (a.product, a.metric, -(a.effect or 0.0), a.value))
