"""The inventory's periodic jobs and the on-demand reconcile, as tasks.py calls them.

Each job runs once per slot of its crontab on the shop's clock (schedules.run_in_slot):

- "inventory.reconcile"        [inventory] reconcile_cron       incremental reconciliation
- "inventory.full_reconcile"   [inventory] full_reconcile_cron  full reconciliation
- "inventory.low_stock_check"  [inventory] low_stock_cron       consolidated low-stock alert

`catch_up` (every [inventory] catch_up_cron) runs any of them whose latest slot today has
passed with no run (no consumer was up at 08:00, say), then sends a low-stock follow-up for
products that fell low after today's check. The periodic task at the slot and the catch-up
claim the same (job, slot) row, so the work happens once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from kolaq_console.alerts import reconciliation_report
from kolaq_console.config import Settings
from kolaq_console.errors import NotFound, PermanentJobError
from kolaq_console.inventory.lowstock import CHECK_JOB, follow_up, send_alerts
from kolaq_console.inventory.reconcile import (
    ReconcileResult,
    Unreconcilable,
    reconcile,
    reconcile_product,
)
from kolaq_console.schedules import ShopCrontab, SlotOutcome, run_in_slot

log = logging.getLogger(__name__)

RECONCILE_JOB = "inventory.reconcile"
FULL_RECONCILE_JOB = "inventory.full_reconcile"
SETTINGS = {
    RECONCILE_JOB: "reconcile_cron",
    FULL_RECONCILE_JOB: "full_reconcile_cron",
    CHECK_JOB: "low_stock_cron",
}
SCHEDULER = "scheduler"


def schedule(settings: Settings, job: str) -> ShopCrontab:
    """The job's crontab on the shop's clock (also the tasks' validate_datetime)."""
    name = SETTINGS.get(job, job)
    return ShopCrontab(getattr(settings.inventory, name), settings.shop.zone,
                       f"[inventory] {name}")


def reported(engine: Engine, settings: Settings, result: ReconcileResult) -> dict[str, Any]:
    """The run's summary, after emailing the admin about drift no event explains (at most once
    per [alerts] reconciliation_report_hours)."""
    try:
        reconciliation_report(engine, settings, result)
    except Exception:  # the reconciliation itself succeeded; the report is not worth a retry
        log.exception("could not queue the reconciliation report")
    return result.summary()


def _work(engine: Engine, settings: Settings, job: str,
          now: datetime | None) -> Callable[[], dict[str, Any]]:
    ttl, top = settings.inventory.lock_ttl_seconds, settings.inventory.max_stock
    if job == RECONCILE_JOB:
        return lambda: reported(engine, settings, reconcile(engine, actor=SCHEDULER, lease_ttl=ttl,
                                                            max_stock=top))
    if job == FULL_RECONCILE_JOB:
        return lambda: reported(engine, settings, reconcile(engine, full=True, actor=SCHEDULER,
                                                            lease_ttl=ttl, max_stock=top))
    if job == CHECK_JOB:
        return lambda: send_alerts(engine, settings, now=now, actor=SCHEDULER).as_dict()
    raise ValueError(f"unknown inventory job {job!r}; expected one of {', '.join(SETTINGS)}")


def run_scheduled(engine: Engine, settings: Settings, job: str,
                  now: datetime | None = None) -> SlotOutcome:
    """Run `job` for its latest slot today unless that slot already ran (or is running)."""
    return run_in_slot(engine, job, schedule(settings, job), _work(engine, settings, job, now),
                       stale_after=settings.inventory.lock_ttl_seconds, now=now)


def catch_up(engine: Engine, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """Run today's missed slots once, then low-stock follow-ups. Every job is attempted; the
    first error is re-raised at the end (the next catch-up tries again)."""
    outcomes: dict[str, Any] = {}
    first_error: BaseException | None = None
    for job in (RECONCILE_JOB, FULL_RECONCILE_JOB, CHECK_JOB):
        try:
            outcomes[job] = run_scheduled(engine, settings, job, now).as_dict()
        except Exception as exc:
            log.exception("catch-up of %s failed", job)
            outcomes[job] = {"job": job, "ran": False, "reason": f"error: {exc}"}
            first_error = first_error or exc
    try:
        outcomes["follow_up"] = follow_up(engine, settings, now=now, actor=SCHEDULER).as_dict()
    except Exception as exc:
        log.exception("low-stock follow-up failed")
        first_error = first_error or exc
    if first_error is not None:
        raise first_error
    return outcomes


def reconcile_now(engine: Engine, settings: Settings, sku: str | None = None,
                  full: bool = False, actor: str = "queue") -> dict[str, Any]:
    """The on-demand reconcile task: one product, or all (incremental or full). A busy lease or
    event table raises a retryable error; an unknown SKU fails at once."""
    if sku:
        try:
            return reported(engine, settings, reconcile_product(
                engine, sku, actor=actor, max_stock=settings.inventory.max_stock))
        except (NotFound, Unreconcilable) as exc:
            raise PermanentJobError(str(exc)) from exc
    return reported(engine, settings, reconcile(
        engine, full=full, actor=actor, lease_ttl=settings.inventory.lock_ttl_seconds,
        max_stock=settings.inventory.max_stock))
