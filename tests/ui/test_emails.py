"""4 Emails: the outbox list, its filters, the detail view and "send again"."""

from __future__ import annotations

from conftest import settle
from sqlmodel import Session, select

from kolaq_console.models import ActivityLog, EmailOutbox
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.messages import EmailResent, EmailsLoaded
from kolaq_console.ui.screens.email_detail import EmailDetailScreen
from kolaq_console.ui.widgets.record_table import RecordTable


def listed(app) -> list[int]:
    return app.screen.query_one(RecordTable).keys()


def outbox(engine) -> list[EmailOutbox]:
    with Session(engine) as s:
        return list(s.exec(select(EmailOutbox).order_by(EmailOutbox.id)).all())


async def test_lists_recent_emails_newest_first(shop, console):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        assert listed(app) == list(reversed(shop))


async def test_filter_narrows_the_list_by_status_and_by_recipient(shop, console, sqlite_engine):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4", "slash", *"failed")
        await settle(pilot)
        failed = [r.id for r in outbox(sqlite_engine) if r.status == "failed"]
        assert listed(app) == failed
        await pilot.press("escape")  # clears the filter
        await settle(pilot)
        assert len(listed(app)) == len(shop)
        first = outbox(sqlite_engine)[0]
        await pilot.press("slash", *first.to_address.split("@")[0], "enter")
        await settle(pilot)
        assert listed(app) == [first.id]


async def test_f_cycles_the_status_filter(shop, console, sqlite_engine):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4", "f")  # queued
        await settle(pilot)
        queued = [r.id for r in outbox(sqlite_engine) if r.status == "queued"]
        assert sorted(listed(app)) == queued


async def test_send_again_after_confirming_creates_a_new_outbox_row(shop, console,
                                                                    sqlite_engine):
    messages: list = []
    app = console()
    async with app.run_test(size=(80, 24), message_hook=messages.append) as pilot:
        await pilot.press("4", "f", "f", "f", "f")  # status: failed
        await settle(pilot)
        [failed_id] = listed(app)
        await pilot.press("s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("enter")
        await settle(pilot)
        [resent] = [m for m in messages if isinstance(m, EmailResent)]
        assert any(f"Email #{failed_id} queued again as #{resent.new_id}" in n.message
                   for n in app._notifications)
    # the list reloads after the send
    assert any(isinstance(m, EmailsLoaded) for m in messages[messages.index(resent):])
    assert resent.original_id == failed_id
    rows = {r.id: r for r in outbox(sqlite_engine)}
    assert len(rows) == len(shop) + 1
    new = rows[resent.new_id]
    assert new.status == "queued" and new.to_address == rows[failed_id].to_address
    assert new.idempotency_key != rows[failed_id].idempotency_key
    assert rows[failed_id].status == "failed"  # the original is left as it was
    with Session(sqlite_engine) as s:
        log = s.exec(select(ActivityLog).where(ActivityLog.action == "email.resend")).one()
    assert log.actor == "test-operator"


async def test_cancelling_the_confirmation_sends_nothing(shop, console, sqlite_engine):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("s", "escape")
        await settle(pilot)
    assert len(outbox(sqlite_engine)) == len(shop)


async def test_detail_shows_the_email_and_can_send_it_again(shop, console, sqlite_engine):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4", "f", "f", "f", "f")  # the failed one
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, EmailDetailScreen)
        assert screen.row["last_error"].startswith("422 validation_error")
        await pilot.press("s", "y")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, EmailDetailScreen)
    assert len(outbox(sqlite_engine)) == len(shop) + 1


async def test_read_only_console_refuses_to_send_again(shop, console, sqlite_engine):
    app = console(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmDialog)
        app.screen.action_resend()  # asked directly: refused, nothing written
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmDialog)
    assert len(outbox(sqlite_engine)) == len(shop)


async def test_escape_on_the_unfiltered_list_goes_back_to_the_overview(shop, console):
    from kolaq_console.ui.screens.overview import OverviewScreen

    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
