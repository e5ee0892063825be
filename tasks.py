"""The Huey instance `huey` and every task: `huey_consumer tasks.huey` runs them.

This module is the only wiring between the queue and the domain: each task is a thin call into
kolaq_console, every periodic task is declared here, and `dispatch.install` at the bottom is
the road by which domain code enqueues (it never imports this module). Arguments are row ids
and plain values, never objects, so a retried or re-enqueued job reads the current state.
"""

from __future__ import annotations

from huey import crontab

from kolaq_console import dispatch, runtime
from kolaq_console.emails.delivery import deliver
from kolaq_console.emails.outbox import reopen_failed, sweep_stale
from kolaq_console.inventory import periodic as inventory
from kolaq_console.jobs import install_ledger, on_operator_retry, rerun_safe
from kolaq_console.sms.delivery import deliver as deliver_text
from kolaq_console.sms.outbox import reopen_failed as reopen_failed_text
from kolaq_console.sms.outbox import sweep_stale as sweep_stale_texts
from kolaq_console.taskqueue import make_huey, task_options

settings = runtime.settings()
huey = make_huey(settings)
# Failed, interrupted and in-flight jobs in the database. A task whose re-run is harmless
# (idempotent) is declared with `@rerun_safe` (kolaq_console.jobs) above `@huey.task(...)`:
# if its worker dies or stops mid-job it is re-enqueued instead of listed as interrupted.
ledger = install_ledger(huey, settings)


def _opts(queue: str, **kwargs: object) -> dict:
    return task_options(settings, queue, **kwargs)


# --- emails ------------------------------------------------------------------------------------

@rerun_safe  # the outbox row's claim and idempotency key make a re-run harmless
@huey.task(context=True, **_opts("emails"))
def send_email(row_id: int, task=None) -> str:
    """Send outbox row `row_id` (the row is the record; this job carries only its id)."""
    s = runtime.settings()
    transport = runtime.transport(s)
    return deliver(
        runtime.engine(), s, row_id,
        transport=transport,
        limiter=runtime.limiter(s) if transport.rate_limited else None,
        retries_left=task.retries if task else 0,
        retry_delay=task.retry_delay if task else 0.0,
        task_id=task.id if task else None,
    )


# An operator's retry of a failed send reopens its outbox row (same idempotency key).
on_operator_retry(
    send_email,
    lambda conn, row_id, task=None: reopen_failed(conn, row_id,
                                                  runtime.settings().email.lease_seconds),
)


@huey.periodic_task(crontab(), **_opts("emails", retry=False))
def sweep_email_outbox() -> list[int]:
    """Every minute: re-enqueue outbox rows whose lease ran out (their job was lost)."""
    return sweep_stale(runtime.engine(), runtime.settings())


# --- SMS and WhatsApp ----------------------------------------------------------------------------

@rerun_safe  # the row's claim and the look in Twilio's list before a re-send make a re-run safe
@huey.task(context=True, **_opts("emails"))
def send_text(row_id: int, task=None) -> str:
    """Send SMS/WhatsApp message row `row_id` (the row is the record; the job carries its id)."""
    s = runtime.settings()
    transport = runtime.sms_transport(s)
    return deliver_text(
        runtime.engine(), s, row_id,
        transport=transport,
        limiter=runtime.sms_limiter(s) if transport.rate_limited else None,
        retries_left=task.retries if task else 0,
        retry_delay=task.retry_delay if task else 0.0,
        task_id=task.id if task else None,
    )


# An operator's retry of a failed send reopens its message row ("unknown" rows need a decision
# in the console or `sms retry --yes`, not a job retry).
on_operator_retry(
    send_text,
    lambda conn, row_id, task=None: reopen_failed_text(conn, row_id,
                                                       runtime.settings().sms.lease_seconds),
)


@huey.periodic_task(crontab(), **_opts("emails", retry=False))
def sweep_text_outbox() -> list[int]:
    """Every minute: re-enqueue messages whose lease ran out (their job was lost)."""
    return sweep_stale_texts(runtime.engine(), runtime.settings())


# --- inventory -------------------------------------------------------------------------------
# Crontabs are evaluated on the shop's clock ([shop] timezone), not Huey's UTC, and every
# periodic run claims its slot in schedule_runs, so several consumers run each slot once.


@rerun_safe  # reconciliation converges on the event log, under a lease
@huey.task(**_opts("inventory"))
def reconcile_inventory(sku: str | None = None, full: bool = False) -> dict:
    return inventory.reconcile_now(runtime.engine(), runtime.settings(), sku, full)


@huey.periodic_task(inventory.schedule(settings, inventory.RECONCILE_JOB), **_opts("inventory"))
def nightly_reconcile() -> None:
    inventory.run_scheduled(runtime.engine(), runtime.settings(), inventory.RECONCILE_JOB)


@huey.periodic_task(inventory.schedule(settings, inventory.FULL_RECONCILE_JOB),
                    **_opts("inventory"))
def full_reconcile() -> None:
    inventory.run_scheduled(runtime.engine(), runtime.settings(), inventory.FULL_RECONCILE_JOB)


@huey.periodic_task(inventory.schedule(settings, inventory.CHECK_JOB), **_opts("inventory"))
def low_stock_check() -> None:
    inventory.run_scheduled(runtime.engine(), runtime.settings(), inventory.CHECK_JOB)


@huey.periodic_task(inventory.schedule(settings, "catch_up_cron"),
                    **_opts("inventory", retry=False))
def inventory_catch_up() -> None:
    inventory.catch_up(runtime.engine(), runtime.settings())


# --- the job ledger --------------------------------------------------------------------------


@rerun_safe  # idempotent: if its worker dies mid-run it is simply run again
@huey.periodic_task(crontab(), **_opts("inventory", retry=False))
def jobs_housekeeping() -> None:
    """Every minute: sweep jobs lost with their workers, prune old statistics."""
    ledger.housekeeping()


# --- the road from domain code onto this queue -----------------------------------------------

dispatch.install(huey, send_email=send_email, send_text=send_text,
                 reconcile_inventory=reconcile_inventory)
