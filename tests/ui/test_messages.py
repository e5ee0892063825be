"""9 Messages: SMS and WhatsApp rows with their delivery state; send again, retry a failed one,
and an operator's decision on an `unknown` one (send anyway after a warning, or mark sent)."""

from __future__ import annotations

from conftest import settle
from sqlalchemy import update
from sqlmodel import Session, select

from kolaq_console import dispatch
from kolaq_console.models import ActivityLog, TextMessage
from kolaq_console.sms import outbox
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.messages import TextActed
from kolaq_console.ui.widgets.record_table import RecordTable


def listed(app) -> list[int]:
    return app.screen.query_one(RecordTable).keys()


def rows(engine) -> dict[int, TextMessage]:
    with Session(engine) as s:
        return {r.id: r for r in s.exec(select(TextMessage)).all()}


def seed_texts(engine, settings) -> dict[str, int]:
    """One message per state an operator sees: sent and delivered, failed, unknown."""
    ids = {}
    with dispatch.recording(), Session(engine, expire_on_commit=False) as s:
        for name, number, channel in (("delivered", "+2348031234501", "sms"),
                                      ("failed", "+2348031234502", "sms"),
                                      ("unknown", "+2348031234503", "sms")):
            ids[name] = outbox.queue_message(s, settings, "generic", to=number, channel=channel,
                                             body=f"Kolaq note ({name})").row.id
    with Session(engine) as s:
        s.execute(update(TextMessage).where(TextMessage.id == ids["delivered"]).values(
            status="sent", delivery_status="delivered", provider_message_id="SM" + "1" * 32))
        s.execute(update(TextMessage).where(TextMessage.id == ids["failed"]).values(
            status="failed", last_error="twilio 400 error 21211: Invalid 'To' Phone Number"))
        s.execute(update(TextMessage).where(TextMessage.id == ids["unknown"]).values(
            status="unknown", last_error="2 messages in Twilio's list match"))
        s.commit()
    return ids


async def test_lists_messages_of_every_channel_with_their_delivery_state(shop, console,
                                                                          sqlite_engine,
                                                                          settings):
    ids = seed_texts(sqlite_engine, settings)
    app = console()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("9")
        await settle(pilot)
        assert listed(app) == [ids["unknown"], ids["failed"], ids["delivered"]]
        caption = str(app.screen.query_one("#list-caption").render())
        assert "1 unknown" in caption


async def test_an_unknown_message_is_sent_anyway_only_after_the_duplicate_warning(
    shop, console, sqlite_engine, settings
):
    ids = seed_texts(sqlite_engine, settings)
    messages: list = []
    app = console()
    with dispatch.recording() as calls:
        async with app.run_test(size=(120, 30), message_hook=messages.append) as pilot:
            await pilot.press("9")
            await settle(pilot)
            await pilot.press("r")  # the cursor is on the unknown one (newest)
            await settle(pilot)
            assert isinstance(app.screen, ConfirmDialog)
            assert "twice" in app.screen.message
            await pilot.press("escape")  # cancelled: nothing happens
            await settle(pilot)
            assert rows(sqlite_engine)[ids["unknown"]].status == "unknown" and calls == []
            await pilot.press("r", "enter")
            await settle(pilot)
    assert rows(sqlite_engine)[ids["unknown"]].status == "queued"
    assert [c.args for c in calls] == [(ids["unknown"],)]
    assert any(isinstance(m, TextActed) for m in messages)


async def test_mark_sent_records_the_operators_decision(shop, console, sqlite_engine, settings):
    ids = seed_texts(sqlite_engine, settings)
    app = console()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("9")
        await settle(pilot)
        await pilot.press("m", "enter")
        await settle(pilot)
    assert rows(sqlite_engine)[ids["unknown"]].status == "sent"
    with Session(sqlite_engine) as s:
        log = s.exec(select(ActivityLog).where(ActivityLog.action == "message.mark_sent")).one()
    assert log.actor == "test-operator"


async def test_a_failed_message_is_retried_and_any_can_be_sent_again(shop, console,
                                                                    sqlite_engine, settings):
    ids = seed_texts(sqlite_engine, settings)
    app = console()
    with dispatch.recording() as calls:
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.press("9", "down", "r")  # the failed one: no question asked
            await settle(pilot)
            await pilot.press("down", "s", "enter")  # send the delivered one again
            await settle(pilot)
    after = rows(sqlite_engine)
    assert after[ids["failed"]].status == "queued"
    [copy] = [r for i, r in after.items() if i not in ids.values()]
    assert copy.body == after[ids["delivered"]].body and copy.status == "queued"
    assert [c.args for c in calls] == [(ids["failed"],), (copy.id,)]


async def test_read_only_refuses_every_action(shop, console, sqlite_engine, settings):
    ids = seed_texts(sqlite_engine, settings)
    app = console(read_only=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("9")
        await settle(pilot)
        await pilot.press("r", "m", "s")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmDialog)
    assert rows(sqlite_engine)[ids["unknown"]].status == "unknown"
