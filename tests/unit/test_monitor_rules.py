"""Alert rules for ``salesml monitor``: the YAML file and its errors, which findings fire which rule, and the
webhook against a real HTTP receiver on loopback (answering, failing, redirecting, down, hanging)."""

from __future__ import annotations

import base64
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from features.errors import SalesmlError
from training.monitor.rules import (
    DEFAULT_RULES,
    FINDING_COLUMNS,
    METRICS,
    Alert,
    AlertRules,
    Rule,
    Webhook,
    evaluate_rules,
    load_rules,
)
from training.monitor.webhook import send_alerts

# The contract, written out independently of METRICS: which way each metric fires.
FIRES_BELOW = {
    "forecast.anomaly_p",
    "forecast.coverage_80",
    "forecast.coverage_95",
    "churn.auc",
    "leads.auc",
    "churn.drift_p",
    "leads.drift_p",
    "churn.score_drift_p",
    "leads.score_drift_p",
}
FIRES_ABOVE = {
    "forecast.wape",
    "forecast.abs_bias",
    "churn.calibration_error",
    "leads.calibration_error",
}
PROBABILITIES = {m for m in FIRES_BELOW if m.endswith("_p")}


def _write(tmp_path: Path, text: str, name: str = "alert-rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------- the rules file


def test_a_valid_file_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESML_TEST_HOOK_TOKEN", "t0ken")
    path = _write(
        tmp_path,
        """
rules:
  - name: regions
    metric: forecast.anomaly_p
    level: region
    threshold: 0.01
  - {name: west, metric: forecast.wape, node: region=West, threshold: 0.3, min_samples: 4}
  - {name: drift, metric: churn.drift_p, threshold: 0.01, min_effect: 0.1, min_samples: 100}
  - {name: coverage, metric: forecast.coverage_95, threshold: 1}
webhook:
  url: https://hooks.example.com/salesml/${SALESML_TEST_HOOK_TOKEN}?channel=ops
  timeout_seconds: 2.5
  retries: 0
""",
    )
    rules = load_rules(path)
    assert [(r.name, r.metric, r.level, r.node) for r in rules.rules] == [
        ("regions", "forecast.anomaly_p", "region", None),
        ("west", "forecast.wape", None, "region=West"),
        ("drift", "churn.drift_p", None, None),
        ("coverage", "forecast.coverage_95", None, None),
    ]
    assert (rules.rules[1].min_samples, rules.rules[2].min_effect, rules.rules[0].min_effect) == (
        4,
        0.1,
        None,
    )
    hook = rules.webhook
    assert hook is not None
    assert (hook.timeout_seconds, hook.retries, hook.backoff_seconds) == (2.5, 0, 0.5)
    assert hook.resolved_url() == "https://hooks.example.com/salesml/t0ken?channel=ops"
    assert (
        load_rules(_write(tmp_path, "rules: [{name: a, metric: leads.auc, threshold: 0.6}]\n")).webhook
        is None
    )


def test_a_variable_may_give_the_whole_url_or_a_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(
        tmp_path,
        "rules: [{name: a, metric: forecast.wape, threshold: 0.3}]\nwebhook: {url: '${SALESML_TEST_HOOK_URL}'}\n",
    )
    monkeypatch.setenv("SALESML_TEST_HOOK_URL", "http://127.0.0.1:9/hook")
    assert load_rules(path).webhook.resolved_url() == "http://127.0.0.1:9/hook"
    port = _write(
        tmp_path,
        "rules: [{name: a, metric: leads.auc, threshold: 0.6}]\nwebhook: {url: 'http://h:${SALESML_TEST_PORT}/x'}\n",
        "port.yaml",
    )
    monkeypatch.setenv("SALESML_TEST_PORT", "8080")
    assert load_rules(port).webhook.resolved_url() == "http://h:8080/x"
    monkeypatch.setenv("SALESML_TEST_HOOK_URL", "ftp://files.example.com/secret-path")
    with pytest.raises(SalesmlError) as err:
        load_rules(path)
    message = str(err.value)
    assert str(path) in message and "webhook.url" in message and "scheme 'ftp'" in message
    assert "secret-path" not in message


_RULE = "rules:\n  - {name: a, metric: forecast.wape, threshold: 0.3}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "rules:\n  - {name: a, metric: sales.nope, threshold: 0.1}\n",
            ["rules.0.metric", "'forecast.anomaly_p'", "got 'sales.nope'"],
            id="unknown-metric",
        ),
        pytest.param(
            _RULE + "  - {name: b, metric: forecast.anomaly_p, threshold: 1.5}\n",
            ["rules.1.threshold", "expected 0 < threshold < 1, got 1.5"],
            id="p-value-above-1",
        ),
        pytest.param(
            "rules:\n  - {name: a, metric: churn.drift_p, threshold: 1}\n",
            ["rules.0.threshold", "expected 0 < threshold < 1"],
            id="p-value-1",
        ),
        pytest.param(
            "rules:\n  - {name: a, metric: forecast.coverage_80, threshold: 0}\n",
            ["rules.0.threshold", "expected 0 < threshold <= 1, got 0.0"],
            id="coverage-0",
        ),
        pytest.param(
            "rules:\n  - {name: a, metric: leads.auc, threshold: 1.2}\n",
            ["rules.0.threshold", "expected 0 < threshold <= 1"],
            id="auc-above-1",
        ),
        pytest.param(
            "rules:\n  - {name: a, metric: churn.calibration_error, threshold: -0.1}\n",
            ["rules.0.threshold", "the threshold must be >= 0, got -0.1"],
            id="negative-error",
        ),
        pytest.param(
            "rules:\n  - {name: a, metric: forecast.wape, threshold: .nan}\n",
            ["rules.0.threshold", "finite"],
            id="nan-threshold",
        ),
        pytest.param(
            "rules:\n  - {name: a, metric: forecast.wape, threshold: 0.3, level: region, node: region=West}\n",
            ["rules.0", "at most one of 'level' or 'node'"],
            id="level-and-node",
        ),
        pytest.param(
            "rules:\n  - {name: a, metric: forecast.wape, threshold: 0.3, colour: red}\n",
            ["rules.0.colour: unknown key; expected one of ['name', 'metric', 'level'"],
            id="unknown-key",
        ),
        pytest.param(
            _RULE + "webhooks: {url: 'http://h/x'}\n",
            ["webhooks: unknown key; expected one of ['rules', 'webhook']"],
            id="unknown-top-level-key",
        ),
        pytest.param(
            "rules:\n  - {name: a, metric: forecast.wape}\n",
            ["rules.0.threshold: Field required"],
            id="no-threshold",
        ),
        pytest.param(
            "rules:\n  - {name: a, metric: forecast.wape, threshold: 0.3, min_samples: 0}\n",
            ["rules.0.min_samples", "greater than or equal to 1"],
            id="min-samples-0",
        ),
        pytest.param(
            "rules:\n  - {name: a, metric: forecast.wape, threshold: 0.3, min_effect: -1}\n",
            ["rules.0.min_effect", "greater than or equal to 0"],
            id="negative-min-effect",
        ),
        pytest.param("rules: []\n", ["rules: List should have at least 1 item"], id="no-rules"),
        pytest.param(
            _RULE + "webhook: {url: 'ftp://user:pa55word@files.example.com/x'}\n",
            ["webhook.url", "expected an http:// or https:// URL, got scheme 'ftp'"],
            id="non-http-url",
        ),
        pytest.param(
            _RULE + "webhook: {url: 'https://'}\n", ["webhook.url", "with a host name"], id="url-without-host"
        ),
        pytest.param(
            _RULE + "webhook: {url: 'http://h/x', retries: 11, timeout_seconds: 0, backoff_seconds: 31}\n",
            ["webhook.retries", "webhook.timeout_seconds", "webhook.backoff_seconds"],
            id="webhook-limits",
        ),
        pytest.param("rules: [\n  - {name: a\n", ["is not valid YAML", "line"], id="bad-yaml"),
        pytest.param("", ["expected a mapping with 'rules'", "an empty file"], id="empty-file"),
        pytest.param("- a\n- b\n", ["expected a mapping with 'rules'", "got list"], id="a-list"),
    ],
)
def test_a_bad_file_names_the_file_the_place_and_what_was_expected(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SalesmlError) as err:
        load_rules(path)
    message = str(err.value)
    assert str(path) in message, message
    for part in expected:
        assert part in message, message
    assert "pa55word" not in message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "rules.yaml"
    with pytest.raises(SalesmlError, match="does not exist") as err:
        load_rules(path)
    assert str(path) in str(err.value)


