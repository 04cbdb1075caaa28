"""Alert rules read and validated like specs, evaluated on findings; the webhook: one message per alert, bounded
retries, and a receiver that is down costs attempts, never an exception."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.errors import SalesmlError
from training.monitor.rules import DEFAULT_RULES, FINDING_COLUMNS, Alert, Webhook, evaluate_rules, load_rules
from training.monitor.webhook import send_alerts


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def test_a_valid_file_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "s3cret")
    rules = load_rules(
        _write(
            tmp_path,
            "rules:\n"
            "  - {name: west, metric: forecast.anomaly_p, node: region=West, threshold: 0.05}\n"
            "  - {name: drift, metric: churn.drift_p, threshold: 0.01, min_effect: 0.1, min_samples: 100}\n"
            "webhook: {url: 'https://hooks.example.com/x/${HOOK_TOKEN}', retries: 2}\n",
        )
    )
    assert [r.name for r in rules.rules] == ["west", "drift"]
    assert rules.webhook is not None and rules.webhook.resolved_url().endswith("/x/s3cret")


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("rules:\n  - {name: a, metric: sales.nope, threshold: 0.1}\n", "rules.0.metric"),
        ("rules:\n  - {name: a, metric: forecast.anomaly_p, threshold: 1.5}\n", "rules.0"),
        ("rules:\n  - {name: a, metric: forecast.wape, threshold: -1}\n", "must be >= 0"),
        (
            "rules:\n  - {name: a, metric: forecast.wape, threshold: 0.3, level: x, node: y}\n",
            "at most one of",
        ),
        ("rules:\n  - {name: a, metric: forecast.wape, threshold: 0.3, colour: red}\n", "rules.0.colour"),
        (
            "rules:\n  - {name: a, metric: forecast.wape, threshold: 0.3, min_samples: 0}\n",
            "rules.0.min_samples",
        ),
        ("rules: []\n", "rules: List should have at least 1 item"),
        (
            "rules:\n  - {name: a, metric: forecast.wape, threshold: 0.3}\nwebhook: {url: ftp://x}\n",
            "webhook.url",
        ),
        ("rules: [\n", "is not valid YAML"),
        ("just text\n", "expected a mapping"),
    ],
    ids=[
        "metric",
        "p-range",
        "negative",
        "level-and-node",
        "unknown-key",
        "min-samples",
        "empty",
        "url",
        "yaml",
        "scalar",
    ],
)
def test_bad_rules_name_the_file_and_the_place(tmp_path: Path, text: str, place: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SalesmlError) as err:
        load_rules(path)
    assert str(path) in str(err.value) and place in str(err.value), str(err.value)


def test_a_missing_file_or_an_unset_variable_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SalesmlError, match="does not exist"):
        load_rules(tmp_path / "none.yaml")
    monkeypatch.delenv("NOT_SET_HOOK", raising=False)
    path = _write(
        tmp_path,
        "rules:\n  - {name: a, metric: forecast.wape, threshold: 0.3}\nwebhook: {url: 'http://h/${NOT_SET_HOOK}'}\n",
    )
    with pytest.raises(SalesmlError, match="NOT_SET_HOOK is not set"):
        load_rules(path)


def _findings() -> pd.DataFrame:
    rows = [
        ("sales_forecast", "forecast.anomaly_p", "region", "region=West", "2025-11-02", 0.001, 1, 5000.0),
        ("sales_forecast", "forecast.anomaly_p", "region", "region=North", "2025-11-02", 0.004, 1, 9000.0),
        ("sales_forecast", "forecast.anomaly_p", "bottom", "x|y", "2025-11-02", 0.002, 1, 10.0),
        ("sales_forecast", "forecast.anomaly_p", "region", "region=South", "2025-11-02", 0.5, 1, 100.0),
        ("sales_forecast", "forecast.coverage_95", "region", None, None, 0.70, 12, np.nan),
        ("sales_forecast", "forecast.coverage_95", "total", None, None, 0.97, 4, np.nan),
        ("churn_risk", "churn.drift_p", None, "recency_days", None, 1e-9, 5000, 0.3),
        ("churn_risk", "churn.drift_p", None, "tickets", None, 1e-9, 5000, 0.02),  # detectable, too small
        ("churn_risk", "churn.drift_p", None, "tenure", None, 1e-9, 50, 0.5),  # too few rows
        ("churn_risk", "churn.drift_p", None, "odd", None, 1e-9, 5000, np.nan),  # no effect size
    ]
    frame = pd.DataFrame(rows, columns=FINDING_COLUMNS[:-1])
    frame["message"] = frame["node"].astype(str)
    return frame


def test_rules_fire_by_direction_place_sample_size_and_effect(tmp_path: Path) -> None:
    rules = load_rules(
        _write(
            tmp_path,
            "rules:\n"
            "  - {name: regions, metric: forecast.anomaly_p, level: region, threshold: 0.01}\n"
            "  - {name: coverage, metric: forecast.coverage_95, threshold: 0.8, min_samples: 10}\n"
            "  - {name: drift, metric: churn.drift_p, threshold: 0.01, min_effect: 0.1, min_samples: 100}\n",
        )
    )
    alerts = evaluate_rules(rules, _findings())
    assert [(a.rule, a.node) for a in alerts] == [
        ("drift", "recency_days"),
        ("regions", "region=North"),  # more money first
        ("regions", "region=West"),
        ("coverage", None),
    ]
    assert alerts[-1].level == "region" and alerts[-1].value == 0.70
    with pytest.raises(SalesmlError, match=r"lack the column\(s\) \['effect'"):
        evaluate_rules(rules, _findings().drop(columns="effect"))


def test_the_default_rules_fire_on_anomalies_at_every_level() -> None:
    alerts = evaluate_rules(DEFAULT_RULES, _findings())
    assert {a.node for a in alerts if a.metric == "forecast.anomaly_p"} == {
        "region=West",
        "region=North",
        "x|y",
    }


def _alerts(n: int) -> list[Alert]:
    return [
        Alert(
            "r",
            "sales_forecast",
            "forecast.anomaly_p",
            "region",
            f"region=N{i}",
            "2025-11-02",
            1e-4,
            0.01,
            1,
            50.0,
            f"m{i}",
        )
        for i in range(n)
    ]


class _Hook(BaseHTTPRequestHandler):
    answers: list[int] = []
    bodies: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append(json.loads(body))
        code = type(self).answers.pop(0) if type(self).answers else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook():
    _Hook.answers, _Hook.bodies = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/alerts"
    server.shutdown()


def test_one_message_per_alert_with_the_alert_and_nothing_else(hook: str) -> None:
    report = send_alerts(Webhook(url=hook), _alerts(3))
    assert (report.sent, report.failed, report.attempts) == (3, 0, 3)
    assert [b["node"] for b in _Hook.bodies] == ["region=N0", "region=N1", "region=N2"]
    assert set(_Hook.bodies[0]) == {
        "rule",
        "product",
        "metric",
        "level",
        "node",
        "period",
        "value",
        "threshold",
        "n",
        "effect",
        "message",
    }


def test_5xx_is_retried_with_backoff_and_4xx_is_not(hook: str) -> None:
    waits: list[float] = []
    _Hook.answers = [500, 503]
    report = send_alerts(Webhook(url=hook, retries=3, backoff_seconds=0.5), _alerts(1), sleep=waits.append)
    assert (report.sent, report.attempts, waits) == (1, 3, [0.5, 1.0])
    _Hook.answers = [400]
    report = send_alerts(Webhook(url=hook, retries=3), _alerts(1), sleep=waits.append)
    assert (report.sent, report.failed, report.attempts) == (0, 1, 1) and "HTTP 400" in report.errors[0]


def test_a_receiver_that_is_down_costs_bounded_attempts_and_no_exception() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hook = Webhook(url=f"http://127.0.0.1:{port}/x?token=abc", retries=2, timeout_seconds=1)
    report = send_alerts(hook, _alerts(2), sleep=lambda s: None)
    assert (report.sent, report.failed, report.attempts) == (0, 2, 6)
    assert not [e for e in report.errors if "abc" in e or str(port) in e]  # neither the URL nor its token


def test_the_monitor_command_says_what_is_wrong_and_exits_2(
    salesml, fresh_home: Path, tmp_path: Path, small_synthetic_spec: Path
) -> None:
    unknown = salesml("monitor", "--dataset", "no-such-data-set")
    assert unknown.returncode == 2 and "no-such-data-set" in unknown.stderr
    bad_day = salesml("monitor", "--dataset", str(small_synthetic_spec), "--as-of", "2025-13-01")
    assert bad_day.returncode == 2 and "--as-of must be a date written YYYY-MM-DD" in bad_day.stderr
    rules = _write(tmp_path, "rules:\n  - {name: a, metric: nope, threshold: 0.1}\n")
    bad_rules = salesml("monitor", "--dataset", str(small_synthetic_spec), "--rules", str(rules))
    assert bad_rules.returncode == 2 and "rules.0.metric" in bad_rules.stderr
    nothing = salesml("monitor", "--dataset", str(small_synthetic_spec), "--no-log")
    assert nothing.returncode == 2 and "has no champion to monitor" in nothing.stderr
