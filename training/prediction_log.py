"""The prediction log: every score and forecast the service answers, recorded off the request path.

One row per scored entity (``prediction_log`` table, through SQLAlchemy: SQLite under ``SALESML_HOME`` by
default, any PostgreSQL URL in ``SALESML_PREDICTION_LOG_URL``; ``SALESML_PREDICTION_LOG=off`` turns it off):
``logged_at`` (UTC), ``product``, ``model_name``, ``model_version``, ``entity`` (a customer or lead id as an
HMAC-SHA256 with a per-installation salt, never in clear; a forecast node id as it is: the organisation's
structure, not a person), ``score`` (the probability, or the node's next-quarter mean), ``band`` (tier / grade)
and ``detail`` (forecasts: the current quarter's mean).

The request thread only appends a tuple of the lists it already has to a bounded queue (microseconds); a daemon
thread hashes the ids and inserts in batches. A full queue drops the newest records and counts them
(:attr:`PredictionLog.dropped`): the log never slows or fails an answer.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "TABLE",
    "PredictionLog",
    "entity_hash",
    "installation_salt",
    "prediction_log_from_env",
    "read_log",
]

TABLE = "prediction_log"
HASHED_PRODUCTS = {"churn_risk", "lead_score"}  # products whose entity is a person's or a company's id
logger = logging.getLogger("salesml.prediction_log")


def installation_salt(home: Path) -> bytes:
    """This installation's salt (``home/prediction_log.salt``, 32 random bytes, owner-only), made on first use."""
    path = home / "prediction_log.salt"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        home.mkdir(parents=True, exist_ok=True)
        salt = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another worker made it first
            return path.read_bytes()
        with os.fdopen(fd, "wb") as fh:
            fh.write(salt)
        return salt


def entity_hash(salt: bytes, entity: str) -> str:
    """An entity id as the log keeps it: the first 32 hex digits of HMAC-SHA256(salt, id)."""
    return hmac.new(salt, entity.encode(), hashlib.sha256).hexdigest()[:32]


class PredictionLog:
    """A background writer of prediction records.

    Args:
        url: a SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``).
        salt: the installation's salt (:func:`installation_salt`).
        max_queue: records waiting at most (answers, not rows); beyond it new ones are dropped and counted.
        flush_seconds: how long the writer gathers records before one insert.
    """

    def __init__(self, url: str, salt: bytes, *, max_queue: int = 50_000, flush_seconds: float = 0.5) -> None:
        self.url = url
        self._salt = salt
        self._queue: queue.Queue[tuple | None] = queue.Queue(maxsize=max_queue)
        self._flush = flush_seconds
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def record(
        self,
        product: str,
        model_name: str,
        model_version: str,
        entities: Sequence[str],
        scores: Sequence[float | None],
        bands: Sequence[str | None] | None = None,
        details: Sequence[str | None] | None = None,
    ) -> None:
        """Queue one answer's rows (called on the request path: no hashing, no I/O here)."""
        if not entities:
            return
        try:
            self._queue.put_nowait(
                (time.time(), product, model_name, model_version, entities, scores, bands, details)
            )
        except queue.Full:
            self.dropped += len(entities)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record is written (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:  # every queued answer written (or counted as dropped)
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout=5)

    # -- the writer thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        import sqlalchemy as sa

        try:
            engine = sa.create_engine(self.url)
            table = _table(sa.MetaData())
            table.metadata.create_all(engine)
        except Exception as err:  # noqa: BLE001 - unusable store: say so once, count what is not written
            logger.warning("prediction log at %s not usable (%s): nothing is recorded", _safe(self.url), err)
            engine = table = None
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            deadline = time.monotonic() + self._flush
            while time.monotonic() < deadline:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._write(engine, table, batch)
                    return
                batch.append(nxt)
            self._write(engine, table, batch)
            for _ in batch:
                self._queue.task_done()

    def _write(self, engine: Any, table: Any, batch: list[tuple]) -> None:
        if engine is None:
            self.dropped += sum(len(item[4]) for item in batch)
            return
        rows = []
        for logged, product, name, version, entities, scores, bands, details in batch:
            at = datetime.fromtimestamp(logged, UTC).replace(tzinfo=None)
            hashed = product in HASHED_PRODUCTS
            for j, entity in enumerate(entities):
                rows.append(
                    {
                        "logged_at": at,
                        "product": product,
                        "model_name": name,
                        "model_version": str(version),
                        "entity": entity_hash(self._salt, str(entity)) if hashed else str(entity),
                        "score": None if scores[j] is None else float(scores[j]),
                        "band": None if bands is None or bands[j] is None else str(bands[j]),
                        "detail": None if details is None or details[j] is None else str(details[j]),
                    }
                )
        try:
            with engine.begin() as conn:
                conn.execute(table.insert(), rows)
            self.written += len(rows)
        except Exception as err:  # noqa: BLE001 - a log that cannot be written must not take the service down
            self.dropped += len(rows)
            logger.warning("prediction log: %d rows not written (%s)", len(rows), type(err).__name__)


def _safe(url: str) -> str:
    """A URL without its password, for log lines."""
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "(unparsable URL)"


def _table(metadata: Any) -> Any:
    import sqlalchemy as sa

    return sa.Table(
        TABLE,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("logged_at", sa.DateTime, nullable=False, index=True),
        sa.Column("product", sa.String(32), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("entity", sa.String(400), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("band", sa.String(32)),
        sa.Column("detail", sa.String(200)),
    )


def prediction_log_from_env(home: Path) -> PredictionLog | None:
    """The log the environment asks for: off with ``SALESML_PREDICTION_LOG=off``; else at
    ``SALESML_PREDICTION_LOG_URL``, or SQLite at ``home/prediction_log.sqlite``."""
    if os.environ.get("SALESML_PREDICTION_LOG", "on").strip().lower() in {"off", "0", "false", "no"}:
        return None
    url = os.environ.get("SALESML_PREDICTION_LOG_URL") or f"sqlite:///{home / 'prediction_log.sqlite'}"
    return PredictionLog(url, installation_salt(home))


def read_log(url: str, *, product: str | None = None) -> Any:
    """The log as a frame (``product`` to filter), oldest first."""
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    table = _table(sa.MetaData())
    query = sa.select(table).order_by(table.c.id)
    if product is not None:
        query = query.where(table.c.product == product)
    with engine.connect() as conn:
        return pd.read_sql(query, conn)
