"""The Huey instance `huey` and every task: `huey_consumer tasks.huey` runs them.

Each task is a thin call into kolaq_console; arguments are row ids and plain values, never
objects, so a retried or re-enqueued job reads the current state of the database.
"""

from __future__ import annotations

from huey import crontab

from kolaq_console import runtime
from kolaq_console.emails import jobs as email_jobs
from kolaq_console.emails.sendable import require_can_send
from kolaq_console.errors import KolaqError, print_operator_errors_in_one_line
from kolaq_console.inventory import jobs as inventory_jobs
from kolaq_console.jobs import install_ledger, on_job_lost, on_operator_retry, rerun_safe
from kolaq_console.queue import make_huey, task_options

try:
    settings = runtime.settings()
    huey = make_huey(settings)
except KolaqError as exc:
    # `huey_consumer tasks.huey` would print a long traceback (twice: it retries the import);
    # SystemExit ends any process importing this module with just the reason.
    raise SystemExit(f"tasks.huey: {exc}") from None
# ...and a refusal later (its create_consumer) is one line too, not a traceback.
print_operator_errors_in_one_line("tasks.huey")
# A worker on a configuration that cannot send email refuses to start (one line), rather than
# spending every email's retries on it.
huey.check_before_consuming(require_can_send)
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
    return email_jobs.send(
        row_id,
        retries_left=task.retries if task else 0,
        retry_delay=task.retry_delay if task else 0.0,
        task_id=task.id if task else None,
        worker_id=ledger.worker_id,
    )


# An operator's retry of a failed send reopens its outbox row (same idempotency key).
on_operator_retry(send_email, email_jobs.reopen)
# A send interrupted by a shutdown, or lost with its worker, hands its row back at once...
on_job_lost(send_email, email_jobs.release_lost)
# ...and so does every email a worker known dead (kill -9) or stopped was still sending.
ledger.when_workers_lost(email_jobs.release_claims)


@huey.periodic_task(crontab(), **_opts("emails", retry=False))
def sweep_email_outbox() -> list[int]:
    """Every minute: re-enqueue outbox rows whose lease ran out (their job was lost)."""
    return email_jobs.sweep()


# --- inventory -------------------------------------------------------------------------------
# Crontabs are evaluated on the shop's clock ([shop] timezone), not Huey's UTC, and every
# periodic run claims its slot in schedule_runs, so several consumers run each slot once.


@rerun_safe  # reconciliation converges on the event log, under a lease
@huey.task(**_opts("inventory"))
def reconcile_inventory(sku: str | None = None, full: bool = False) -> dict:
    return inventory_jobs.reconcile_now(runtime.engine(), runtime.settings(), sku, full)


@huey.periodic_task(inventory_jobs.schedule(settings, inventory_jobs.RECONCILE_JOB),
                    **_opts("inventory"))
def nightly_reconcile() -> None:
    inventory_jobs.run_scheduled(runtime.engine(), runtime.settings(),
                                 inventory_jobs.RECONCILE_JOB)


@huey.periodic_task(inventory_jobs.schedule(settings, inventory_jobs.FULL_RECONCILE_JOB),
                    **_opts("inventory"))
def full_reconcile() -> None:
    inventory_jobs.run_scheduled(runtime.engine(), runtime.settings(),
                                 inventory_jobs.FULL_RECONCILE_JOB)


@huey.periodic_task(inventory_jobs.schedule(settings, inventory_jobs.CHECK_JOB),
                    **_opts("inventory"))
def low_stock_check() -> None:
    inventory_jobs.run_scheduled(runtime.engine(), runtime.settings(), inventory_jobs.CHECK_JOB)


@huey.periodic_task(inventory_jobs.schedule(settings, "catch_up_cron"),
                    **_opts("inventory", retry=False))
def inventory_catch_up() -> None:
    inventory_jobs.catch_up(runtime.engine(), runtime.settings())
