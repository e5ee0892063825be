"""The console's frame and overview, driven by Textual's Pilot: live data, pause, the
embedded worker, read-only, help and screen keys."""

from __future__ import annotations

from conftest import settle
from sqlmodel import Session
from textual.widgets import DataTable, Static

from kolaq_console.ui.messages import OverviewCollected
from kolaq_console.ui.screens.emails import EmailsScreen
from kolaq_console.ui.screens.overview import OverviewScreen


async def test_overview_shows_queue_depths_outbox_and_low_stock(shop, console, huey):
    @huey.task(priority=200)
    def send(x):
        pass

    send(1)
    send(2)
    messages: list = []
    app = console()
    async with app.run_test(size=(100, 30), message_hook=messages.append) as pilot:
        await settle(pilot)
        [collected, *_] = [m for m in messages if isinstance(m, OverviewCollected)]
        assert collected.data.status.storage == {"database": "ok", "queue": "ok"}
        queues = app.screen.query_one("#queues", DataTable)
        rows = {queues.get_row_at(i)[0]: queues.get_row_at(i) for i in range(queues.row_count)}
        assert rows["emails"][1].strip() == "2"
        attention = str(app.screen.query_one("#ov-attention", Static).render())
        assert "2 queued" in attention and "1 failed" in attention
        assert "Low stock" in attention


async def test_pause_stops_the_refresh_and_resume_restarts_it(shop, console):
    app = console()
    async with app.run_test() as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, OverviewScreen)
        assert screen._timer is not None  # the next poll is scheduled
        await pilot.press("p")
        await settle(pilot)
        assert app.paused and screen._timer is None
        await pilot.press("p")
        await settle(pilot)
        assert not app.paused and screen._timer is not None


async def test_a_dialog_on_top_freezes_the_refresh_of_the_screen_below(shop, console):
    app = console()
    async with app.run_test() as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("question_mark")
        await settle(pilot)
        assert app.screen is not screen and screen._timer is None
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen and screen._timer is not None


async def test_number_keys_switch_screens(shop, console):
    app = console()
    async with app.run_test() as pilot:
        await pilot.press("4")
        await settle(pilot)
        assert isinstance(app.screen, EmailsScreen)
        await pilot.press("1")
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)


async def test_read_only_console_refuses_to_start_the_worker(sqlite_engine, console):
    app = console(read_only=True)
    async with app.run_test() as pilot:
        await pilot.press("w")
        await settle(pilot)
        assert not app.embedded.running
        app.action_toggle_worker()  # even when asked directly (not through the hidden key)
        await settle(pilot)
        assert not app.embedded.running


async def test_embedded_worker_starts_and_stops_from_the_keyboard(sqlite_engine, console):
    app = console()
    async with app.run_test() as pilot:
        await pilot.press("w")
        await settle(pilot)
        assert app.embedded.running and app.worker_running
        await pilot.press("w")
        await settle(pilot)
        assert not app.embedded.running and not app.worker_running


async def test_needs_attention_counts_queue_payloads_the_workers_refused(shop, console,
                                                                          sqlite_engine):
    from kolaq_console.models import FailedJob, utcnow

    with Session(sqlite_engine) as s:
        for i in range(2):
            s.add(FailedJob(task_id=f"rejected-{i}", task_name="(rejected payload)",
                            queue="emails", error_type="RejectedPayload",
                            error_message="signed with a different KOLAQ_SIGNING_KEY; 90 bytes",
                            created_at=utcnow()))
        s.commit()
    app = console()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        attention = str(app.screen.query_one("#ov-attention", Static).render())
        assert "2 payloads rejected" in attention.splitlines()[0]  # on the Failed jobs line


async def test_the_embedded_worker_refuses_a_configuration_that_cannot_send(
        sqlite_engine, make_settings):
    from conftest import clock

    from kolaq_console.emails.sendable import require_can_send
    from kolaq_console.taskqueue import make_huey
    from kolaq_console.ui.app import make_app

    settings = make_settings(email__transport="resend")  # and no RESEND_API_KEY
    huey = make_huey(settings)
    huey.check_before_consuming(require_can_send)  # as tasks.py does for tasks.huey
    app = make_app(settings, huey=huey, clock=clock)
    notes: list[str] = []
    async with app.run_test() as pilot:
        app.notify = lambda message, **kw: notes.append(str(message))  # type: ignore[method-assign]
        await pilot.press("w")
        await settle(pilot)
        assert not app.embedded.running and not app.worker_running
    assert any(n.startswith("RESEND_API_KEY is not set") for n in notes), notes
