"""What the console's screens read, gathered from the domain services in one call each.
No Textual here: these run in worker threads and are tested alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from huey.api import Huey
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kolaq_console.config import Settings
from kolaq_console.inventory.lowstock import low_stock_products
from kolaq_console.inventory.stock import latest_reconciled, read_state, reconciled_times
from kolaq_console.jobs.depth import Charts, last_hour
from kolaq_console.jobs.stats import minute_of, throughput
from kolaq_console.jobs.workers import list_workers
from kolaq_console.models import ActivityLog, ProductStock
from kolaq_console.status import Status, collect


@dataclass
class Overview:
    status: Status
    now: datetime
    minutes: int = 30
    completed: list[int] = field(default_factory=list)  # per minute, oldest first
    failed: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)  # failed attempts retried, re-enqueues
    workers: list[dict[str, Any]] = field(default_factory=list)
    activity_known: bool = False  # throughput and workers were read (else: unknown, not none)
    charts: Charts | None = None  # the last hour per queue; None: could not be read

    @property
    def total_completed(self) -> int:
        return sum(self.completed)

    @property
    def total_failed(self) -> int:
        return sum(self.failed)

    @property
    def total_retried(self) -> int:
        return sum(self.retried)

    @property
    def error_rate(self) -> float | None:
        """Failed attempts (terminal or retried) per attempt."""
        errors = self.total_failed + self.total_retried
        runs = self.total_completed + errors
        return None if runs == 0 else errors / runs


def collect_overview(settings: Settings, engine: Engine, huey: Huey | None, now: datetime,
                     minutes: int = 60, queue_problem: str | None = None) -> Overview:
    """Status (an unreachable store is reported, not raised), the job ledger's per-minute
    counts of the last `minutes` (this one included) and its live and dead workers."""
    overview = Overview(status=collect(settings, engine, huey, queue_problem), now=now,
                        minutes=minutes)
    if overview.status.storage["database"] != "ok":
        return overview
    first = minute_of(now) - timedelta(minutes=minutes - 1)
    completed, failed, retried = [0] * minutes, [0] * minutes, [0] * minutes
    try:
        with Session(engine) as session:
            for m in throughput(session, first):
                i = int((m.minute - first).total_seconds() // 60)
                if 0 <= i < minutes:
                    completed[i] += m.completed
                    failed[i] += m.failed
                    retried[i] += m.retried
            found = list_workers(session, settings.jobs.lease_seconds, now=now,
                                 include_stopped=False)
            charts = last_hour(session, now, minutes)
    except Exception as exc:  # the status read a moment ago; this one did not: unknown
        overview.status.storage["database"] = f"database error: {exc}".splitlines()[0]
        return overview
    overview.activity_known = True
    overview.charts = charts
    overview.completed, overview.failed, overview.retried = completed, failed, retried
    overview.workers = [
        {"name": f"{w.host}:{w.pid}", "state": "live" if w.state == "running" else w.state,
         "threads": w.threads, "heartbeat_at": w.heartbeat_at, "running": len(w.jobs),
         "periodic": w.periodic}
        for w in found
    ]
    return overview


# --- inventory ---------------------------------------------------------------------------------

ACTIVITY_LIMIT = 40
ACTION_LABELS = {"inventory.reconcile": "reconcile", "inventory.reconcile.run": "run",
                 "inventory.adjust": "adjust", "inventory.low_stock.alert": "alert"}


@dataclass
class InventoryView:
    low: list[dict[str, Any]]  # sku, name, stock, threshold, sold_7d, days_of_cover, reconciled
    activity: list[dict[str, Any]]  # at, actor, action, subject, summary
    last_run_at: datetime | None = None
    last_full_at: datetime | None = None


def _activity_summary(action: str, details: dict[str, Any]) -> str:
    d = details or {}
    if action == "inventory.reconcile":
        return f"{d.get('old')} → {d.get('new')} ({int(d.get('drift') or 0):+d}, {d.get('mode')})"
    if action == "inventory.adjust":
        return f"{int(d.get('delta') or 0):+d} → {d.get('stock_after')}: {d.get('reason', '')}"
    if action == "inventory.reconcile.run":
        return (f"{d.get('mode')} run: {d.get('checked', 0)} checked, "
                f"{d.get('changed', 0)} changed")
    if action == "inventory.low_stock.alert":
        return f"alert for {len(d.get('skus') or [])} product(s)"
    return ", ".join(f"{k} {v}" for k, v in list(d.items())[:3])


def load_inventory(session: Session, settings: Settings, now: datetime) -> InventoryView:
    """Low-stock products (the inventory's own query, with 7-day sales) and recent activity."""
    items = low_stock_products(session, settings.inventory.low_stock_threshold,
                               with_sales=True, now=now)
    state = read_state(session) or {}
    reconciled = reconciled_times(session, state, dict(session.exec(  # type: ignore[arg-type]
        select(ProductStock.product_id, ProductStock.stock_event_id)
        .where(col(ProductStock.product_id).in_([i.product_id for i in items]))
    ).all())) if items else {}
    low = [{**item.as_dict(), "last_reconciled_at": reconciled.get(item.product_id)}
           for item in items]
    rows = session.exec(
        select(ActivityLog)
        .where(col(ActivityLog.action).startswith("inventory."))
        .order_by(col(ActivityLog.id).desc())
        .limit(ACTIVITY_LIMIT)
    ).all()
    activity = [
        {"id": a.id, "at": a.created_at, "actor": a.actor,
         "action": ACTION_LABELS.get(a.action, a.action.removeprefix("inventory.")),
         "subject": a.entity_id if a.entity == "product" else a.entity,
         "summary": _activity_summary(a.action, a.details)}
        for a in rows
    ]
    last_run = _parse(state.get("at"))
    if last_run is None:
        # Stock folded in without a recorded run (an import, the demo's opening stock) was
        # still reconciled: never say "never reconciled" over rows that show a time.
        last_run = latest_reconciled(session)
    return InventoryView(low, activity, last_run, _parse(state.get("full_at")))


def _parse(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None
