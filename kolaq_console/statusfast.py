"""`status --json` without SQLAlchemy, SQLModel or Huey, when nothing is unusual.

Importing those libraries costs more CPU than everything `status` does with them (bench/
README.md, startup.py). When the database is a plain SQLite file or PostgreSQL URL, its schema is
at the head, every figure reads without error and the queue's schedule is empty, the document
is built here from the standard library's sqlite3, psycopg and redis-py. Anything else (a
problem to report, an unknown URL form, scheduled retries to tell apart) returns None and the
caller runs the full path (status.collect), which words every problem: the document is the
same either way (tests/test_status_fast.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kolaq_console import dburl, queuepeek, statusreads
from kolaq_console.queuebands import LOGICAL_QUEUES
from kolaq_console.schemahead import head_revision
from kolaq_console.signing import queue_signing_key

if TYPE_CHECKING:
    from kolaq_console.config import Settings

log = logging.getLogger(__name__)


def _database_figures(settings: Settings) -> dict[str, Any] | None:
    url = dburl.parse(settings.database.url)
    if url is None:
        return None
    low, lease = settings.inventory.low_stock_threshold, settings.jobs.lease_seconds
    if url.backend == "sqlite":
        import sqlite3
        from pathlib import Path
        from urllib.parse import quote

        file = Path(url.path)
        if not file.is_file():
            return None
        conn: Any = sqlite3.connect(f"file:{quote(str(file.resolve()))}?mode=rw", uri=True,
                                    timeout=30)
    else:
        import psycopg

        conn = psycopg.connect(**{"connect_timeout": 5, **url.connect})
    try:
        if statusreads.schema_revisions(conn) != [head_revision()]:
            return None
        return statusreads.read_all(conn, url.backend, low, lease)
    finally:
        conn.close()


def _queue_depths(settings: Settings) -> queuepeek.Depths | None:
    # As the full path's make_huey: a Redis queue without a signing key is refused (it raises
    # here, and the full path words it), and a SQLite queue's own key is made on first use.
    queue_signing_key(settings)
    q = settings.queue
    if q.backend == "sqlite":
        return queuepeek.peek_sqlite(q.sqlite_path, q.name)
    if q.backend == "redis":
        return queuepeek.peek_redis(q.redis_url, q.name)
    return None


def fast_document(settings: Settings) -> dict[str, Any] | None:
    """The `status --json` document of a healthy system, or None: take the full path."""
    try:
        figures = _database_figures(settings)
        depths = None if figures is None else _queue_depths(settings)
    except Exception as exc:  # the full path reports it, in its words
        log.debug("status fast path declined: %s", exc)
        return None
    if figures is None or depths is None:
        return None
    in_flight = figures.pop("in_flight")
    return {
        "queues": {name: {"pending": depths[name][0], "scheduled": depths[name][1],
                          "in_flight": in_flight.get(name, 0)} for name in LOGICAL_QUEUES},
        **figures,
        "storage": {"database": "ok", "queue": "ok"},
        "queue_backend": settings.queue.backend,
    }
