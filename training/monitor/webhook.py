"""Posting alerts to a webhook: one JSON message per alert, a timeout per attempt, a bounded number of retries
with exponential backoff on connection errors, timeouts, 429 and 5xx; never raises, never repeats the URL."""

from __future__ import annotations

import base64
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from features.errors import SalesmlError
from training.monitor.rules import Alert, Webhook

__all__ = ["DeliveryReport", "send_alerts"]


@dataclass(frozen=True)
class DeliveryReport:
    """How the delivery went.

    Attributes:
        sent: messages the receiver accepted (a 2xx answer).
        failed: messages given up on.
        attempts: POST requests made, retries included.
        errors: one short reason per failed message, naming its rule; never the URL or a credential in it.
    """

    sent: int
    failed: int
    attempts: int
    errors: tuple[str, ...]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a delivery: urllib would turn the POST into a GET without the message."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def send_alerts(
    webhook: Webhook, alerts: Sequence[Alert], *, sleep: Callable[[float], None] = time.sleep
) -> DeliveryReport:
    """POST each alert's :meth:`~training.monitor.rules.Alert.to_message` to the webhook, one message each.

    A connection error, a timeout, a 429 or a 5xx answer is retried up to ``webhook.retries`` times, waiting
    ``backoff_seconds * 2**attempt`` before retry ``attempt + 1``; any other answer outside 2xx is final.

    Args:
        webhook: where to post, the timeout per attempt, retries and backoff.
        alerts: the alerts, posted in this order.
        sleep: waits between attempts (tests pass a function that does not wait).

    Returns:
        What was sent and what failed; delivery problems are reported here, never raised.
    """
    try:
        url = webhook.resolved_url()
    except SalesmlError as err:  # load_rules checks this, but the environment may have changed since
        why = str(err)
        return DeliveryReport(0, len(alerts), 0, tuple(f"rule {a.rule!r}: {why}" for a in alerts))
    secrets = _secrets(webhook, url)
    url, headers = _basic_auth(url)
    sent = failed = attempts = 0
    errors: list[str] = []
    for alert in alerts:
        body = json.dumps(alert.to_message()).encode()
        reason = ""
        for attempt in range(webhook.retries + 1):
            attempts += 1
            retry, reason = _post(url, body, headers, webhook.timeout_seconds)
            if not reason:
                sent += 1
                break
            if not retry:
                break
            if attempt < webhook.retries:
                sleep(webhook.backoff_seconds * 2**attempt)
        if reason:
            failed += 1
            errors.append(f"rule {alert.rule!r}: {_scrub(reason, secrets)}")
    return DeliveryReport(sent=sent, failed=failed, attempts=attempts, errors=tuple(errors))


def _basic_auth(url: str) -> tuple[str, dict[str, str]]:
    """The URL without ``user:password@`` and the headers to send: user info becomes HTTP basic auth (urllib
    would otherwise take it for part of the host name)."""
    headers = {"Content-Type": "application/json", "User-Agent": "salesml"}
    parts = urlsplit(url)
    if parts.username is None:
        return url, headers
    user, password = unquote(parts.username), unquote(parts.password or "")
    headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc)), headers


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[bool, str]:
    """One attempt: ``(worth retrying, reason)``; an empty reason is a delivery."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            answer.read()
        return False, ""
    except urllib.error.HTTPError as err:
        err.close()
        return err.code == 429 or err.code >= 500, f"HTTP {err.code}"
    except (ValueError, http.client.InvalidURL) as err:  # a URL urllib cannot send: retrying will not help
        return False, f"{type(err).__name__}: the URL cannot be sent"
    except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, refused, a garbled answer
        why = getattr(err, "reason", err)
        name = type(err if isinstance(why, str) else why).__name__
        text = str(why)[:120]
        return True, f"{name}: {text}" if text else name


def _secrets(webhook: Webhook, url: str) -> list[str]:
    """Pieces of the URL an error message must not repeat: the URL, its path and query, user info, and the
    values read from the environment."""
    parts = urlsplit(url)
    pieces = [url, parts.path, parts.query, parts.fragment, parts.username, parts.password]
    pieces += [os.environ.get(var, "") for var in webhook.variables()]
    return sorted({p for p in pieces if p and p != "/"}, key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    for piece in secrets:
        text = text.replace(piece, "***")
    return text