def test_an_unset_variable_in_the_url_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SALESML_TEST_NOT_SET", raising=False)
    path = _write(tmp_path, _RULE + "webhook: {url: 'https://hooks.example.com/${SALESML_TEST_NOT_SET}'}\n")
    with pytest.raises(SalesmlError) as err:
        load_rules(path)
    message = str(err.value)
    assert str(path) in message and "webhook.url" in message
    assert "environment variable SALESML_TEST_NOT_SET is not set" in message


def test_each_metric_has_the_threshold_range_of_its_kind() -> None:
    assert set(METRICS) == FIRES_BELOW | FIRES_ABOVE
    for metric in METRICS:
        ok = (
            [0.5] + ([] if metric in PROBABILITIES else [1.0]) + ([0.0, 7.0] if metric in FIRES_ABOVE else [])
        )
        bad = [-0.01] + ([1.0] if metric in PROBABILITIES else [0.0, 1.01] if metric in FIRES_BELOW else [])
        for t in ok:
            assert Rule(name="r", metric=metric, threshold=t).threshold == t
        for t in bad:
            with pytest.raises(ValidationError, match="threshold"):
                Rule(name="r", metric=metric, threshold=t)


def test_the_default_rules() -> None:
    assert DEFAULT_RULES.webhook is None
    assert [
        (r.metric, r.level, r.node, r.threshold, r.min_samples, r.min_effect) for r in DEFAULT_RULES.rules
    ] == [
        ("forecast.anomaly_p", None, None, 0.01, 1, None),
        ("churn.drift_p", None, None, 0.01, 100, 0.1),
        ("leads.drift_p", None, None, 0.01, 100, 0.1),
        ("churn.score_drift_p", None, None, 0.01, 100, 0.1),
        ("leads.score_drift_p", None, None, 0.01, 100, 0.1),
        ("churn.calibration_error", None, None, 0.1, 200, None),
        ("leads.calibration_error", None, None, 0.1, 200, None),
    ]
    assert len({r.name for r in DEFAULT_RULES.rules}) == len(DEFAULT_RULES.rules)


