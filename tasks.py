"""The Huey instance `huey` and every task: `huey_consumer tasks.huey` runs them.

This module is the only wiring between the queue and the domain: each task is a thin call into
kolaq_console, every periodic task is declared here, and `dispatch.install` at the bottom is
the road by which domain code enqueues (it never imports this module). Arguments are row ids
and plain values, never objects, so a retried or re-enqueued job reads the current state.
"""

from __future__ import annotations

from huey import crontab

from kolaq_console import alerts, dispatch, runtime
from kolaq_console.broadcasts import sending as broadcasts
from kolaq_console.emails.batches import reopen_batch, reopen_failed
from kolaq_console.emails.delivery import Delivered, deliver, deliver_batch
from kolaq_console.emails.outbox import release_claim, release_claims_of, sweep_stale
from kolaq_console.emails.sendable import require_can_send
from kolaq_console.errors import KolaqError, print_operator_errors_in_one_line
from kolaq_console.inventory import periodic as inventory
from kolaq_console.jobs import depth, install_ledger, on_job_lost, on_operator_retry, rerun_safe
from kolaq_console.models import utcnow
from kolaq_console.sms.delivery import deliver as deliver_text
from kolaq_console.sms.outbox import release_claim as release_text_claim
from kolaq_console.sms.outbox import release_claims_of as release_text_claims_of
from kolaq_console.sms.outbox import reopen_failed as reopen_failed_text
from kolaq_console.sms.outbox import sweep_stale as sweep_stale_texts
from kolaq_console.sms.sendable import require_can_send as require_can_send_texts
from kolaq_console.taskqueue import make_huey, task_options
from kolaq_console.webhooks import inbox as webhook_inbox
from kolaq_console.webhooks.process import process_events

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
huey.check_before_consuming(require_can_send_texts)  # ... nor SMS/WhatsApp
# Failed, interrupted and in-flight jobs in the database. A task whose re-run is harmless
# (idempotent) is declared with `@rerun_safe` (kolaq_console.jobs) above `@huey.task(...)`:
# if its worker dies or stops mid-job it is re-enqueued instead of listed as interrupted.
ledger = install_ledger(huey, settings)


def _opts(queue: str, **kwargs: object) -> dict:
    return task_options(settings, queue, **kwargs)


# --- emails ------------------------------------------------------------------------------------

def _sending(task) -> dict:
    s = runtime.settings()
    transport = runtime.transport(s)
    return {
        "transport": transport,
        "limiter": runtime.limiter(s) if transport.rate_limited else None,
        "retries_left": task.retries if task else 0,
        "retry_delay": task.retry_delay if task else 0.0,
        "task_id": task.id if task else None,
        "worker_id": ledger.worker_id,
    }


# Transactional email first: within the emails band, a row's send job outranks a broadcast's.
@rerun_safe  # the claim and the idempotency keys make a re-run harmless
@huey.task(context=True, **_opts("emails", urgency=50))
def send_email(row_id: int, task=None) -> str:
    """Send outbox row `row_id`, with up to 99 other waiting rows in one provider request
    (the row is the record; this job carries only its id)."""
    return deliver(runtime.engine(), runtime.settings(), row_id, **_sending(task)).outcome


@rerun_safe
@huey.task(context=True, **_opts("emails", urgency=10))
def send_email_batch(batch_id: int, task=None) -> str:
    """Send batch `batch_id` (formed ahead by a broadcast, or swept) in one request."""
    engine = runtime.engine()
    done: Delivered = deliver_batch(engine, runtime.settings(), batch_id, **_sending(task))
    if done.broadcast_id is not None:  # a swept one: its broadcast's own jobs carry on
        broadcasts.settle(engine, done.broadcast_id)  # (tending restarts them if none)
    return done.outcome


@rerun_safe  # it only enqueues send_broadcast_batch jobs, up to the lookahead
@huey.task(**_opts("emails", urgency=20))
def send_broadcast(broadcast_id: int) -> int:
    """Start sending broadcast `broadcast_id`: [email] broadcast_lookahead batch jobs."""
    return broadcasts.produce(runtime.engine(), runtime.settings(), broadcast_id)


@rerun_safe  # the batch is claimed as it is formed; a re-run sends a handed-back one first
@huey.task(context=True, **_opts("emails", urgency=10))
def send_broadcast_batch(broadcast_id: int, task=None) -> str:
    """Form broadcast `broadcast_id`'s next batch and send it; then ask for the next."""
    # A batch's retries are its own (its attempts), not this job's.
    return broadcasts.line_step(runtime.engine(), runtime.settings(), broadcast_id,
                                **_sending(task), max_retries=send_broadcast_batch.retries
                                ).outcome


def _lease() -> float:
    return runtime.settings().email.lease_seconds


