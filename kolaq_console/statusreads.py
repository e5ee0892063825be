"""`status --json`'s database figures as plain SQL on a DB-API connection (sqlite3 or psycopg),
without SQLAlchemy: the fast path of kolaq_console/statusfast.py.

Each statement is the one the full path (kolaq_console/status.py and the queries it calls)
compiles for that dialect; tests/test_status_fast.py proves both give the same document. A
change to one of those queries must be mirrored here (the test fails until it is).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

# The checkpoint as a scalar subquery, as inventory.stock.checkpoint_expr compiles it.
_CHECKPOINT = {
    "sqlite": "coalesce((SELECT CAST(JSON_EXTRACT(system_state.value, '$.\"event_id\"') "
              "AS INTEGER) FROM system_state "
              "WHERE system_state.\"key\" = 'inventory.reconcile'), 0)",
    "postgresql": "coalesce((SELECT CAST((system_state.value ->> 'event_id') AS INTEGER) "
                  "FROM system_state WHERE system_state.key = 'inventory.reconcile'), 0)",
}
# inventory.stock.unfolded: SQLite is told the checkpoint condition is rarely true (sqlutil.rarely)
_AFTER_CHECKPOINT = {
    "sqlite": "likelihood(inventory_events.id > {cp}, 0.001)",
    "postgresql": "inventory_events.id > {cp}",
}
_TRUE = {"sqlite": "1", "postgresql": "true"}


def _low_stock_sql(dialect: str) -> str:
    after = _AFTER_CHECKPOINT[dialect].format(cp=_CHECKPOINT[dialect])
    stock = "product_stock.stock + coalesce(unfolded.delta, 0)"
    threshold = "coalesce(products.low_stock_threshold, {p})"
    return (
        f"SELECT products.sku, products.name, {stock}, {threshold} FROM products "
        "JOIN product_stock ON product_stock.product_id = products.id "
        "LEFT OUTER JOIN (SELECT inventory_events.product_id AS product_id, "
        "sum(inventory_events.delta) AS delta FROM inventory_events JOIN product_stock "
        "ON product_stock.product_id = inventory_events.product_id "
        f"WHERE {after} AND inventory_events.id > product_stock.stock_event_id "
        "GROUP BY inventory_events.product_id) AS unfolded ON unfolded.product_id = products.id "
        f"WHERE products.active IS {_TRUE[dialect]} AND {stock} <= {threshold} "
        f"ORDER BY {stock}, products.sku"
    )


def _param(dialect: str) -> str:
    return "?" if dialect == "sqlite" else "%s"


def _scalar(conn: Any, sql: str, params: tuple = ()) -> Any:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return cur.fetchone()[0]
    finally:
        cur.close()


def _rows(conn: Any, sql: str, params: tuple = ()) -> list[tuple]:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return list(cur.fetchall())
    finally:
        cur.close()


def schema_revisions(conn: Any) -> list[str]:
    """The database's alembic_version rows (raises if the table is missing)."""
    return [r[0] for r in _rows(conn, "SELECT version_num FROM alembic_version")]


def low_stock(conn: Any, dialect: str, default_threshold: int) -> list[dict[str, Any]]:
    p = _param(dialect)
    sql = _low_stock_sql(dialect).replace("{p}", p)
    rows = _rows(conn, sql, (default_threshold, default_threshold))
    return [{"sku": sku, "name": name, "stock": int(st), "threshold": int(th)}
            for sku, name, st, th in rows]


def _by_status(conn: Any, table: str) -> dict[str, int]:
    # Grouped by the bare column (its index serves it); the buckets are made in Python.
    return dict(_rows(conn, f"SELECT status, count(*) FROM {table} GROUP BY status"))


def outbox_counts(conn: Any) -> dict[str, int]:
    """status.outbox_counts: queued (and sending), sent, failed."""
    counts = {"queued": 0, "sent": 0, "failed": 0}
    for status, n in _by_status(conn, "email_outbox").items():
        bucket = "queued" if status == "sending" else status
        if bucket in counts:
            counts[bucket] += n
    return counts


def message_counts(conn: Any) -> dict[str, int]:
    """status.message_counts: queued (and sending), sent, failed (and cancelled), unknown."""
    counts = {"queued": 0, "sent": 0, "failed": 0, "unknown": 0}
    rename = {"sending": "queued", "cancelled": "failed"}
    for status, n in _by_status(conn, "text_messages").items():
        bucket = rename.get(status, status)
        if bucket in counts:
            counts[bucket] += n
    return counts


_OPEN = "failed_jobs.status IN ('failed', 'interrupted')"


def failed_jobs(conn: Any) -> int:
    return int(_scalar(conn, f"SELECT count(*) FROM failed_jobs WHERE {_OPEN}"))


def rejected_payloads(conn: Any, dialect: str) -> int:
    return int(_scalar(conn, f"SELECT count(*) FROM failed_jobs WHERE {_OPEN} "
                             f"AND failed_jobs.error_type = {_param(dialect)}",
                       ("RejectedPayload",)))


def in_flight(conn: Any, dialect: str, lease_seconds: float,
              now: datetime | None = None) -> dict[str, int]:
    """jobs.workers.in_flight_by_queue: runs of workers whose heartbeat is within the lease."""
    cutoff = ((now or datetime.now(UTC)) - timedelta(seconds=lease_seconds)).astimezone(UTC)
    naive = cutoff.replace(tzinfo=None)
    # SQLAlchemy stores SQLite datetimes as text in this format; PostgreSQL takes the value.
    bound: Any = naive.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else naive
    rows = _rows(conn, "SELECT job_runs.queue, count(*) FROM job_runs JOIN workers "
                       "ON workers.id = job_runs.worker_id "
                       f"WHERE workers.heartbeat_at >= {_param(dialect)} "
                       "AND workers.stopped_at IS NULL AND workers.found_dead_at IS NULL "
                       "GROUP BY job_runs.queue", (bound,))
    return {queue: int(n) for queue, n in rows}


def read_all(conn: Any, dialect: str, low_stock_threshold: int,
             lease_seconds: float) -> dict[str, Any]:
    """Every figure; any error propagates (the caller then takes the full path, which reports
    each failing figure on its own)."""
    return {
        "failed_jobs": failed_jobs(conn),
        "rejected_payloads": rejected_payloads(conn, dialect),
        "low_stock": low_stock(conn, dialect, low_stock_threshold),
        "outbox": outbox_counts(conn),
        "messages": message_counts(conn),
        "in_flight": in_flight(conn, dialect, lease_seconds),
    }