# -------------------------------------------------------------------------------------------- evaluate_rules


def _finding(metric: str, value: float, **kw: object) -> dict[str, object]:
    product = {"forecast": "sales_forecast", "churn": "churn_risk", "leads": "lead_score"}[
        metric.split(".")[0]
    ]
    row: dict[str, object] = {
        "product": product,
        "metric": metric,
        "level": None,
        "node": None,
        "period": None,
        "value": value,
        "n": 1000,
        "effect": math.nan,
        "message": f"{metric} is {value}",
    }
    return row | kw


def _frame(*rows: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=FINDING_COLUMNS)


def _rules(*rules: Rule) -> AlertRules:
    return AlertRules(rules=list(rules))


@pytest.mark.parametrize("metric", sorted(FIRES_BELOW | FIRES_ABOVE))
def test_a_metric_fires_only_across_its_threshold_in_its_direction(metric: str) -> None:
    t = 0.4
    frame = _frame(
        *(_finding(metric, v, node=f"v{v}") for v in (0.1, t, 0.7)),
        _finding(
            "forecast.wape" if metric != "forecast.wape" else "forecast.abs_bias", 0.7
        ),  # another metric
        _finding("churn.auc" if metric != "churn.auc" else "leads.auc", 0.1),
        _finding(metric, math.nan, node="nan"),  # a value that is missing never fires
    )
    alerts = evaluate_rules(_rules(Rule(name="r", metric=metric, threshold=t)), frame)
    assert [a.node for a in alerts] == (["v0.1"] if metric in FIRES_BELOW else ["v0.7"])
    assert alerts[0].metric == metric and alerts[0].threshold == t and alerts[0].rule == "r"