# An operator's retry of a failed send reopens its outbox row, or the batch it failed with
# (same members, same idempotency key).
on_operator_retry(send_email,
                  lambda conn, row_id, task=None: reopen_failed(conn, row_id, _lease()))
on_operator_retry(send_email_batch,
                  lambda conn, batch_id, task=None: reopen_batch(conn, batch_id, _lease()))
on_operator_retry(send_broadcast_batch,  # the broadcast's failed batches, then the rest
                  lambda conn, broadcast_id, task=None: broadcasts.reopen_failed_batches(
                      conn, broadcast_id, _lease()))
# A send interrupted by a shutdown, or lost with its worker, hands its rows (and their batch)
# back at once...
on_job_lost(send_email,
            lambda conn, task_id, row_id, task=None: release_claim(conn, task_id, _lease()))
on_job_lost(send_email_batch,
            lambda conn, task_id, batch_id, task=None: release_claim(conn, task_id, _lease()))
on_job_lost(send_broadcast_batch,
            lambda conn, task_id, broadcast_id, task=None: release_claim(conn, task_id,
                                                                         _lease()))
# ...and so does every email that a worker known dead (kill -9) or stopped was still sending.
ledger.when_workers_lost(
    lambda worker_ids: release_claims_of(runtime.engine(), runtime.settings(), worker_ids))


@huey.periodic_task(crontab(), **_opts("emails", retry=False))
def sweep_email_outbox() -> list[int]:
    """Every minute: re-enqueue outbox rows whose lease ran out (their job was lost), settle
    broadcasts that ended, restart broadcasts whose sending job was lost."""
    swept = sweep_stale(runtime.engine(), runtime.settings())
    # A broadcast quiet for a lease has lost its jobs (a live one forms or finishes a batch
    # far more often); sooner, its next jobs may only be waiting in the queue.
    for broadcast_id in broadcasts.tend(runtime.engine(),
                                        runtime.settings().email.lease_seconds):
        send_broadcast(broadcast_id)
    return swept


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
        worker_id=ledger.worker_id,
    )


# An operator's retry of a failed send reopens its message row ("unknown" rows need a decision
# in the console or `sms retry --yes`, not a job retry).
on_operator_retry(
    send_text,
    lambda conn, row_id, task=None: reopen_failed_text(conn, row_id,
                                                       runtime.settings().sms.lease_seconds),
)
# A send interrupted or lost with its worker hands its row back at once, in doubt: the next
# attempt looks in Twilio's list before sending.
on_job_lost(
    send_text,
    lambda conn, task_id, row_id, task=None: release_text_claim(
        conn, row_id, task_id, runtime.settings().sms.lease_seconds),
)
ledger.when_workers_lost(
    lambda worker_ids: release_text_claims_of(runtime.engine(), runtime.settings(), worker_ids))


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


# --- webhooks --------------------------------------------------------------------------------


@rerun_safe  # each event's claim and one transaction make a re-run harmless
@huey.task(context=True, **_opts("webhooks"))
def process_webhook(*event_row_ids: int, task=None) -> list[str]:
    """Apply stored webhook events once each (the rows are the record; the server enqueues
    one job per group commit)."""
    return process_events(
        runtime.engine(), runtime.settings(), event_row_ids,
        retries_left=task.retries if task else 0,
        retry_delay=task.retry_delay if task else 0.0,
    )


@huey.periodic_task(crontab(), **_opts("webhooks", retry=False))
def sweep_webhooks() -> list[int]:
    """Every minute: re-enqueue acknowledged events whose processing job was lost."""
    return webhook_inbox.sweep_stale(runtime.engine(), runtime.settings().webhooks.lease_seconds)


@huey.periodic_task(crontab(), **_opts("inventory", retry=False))
def sample_queue_depth() -> int:
    """Every minute: each logical queue's depth, for the overview's last-hour charts (pruned
    after [jobs] stats_retention_hours)."""
    s = runtime.settings()
    return depth.sample_queue_depth(runtime.engine(), huey, s.jobs.lease_seconds,
                                    s.jobs.stats_retention_hours, utcnow())


@huey.periodic_task(crontab(minute="*/5"), **_opts("inventory", retry=False))
def alert_failing_jobs() -> int | None:
    """Every 5 minutes: email the admin if jobs keep failing (once per configured period)."""
    return alerts.failing_jobs(runtime.engine(), runtime.settings())


# --- the road from domain code onto this queue -----------------------------------------------

dispatch.install(huey, send_email=send_email, send_email_batch=send_email_batch,
                 send_broadcast=send_broadcast, send_broadcast_batch=send_broadcast_batch,
                 send_text=send_text,
                 reconcile_inventory=reconcile_inventory, process_webhook=process_webhook)
