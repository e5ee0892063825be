"""5 Broadcasts: compose with a live preview and count, test to the admin, send after a confirm
showing the exact count (which is what is sent), follow the progress across screens, pause /
resume / cancel, drafts kept."""

from __future__ import annotations

import re

import pytest
from broadcast_support import Workers, seed_customers, subscribers
from conftest import settle
from email_support import KEY
from sqlmodel import Session, select
from stubs.resend_api import ResendStub
from textual.widgets import Button, Input, Markdown, Static, TextArea

from kolaq_console import consent, dispatch
from kolaq_console.emails.transports import ResendTransport
from kolaq_console.models import ActivityLog, Broadcast, EmailOutbox
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.screens.broadcasts import BroadcastsScreen, progress_line
from kolaq_console.ui.screens.emails import EmailsScreen
from kolaq_console.ui.widgets.record_table import RecordTable


@pytest.fixture
def people(sqlite_engine):
    """137 subscribers, of whom one unsubscribed and one bounced; 5 customers without consent."""
    fans = subscribers(137)
    seed_customers(sqlite_engine, fans)
    seed_customers(sqlite_engine, subscribers(5, "quiet"), consent=False)
    with Session(sqlite_engine) as s:
        consent.unsubscribe(s, fans[3], source="link")
        consent.suppress(s, fans[4], "bounced", source="resend")
        s.commit()
    return fans


@pytest.fixture
def jobs():
    with dispatch.recording() as calls:
        yield calls


async def wait_for(pilot, condition, rounds: int = 100) -> None:
    """Let the app run until `condition()` holds (timers and workers included)."""
    for _ in range(rounds):
        await settle(pilot)
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("the screen never got there")


def screen(app) -> BroadcastsScreen:
    assert isinstance(app.screen, BroadcastsScreen)
    return app.screen


async def compose(pilot, subject: str, body: str, audience: str = "subscribers") -> None:
    s = screen(pilot.app)
    s.query_one("#bc-audience", Input).value = audience
    s.query_one("#bc-subject", Input).focus()
    await pilot.press(*subject)
    s.query_one("#bc-body", TextArea).focus()
    await pilot.press(*body)
    await settle(pilot)


async def send(pilot, subject: str, body: str) -> None:
    """Compose, ^g, confirm: the broadcast is submitted and the progress line follows it."""
    await compose(pilot, subject, body)
    await pilot.press("ctrl+g")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
    await pilot.press("y")
    await wait_for(pilot, lambda: screen(pilot.app).chosen is not None)


def text_of(widget: Static) -> str:
    return str(widget.render())


async def test_the_count_in_the_confirm_dialog_is_what_is_sent(
    people, console, sqlite_engine, settings, jobs
):
    app = console()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await compose(pilot, "Harmattan", "Hello *fans*")
        await wait_for(pilot, lambda: "135 recipients" in text_of(
            screen(app).query_one("#bc-reach", Static)))
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        message = text_of(app.screen.query_one("#dialog-message", Static))
        shown = int(re.search(r"to ([\d,]+) recipients", message)[1].replace(",", ""))
        await pilot.press("y")
        await wait_for(pilot, lambda: screen(app).chosen is not None)
        # Sent: the list has the focus, so a digit changes screens instead of being typed.
        assert screen(app).query_one(RecordTable).has_focus
        assert screen(app).query_one("#bc-subject", Input).value == ""
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, EmailsScreen))

    with ResendStub(api_keys={KEY}) as stub:
        Workers(sqlite_engine, settings, ResendTransport(KEY, stub.url), jobs).run()
        delivered = sorted(d.to[0] for d in stub.deliveries)
    with Session(sqlite_engine) as s:
        b = s.exec(select(Broadcast)).one()
    assert shown == 135 == b.total == len(delivered) and b.status == "done"
    assert delivered == sorted(set(people) - {people[3], people[4]})


async def test_preview_follows_the_body_and_the_count_follows_the_audience(
    people, console, sqlite_engine
):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await compose(pilot, "News", "A **bold** claim")
        preview = screen(app).query_one("#bc-preview", Markdown)
        await wait_for(pilot, lambda: "A **bold** claim" in preview.source)
        assert "Subject:** News" in preview.source
        reach = screen(app).query_one("#bc-reach", Static)
        screen(app).query_one("#bc-audience", Input).value = "admin"
        await wait_for(pilot, lambda: "1 recipients" in text_of(reach))
        screen(app).query_one("#bc-audience", Input).value = "sku:NOPE"
        await wait_for(pilot, lambda: "no product with SKU 'NOPE'" in text_of(reach))


async def test_a_test_copy_goes_to_the_admin_only(people, console, sqlite_engine, settings, jobs):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await compose(pilot, "Rehearsal", "Body")
        await pilot.press("ctrl+t")
        await settle(pilot)
    with Session(sqlite_engine) as s:
        [row] = s.exec(select(EmailOutbox)).all()
        assert s.exec(select(Broadcast)).all() == []  # nothing submitted
    assert row.to_address == settings.email.admin_email and row.kind == "broadcast"
    assert row.idempotency_key.startswith("broadcast-test/")
    assert "List-Unsubscribe" in row.headers
    assert [c.task for c in jobs] == ["send_email"]
    with Session(sqlite_engine) as s:
        [entry] = s.exec(select(ActivityLog).where(ActivityLog.action == "broadcast.test")).all()
    assert (entry.entity_id, entry.details["subject"]) == (str(row.id), "Rehearsal")