def test_place_sample_size_and_effect_filters() -> None:
    p = "forecast.anomaly_p"
    frame = _frame(
        _finding(p, 0.001, level="region", node="region=West", period="2025-08-03", n=1, effect=500.0),
        _finding(p, 0.001, level="store", node="store=7", period="2025-08-03", n=1, effect=900.0),
        _finding(p, 0.2, level="region", node="region=East", period="2025-08-03", n=1, effect=9e6),  # no tail
        _finding("churn.drift_p", 1e-6, node="recency_days", n=5000, effect=0.35),
        _finding("churn.drift_p", 1e-6, node="tenure", n=100, effect=0.1),  # at both floors: fires
        _finding("churn.drift_p", 1e-6, node="tickets", n=5000, effect=0.02),  # detectable but small
        _finding("churn.drift_p", 1e-6, node="plan", n=99, effect=0.9),  # too few rows
        _finding("churn.drift_p", 1e-6, node="region", n=5000, effect=math.nan),  # no effect size
        _finding("churn.drift_p", 0.5, node="age", n=5000, effect=0.9),  # large but not significant
    )
    regions = Rule(name="regions", metric=p, level="region", threshold=0.01)
    store = Rule(name="store 7", metric=p, node="store=7", threshold=0.01)
    anywhere = Rule(name="anywhere", metric=p, threshold=0.01)
    drift = Rule(name="drift", metric="churn.drift_p", threshold=0.01, min_samples=100, min_effect=0.1)
    raw_drift = Rule(name="raw drift", metric="churn.drift_p", threshold=0.01)
    fired = {
        (a.rule, a.node) for a in evaluate_rules(_rules(regions, store, anywhere, drift, raw_drift), frame)
    }
    assert fired == {
        ("regions", "region=West"),
        ("store 7", "store=7"),
        ("anywhere", "region=West"),
        ("anywhere", "store=7"),
        ("drift", "recency_days"),
        ("drift", "tenure"),
        *(("raw drift", node) for node in ("recency_days", "tenure", "tickets", "plan", "region")),
    }


def test_one_alert_per_rule_and_finding_with_the_finding_in_it() -> None:
    frame = _frame(
        _finding(
            "forecast.anomaly_p",
            0.002,
            level="region",
            node="region=West",
            period="2025-08-03",
            n=3,
            effect=1234.5,
        )
    )
    two = _rules(
        Rule(name="strict", metric="forecast.anomaly_p", threshold=0.005),
        Rule(name="lenient", metric="forecast.anomaly_p", threshold=0.01),
    )
    alerts = evaluate_rules(two, frame)
    assert [a.rule for a in alerts] == ["strict", "lenient"]
    assert alerts[1] == Alert(
        rule="lenient",
        product="sales_forecast",
        metric="forecast.anomaly_p",
        level="region",
        node="region=West",
        period="2025-08-03",
        value=0.002,
        threshold=0.01,
        n=3,
        effect=1234.5,
        message="forecast.anomaly_p is 0.002",
    )
    assert evaluate_rules(two, frame.iloc[:0]) == []


