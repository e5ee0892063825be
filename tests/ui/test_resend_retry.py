"""The console's side of "send again + retry = two copies": send again closes the failed
send, and a retry of a sent email's failure is refused with the reason."""

from __future__ import annotations

from conftest import settle
from email_support import entry_status, queue_one, record_failed_send
from seed import clock
from sqlalchemy import update
from sqlmodel import col

from kolaq_console.models import EmailOutbox, utcnow
from kolaq_console.ui.app import make_app
from kolaq_console.ui.messages import EmailResent, JobsRetried


def _console(make_settings, huey):
    return make_app(make_settings(console__refresh_seconds="60"), huey=huey, clock=clock)


async def test_console_send_again_closes_the_failed_send(sqlite_engine, settings, make_settings,
                                                         tasks_module):
    row_id = queue_one(sqlite_engine, settings)
    entry = record_failed_send(sqlite_engine, row_id, tasks_module.huey)
    messages: list = []
    app = _console(make_settings, tasks_module.huey)
    async with app.run_test(size=(80, 24), message_hook=messages.append) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("s", "enter")  # send again, confirmed
        await settle(pilot)
        [resent] = [m for m in messages if isinstance(m, EmailResent)]
        assert any(f"failed job #{entry} closed" in n.message for n in app._notifications)
    assert resent.closed_failed_jobs == (entry,)
    assert entry_status(sqlite_engine, entry) == "discarded"


async def test_console_retry_of_a_sent_emails_failure_is_refused_with_the_reason(
        sqlite_engine, settings, make_settings, tasks_module):
    row_id = queue_one(sqlite_engine, settings)
    entry = record_failed_send(sqlite_engine, row_id, tasks_module.huey, status="interrupted")
    with sqlite_engine.begin() as conn:
        conn.execute(update(EmailOutbox).where(col(EmailOutbox.id) == row_id)
                     .values(status="sent", sent_at=utcnow()))
    pending = len(tasks_module.huey.pending())
    messages: list = []
    app = _console(make_settings, tasks_module.huey)
    async with app.run_test(size=(80, 24), message_hook=messages.append) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("r")  # an email's send: asks first
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        [retried] = [m for m in messages if isinstance(m, JobsRetried)]
        assert any(f"email #{row_id} was already sent" in n.message
                   for n in app._notifications)
    assert retried.retried == [] and retried.skipped[0][0] == entry
    assert entry_status(sqlite_engine, entry) == "interrupted"  # still open
    assert len(tasks_module.huey.pending()) == pending
