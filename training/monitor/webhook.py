"""Posting alerts to a webhook: one JSON message per alert, a timeout per attempt, a bounded number of retries
with exponential backoff on connection errors, timeouts, 429 and 5xx; never raises, never logs the URL."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from training.monitor.rules import Alert, Webhook

__all__ = ["DeliveryReport", "send_alerts"]


@dataclass(frozen=True)
class DeliveryReport:
    """How the delivery went: messages sent and failed, attempts made, a short reason per failure."""

    sent: int
    failed: int
    attempts: int
    errors: tuple[str, ...]


def send_alerts(
    webhook: Webhook, alerts: Sequence[Alert], *, sleep: Callable[[float], None] = time.sleep
) -> DeliveryReport:
    """POST each alert's :meth:`~training.monitor.rules.Alert.to_message` to the webhook."""
    url = webhook.resolved_url()
    sent = failed = attempts = 0
    errors: list[str] = []
    for alert in alerts:
        body = json.dumps(alert.to_message()).encode()
        reason = ""
        for attempt in range(webhook.retries + 1):
            attempts += 1
            retry, reason = _post(url, body, webhook.timeout_seconds)
            if not reason:
                sent += 1
                break
            if not retry:
                break
            if attempt < webhook.retries:
                sleep(webhook.backoff_seconds * 2**attempt)
        if reason:
            failed += 1
            errors.append(f"rule {alert.rule!r}: {reason}")
    return DeliveryReport(sent=sent, failed=failed, attempts=attempts, errors=tuple(errors))


def _post(url: str, body: bytes, timeout: float) -> tuple[bool, str]:
    """One attempt: ``(worth retrying, reason)``; an empty reason is a delivery."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "salesml"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - http(s) checked in Webhook
            answer.read()
        return False, ""
    except urllib.error.HTTPError as err:
        return err.code == 429 or err.code >= 500, f"HTTP {err.code}"
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
        why = getattr(err, "reason", err)
        return True, f"{type(why).__name__}: {str(why)[:120]}"