def test_alerts_are_sorted_by_product_metric_then_money_then_value() -> None:
    frame = _frame(
        _finding("leads.calibration_error", 0.3, node="grade=A"),
        _finding("forecast.anomaly_p", 0.001, node="small", effect=10.0),
        _finding("churn.drift_p", 1e-4, node="b", effect=0.2),
        _finding("forecast.anomaly_p", 0.005, node="big", effect=9000.0),
        _finding("forecast.anomaly_p", 0.0001, node="no money", effect=math.nan),
        _finding("forecast.anomaly_p", 0.003, node="zero", effect=0.0),
        _finding("churn.drift_p", 1e-9, node="a", effect=0.2),
        _finding("forecast.anomaly_p", 0.002, node="middle", effect=500.0),
        _finding("churn.auc", 0.55),
    )
    rules = _rules(
        Rule(name="anomaly", metric="forecast.anomaly_p", threshold=0.01),
        Rule(name="drift", metric="churn.drift_p", threshold=0.01),
        Rule(name="auc", metric="churn.auc", threshold=0.6),
        Rule(name="calibration", metric="leads.calibration_error", threshold=0.1),
    )
    assert [(a.product, a.node) for a in evaluate_rules(rules, frame)] == [
        ("churn_risk", None),  # churn.auc before churn.drift_p
        ("churn_risk", "a"),  # same effect: the smaller p-value first
        ("churn_risk", "b"),
        ("lead_score", "grade=A"),
        ("sales_forecast", "big"),
        ("sales_forecast", "middle"),
        ("sales_forecast", "small"),
        ("sales_forecast", "zero"),
        ("sales_forecast", "no money"),  # an unknown effect goes last, even after an effect of 0
    ]


def test_findings_without_the_columns_are_refused_by_name() -> None:
    frame = _frame(_finding("churn.auc", 0.5)).drop(columns=["n", "effect"])
    with pytest.raises(SalesmlError, match=r"lack the column\(s\) \['n', 'effect'\]"):
        evaluate_rules(DEFAULT_RULES, frame)


def test_the_message_is_json_safe() -> None:
    alert = Alert("r", "churn_risk", "churn.auc", None, None, None, math.nan, 0.6, 10, math.inf, "m")
    message = alert.to_message(installation="eu-1")
    assert json.loads(json.dumps(message, allow_nan=False)) == message
    assert (message["value"], message["effect"], message["installation"]) == (None, None, "eu-1")
    assert "installation" not in alert.to_message()


# ------------------------------------------------------------------------------------------------ the webhook


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@contextmanager
def _receiver(answer: Callable[[int], int] = lambda seen: 200) -> Iterator[tuple[str, list[_Request]]]:
    """A real HTTP server on loopback; ``answer(seen)`` is the status for a body that arrived ``seen`` times
    before. Yields the URL to post to and the requests received."""
    got: list[_Request] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> int:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                seen = sum(r.body == body for r in got)
                got.append(_Request(self.command, self.path, dict(self.headers.items()), body))
            return seen

        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            code = answer(self._record())
            self.send_response(code)
            if 300 <= code < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            self._record()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks/salesml?channel=ops", got
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _alerts(n: int) -> list[Alert]:
    return [
        Alert(
            rule=f"rule {i}",
            product="sales_forecast",
            metric="forecast.anomaly_p",
            level="region" if i % 2 else None,
            node=f"region=R{i}",
            period="2025-08-03",
            value=10.0**-i,
            threshold=0.01,
            n=i + 1,
            effect=math.nan if i == 1 else 100.0 * i,
            message=f"region R{i} sold far from its forecast",
        )
        for i in range(n)
    ]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_message_per_alert_with_the_alerts_fields_and_nothing_else() -> None:
    alerts = _alerts(3)
    waits: list[float] = []
    with _receiver() as (url, got):
        report = send_alerts(Webhook(url=url), alerts, sleep=waits.append)
    assert (report.sent, report.failed, report.attempts, report.errors, waits) == (3, 0, 3, (), [])
    assert [r.method for r in got] == ["POST"] * 3
    assert {r.path for r in got} == {"/hooks/salesml?channel=ops"}
    assert {r.headers["Content-Type"] for r in got} == {"application/json"}
    assert [json.loads(r.body) for r in got] == [a.to_message() for a in alerts]
    assert json.loads(got[1].body)["effect"] is None and json.loads(got[0].body)["level"] is None


def test_user_info_in_the_url_is_sent_as_basic_auth() -> None:
    with _receiver() as (url, got):
        report = send_alerts(Webhook(url=url.replace("http://", "http://salesml:p%40ss@")), _alerts(1))
    assert report.sent == 1
    assert got[0].headers["Authorization"] == "Basic " + base64.b64encode(b"salesml:p@ss").decode()


