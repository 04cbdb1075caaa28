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
      url: https://hooks.example.com/salesml/${HOOK_TOKEN}   # or url: ${SALESML_WEBHOOK_URL}
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
from urllib.parse import urlsplit

import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

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

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


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

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, t: float, info: ValidationInfo) -> float:
        if not math.isfinite(t):
            raise ValueError(f"expected a finite number, got {t}")
        metric = info.data.get("metric")
        if metric is None:  # the metric's own error is reported instead
            return t
        direction, kind = METRICS[metric]
        if kind == "probability" and not 0 < t < 1:
            raise ValueError(
                f"{metric} is a probability (fires {direction} the threshold): expected 0 < threshold < 1, got {t}"
            )
        if kind == "share" and not 0 < t <= 1:
            raise ValueError(
                f"{metric} is a share (fires {direction} the threshold): expected 0 < threshold <= 1, got {t}"
            )
        if kind == "nonnegative" and t < 0:
            raise ValueError(f"{metric} is never negative: the threshold must be >= 0, got {t}")
        return t

    @model_validator(mode="after")
    def _one_place(self) -> Rule:
        if self.level is not None and self.node is not None:
            raise ValueError(
                f"give at most one of 'level' or 'node', got level {self.level!r} and node {self.node!r}"
            )
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
        if url.startswith("${"):  # the scheme comes from the environment: checked by resolved_url
            return url
        problem = _url_problem(_VAR.sub("1", url))  # a variable may stand for a host, a port or a path
        if problem:
            raise ValueError(problem)
        return url

    def variables(self) -> list[str]:
        """The environment variables the URL refers to as ``${VAR}``, in order."""
        return _VAR.findall(self.url)

    def resolved_url(self) -> str:
        """The URL with every ``${VAR}`` replaced by the environment variable's value.

        Returns:
            The URL to post to.

        Raises:
            SalesmlError: a variable is not set, or the URL it gives is not an http(s) URL.
        """

        def sub(match: re.Match[str]) -> str:
            var = match.group(1)
            if var not in os.environ:
                raise SalesmlError(
                    f"webhook.url: refers to ${{{var}}} but the environment variable {var} is not set; "
                    "set it, or write the URL out"
                )
            return os.environ[var]

        url = _VAR.sub(sub, self.url)
        problem = _url_problem(url)
        if problem:
            raise SalesmlError(f"webhook.url: once the environment variables are read, {problem}")
        return url


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be posted to, in words that never repeat the URL (it may hold a token)."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return "expected an http:// or https:// URL without spaces or control characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return "expected an http:// or https:// URL, got text that is not a URL"
    if parts.scheme.lower() not in ("http", "https"):
        got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        return f"expected an http:// or https:// URL, got {got}"
    if not host:
        return "expected an http:// or https:// URL with a host name, got none"
    return None


class AlertRules(_Strict):
    """A rules file: the rules (at least one) and, optionally, the webhook that receives their alerts."""

    rules: list[Rule] = Field(min_length=1)
    webhook: Webhook | None = None


def load_rules(path: str | os.PathLike[str]) -> AlertRules:
    """Read and validate an alert rules file.

    Args:
        path: a YAML file shaped like the example at the top of this module.

    Returns:
        The validated rules; a webhook URL's ``${VAR}`` references have been checked against the environment.

    Raises:
        SalesmlError: the file is missing, unreadable or not YAML, or breaks a rule; the message names the file
            and every problem by its place (``rules.2.threshold: ...``).
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as stream:
            raw = yaml.safe_load(stream)
    except FileNotFoundError:
        raise SalesmlError(f"alert rules file {path} does not exist") from None
    except yaml.YAMLError as err:
        raise SalesmlError(f"alert rules file {path} is not valid YAML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SalesmlError(f"alert rules file {path} cannot be read as UTF-8 text: {err}") from None
    if not isinstance(raw, dict):
        raise SalesmlError(
            f"alert rules file {path}: expected a mapping with 'rules' (and optionally 'webhook'), "
            f"got {type(raw).__name__ if raw is not None else 'an empty file'}"
        )
    try:
        rules = AlertRules.model_validate(raw)
    except ValidationError as err:
        raise SalesmlError(_format_validation_error(path, err)) from None
    if rules.webhook is not None:
        try:
            rules.webhook.resolved_url()  # a variable that is not set fails now, not when an alert fires
        except SalesmlError as err:
            raise SalesmlError(f"invalid alert rules {path}:\n  - {err}") from None
    return rules


def _format_validation_error(path: Path, err: ValidationError) -> str:
    lines = [f"invalid alert rules {path}:"]
    for e in err.errors():
        loc = tuple(e["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = f"unknown key; expected one of {_keys_at(loc)}"
        elif isinstance(e.get("input"), str | int | float) and "got" not in msg and loc[-1:] != ("url",):
            msg = f"{msg}; got {e['input']!r}"
        lines.append(f"  - {where}: {msg}")
    return "\n".join(lines)


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed where an unknown key ``loc`` was found."""
    if len(loc) == 3 and loc[0] == "rules":
        return list(Rule.model_fields)
    if len(loc) == 2 and loc[0] == "webhook":
        return list(Webhook.model_fields)
    return list(AlertRules.model_fields)


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
        """The alert as a JSON-ready message (what the webhook receives).

        Args:
            installation: a name for this salesml installation, added as ``installation`` when given.

        Returns:
            Plain str / int / float / None values; a NaN or infinite number becomes None.
        """
        out: dict[str, Any] = {
            "rule": self.rule,
            "product": self.product,
            "metric": self.metric,
            "level": self.level,
            "node": self.node,
            "period": self.period,
            "value": _num(self.value),
            "threshold": _num(self.threshold),
            "n": int(self.n),
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
    """The alerts the findings raise: one per (rule, finding) that fires the rule.

    A finding fires a rule when its metric is the rule's, its level / node match when the rule sets them, its
    ``n`` reaches ``min_samples``, its effect reaches ``min_effect`` when set (a NaN effect never does) and its
    value crosses the threshold in the metric's direction (see :data:`METRICS`).

    Args:
        rules: the rules to apply.
        findings: one row per finding, with the columns :data:`FINDING_COLUMNS`.

    Returns:
        Alerts sorted by product, metric, then the largest effect (money, PSI) first, then the value;
        alerts without an effect come after those with one.

    Raises:
        SalesmlError: ``findings`` lacks some of the columns.
    """
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
        f = f[pd.to_numeric(f["n"], errors="coerce") >= rule.min_samples]
        if rule.min_effect is not None:
            f = f[pd.to_numeric(f["effect"], errors="coerce") >= rule.min_effect]  # NaN never passes
        values = pd.to_numeric(f["value"], errors="coerce")
        f = f[values < rule.threshold] if direction == "below" else f[values > rule.threshold]
        for r in f.itertuples(index=False):
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
                    effect=None if pd.isna(r.effect) else _num(r.effect),
                    message=str(r.message),
                )
            )
    return sorted(alerts, key=lambda a: (a.product, a.metric, a.effect is None, -(a.effect or 0.0), a.value))