async def test_drafts_are_saved_on_leaving_and_come_back_next_time(
    people, console, sqlite_engine
):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await compose(pilot, "Draft one", "Unfinished")
        await pilot.press("escape", "1")  # to the list, then another screen
        await settle(pilot)
    with Session(sqlite_engine) as s:
        [draft] = s.exec(select(Broadcast)).all()
    assert (draft.status, draft.subject, draft.body_markdown) == ("draft", "Draft one",
                                                                  "Unfinished")
    again = console()
    async with again.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await settle(pilot)
        s = screen(again)
        assert s.query_one("#bc-subject", Input).value == "Draft one"
        assert s.query_one("#bc-body", TextArea).text == "Unfinished"
        assert s.draft_id == draft.id


async def test_progress_survives_leaving_the_screen_and_pause_resume_cancel_ask_first(
    people, console, sqlite_engine, jobs
):
    app = console()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await send(pilot, "Offer", "Ten percent")
        chosen = screen(app).chosen
        await pilot.press("1", "5")
        await settle(pilot)
        line = screen(app).query_one("#bc-progress", Static)
        assert f"#{chosen} sending" in text_of(line) and "0/135 sent" in text_of(line)

        assert screen(app).query_one(RecordTable).has_focus  # since the send, back again
        await pilot.press("P")  # the list has the keys; capitals ask first
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: "paused" in text_of(line))
        await pilot.press("R", "y")
        await wait_for(pilot, lambda: "sending" in text_of(line))
        await pilot.press("C", "n")  # not confirmed: nothing happens
        await settle(pilot)
        assert "sending" in text_of(line)
        await pilot.press("C", "y")
        await wait_for(pilot, lambda: "cancelled" in text_of(line))
    with Session(sqlite_engine) as s:
        b = s.get(Broadcast, chosen)
        assert b.status == "cancelled" and b.cancelled == 135


async def test_read_only_console_cannot_send(people, console, sqlite_engine, jobs):
    app = console(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await settle(pilot)
        assert screen(app).query_one("#bc-subject", Input).disabled
        await pilot.press("ctrl+g", "ctrl+s", "ctrl+t")
        await settle(pilot)
    with Session(sqlite_engine) as s:
        assert s.exec(select(Broadcast)).all() == [] and s.exec(select(EmailOutbox)).all() == []
    assert jobs == []


def test_a_finished_broadcast_says_how_long_it_took_not_an_unknown_rate():
    from datetime import UTC, datetime

    from kolaq_console.broadcasts.progress import Progress

    start = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    figures = dict(id=2, subject="S", audience="subscribers", rate=None, eta_seconds=None,
                   created_by="ada", created_at=start, started_at=start, sent=118, failed=0,
                   skipped=0, cancelled=0, total=118, remaining=0)
    done = Progress(status="done", finished_at=start.replace(second=5), **figures)
    assert "took 5s" in progress_line(done) and "?" not in progress_line(done)
    sending = Progress(status="sending", finished_at=None, **figures)
    assert "rate ?" in progress_line(sending)  # unknown while sending: not a calm 0/s


async def test_after_a_send_pause_and_cancel_act_on_the_broadcast_just_sent(
    people, console, sqlite_engine, jobs
):
    """The list's cursor stayed on the row it was on, so P after a second send asked to pause
    the first broadcast while the progress line followed the second."""
    app = console()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        for subject in ("First", "Second"):
            await compose(pilot, subject, "Body")
            await pilot.press("ctrl+g")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("y")
            await wait_for(pilot, lambda s=subject: screen(app).rows and any(
                p.subject == s for p in screen(app).rows.values()))
        second = screen(app).chosen
        await wait_for(pilot, lambda: screen(app).query_one(RecordTable).current == second)
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        message = text_of(app.screen.query_one("#dialog-message", Static))
        buttons = [str(b.label) for b in app.screen.query(Button)]
        assert f"#{second} “Second”" in message
        # A cancel asked with two buttons both reading "Cancel" is no question at all.
        assert buttons == ["Cancel broadcast (y)", "Keep it (n)"]
        await pilot.press("n")


async def test_a_new_composer_after_a_send_saves_no_empty_draft(
    people, console, sqlite_engine, jobs
):
    app = console()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await send(pilot, "Offer", "Ten percent")
        assert not screen(app).dirty  # emptied by the send, not edited
        await pilot.press("ctrl+n", "1", "5")
        await settle(pilot)
    with Session(sqlite_engine) as s:
        assert [b.status for b in s.exec(select(Broadcast)).all()] == ["sending"]


async def test_a_refused_audience_says_why_in_full_at_80_columns(people, console):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await settle(pilot)
        reach = screen(app).query_one("#bc-reach", Static)
        screen(app).query_one("#bc-audience", Input).value = "everyone"
        await wait_for(pilot, lambda: "unknown audience" in text_of(reach))
        await settle(pilot)
        assert reach.size.height >= 2  # the audiences there are, up to sku:SKU, not cut
        assert "sku:SKU" in text_of(reach)


async def test_the_footer_offers_the_composers_keys_while_composing_and_the_lists_on_the_list(
        people, console):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await settle(pilot)

        def offered() -> set[str]:
            return {b.binding.action for b in app.screen.active_bindings.values()
                    if app.screen.check_action(b.binding.action, ()) is not False}

        assert {"pause", "send", "new"} <= offered() and "save" not in offered()
        screen(app).query_one("#bc-subject", Input).focus()
        await settle(pilot)
        assert {"save", "test_send", "send"} <= offered() and "pause" not in offered()