def test_5xx_and_429_are_retried_with_exponential_backoff() -> None:
    waits: list[float] = []
    with _receiver(lambda seen: 500 if seen < 2 else 200) as (url, got):
        report = send_alerts(Webhook(url=url, retries=3, backoff_seconds=0.5), _alerts(1), sleep=waits.append)
    assert (report.sent, report.failed, report.attempts, waits) == (1, 0, 3, [0.5, 1.0])
    assert len(got) == 3 and len({r.body for r in got}) == 1

    waits.clear()
    with _receiver(lambda seen: (503, 429, 200)[min(seen, 2)]) as (url, got):
        report = send_alerts(
            Webhook(url=url, retries=3, backoff_seconds=0.25), _alerts(2), sleep=waits.append
        )
    assert (report.sent, report.failed, report.attempts, waits) == (2, 0, 6, [0.25, 0.5, 0.25, 0.5])
    assert sorted(json.loads(r.body)["node"] for r in got) == ["region=R0"] * 3 + ["region=R1"] * 3


def test_retries_are_bounded_and_the_failure_is_reported() -> None:
    waits: list[float] = []
    with _receiver(lambda seen: 502) as (url, got):
        report = send_alerts(Webhook(url=url, retries=2, backoff_seconds=1), _alerts(2), sleep=waits.append)
    assert (report.sent, report.failed, report.attempts, len(got)) == (0, 2, 6, 6)
    assert waits == [1, 2, 1, 2]  # no wait after the last attempt
    assert report.errors == ("rule 'rule 0': HTTP 502", "rule 'rule 1': HTTP 502")


@pytest.mark.parametrize("status", [400, 401, 404, 302])
def test_a_4xx_or_a_redirect_is_final(status: int) -> None:
    waits: list[float] = []
    with _receiver(lambda seen: status) as (url, got):
        report = send_alerts(Webhook(url=url, retries=3), _alerts(2), sleep=waits.append)
    assert (report.sent, report.failed, report.attempts, waits) == (0, 2, 2, [])
    assert [r.method for r in got] == ["POST", "POST"]  # a redirect is not followed as a GET
    assert all(f"HTTP {status}" in e for e in report.errors)


def test_a_receiver_that_is_down_costs_bounded_attempts_and_never_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SALESML_TEST_HOOK_TOKEN", "sup3r-s3cret")
    port = _closed_port()
    hook = Webhook(
        url=f"http://bot:pa55word@127.0.0.1:{port}/hook/${{SALESML_TEST_HOOK_TOKEN}}?key=abc123",
        retries=3,
        timeout_seconds=0.5,
    )
    alerts = _alerts(3)
    start = time.perf_counter()
    report = send_alerts(hook, alerts, sleep=lambda s: None)
    assert time.perf_counter() - start < 3
    assert (report.sent, report.failed, report.attempts) == (0, len(alerts), len(alerts) * (hook.retries + 1))
    assert [e.split(":")[0] for e in report.errors] == ["rule 'rule 0'", "rule 'rule 1'", "rule 'rule 2'"]
    for secret in ("sup3r-s3cret", "abc123", "key=", "pa55word", "/hook"):
        assert not [e for e in report.errors if secret in e], report.errors


def test_a_receiver_that_never_answers_times_out_and_is_retried() -> None:
    with socket.socket() as listener:  # accepts connections (the kernel's backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        hook = Webhook(url=f"http://127.0.0.1:{listener.getsockname()[1]}/x", retries=1, timeout_seconds=0.2)
        start = time.perf_counter()
        report = send_alerts(hook, _alerts(1), sleep=lambda s: None)
    assert time.perf_counter() - start < 3
    assert (report.sent, report.failed, report.attempts) == (0, 1, 2)
    assert "timed out" in report.errors[0]


def test_a_variable_unset_since_loading_is_a_failed_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SALESML_TEST_NOT_SET", raising=False)
    report = send_alerts(Webhook(url="https://h.example.com/${SALESML_TEST_NOT_SET}"), _alerts(2))
    assert (report.sent, report.failed, report.attempts) == (0, 2, 0)
    assert "SALESML_TEST_NOT_SET is not set" in report.errors[0]
