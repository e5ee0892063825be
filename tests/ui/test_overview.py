"""The console overview, driven by Textual's Pilot, and its snapshot at 80x24."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Static

from kolaq_console.demo import load_demo
from kolaq_console.queue import make_huey
from kolaq_console.ui.app import StatusCollected, make_app

SNAPSHOT_APP = Path(__file__).parent / "snapshot_app.py"


async def test_overview_shows_queue_depths_and_low_stock(sqlite_engine, settings):
    load_demo(sqlite_engine)
    huey = make_huey(settings)

    @huey.task(priority=200)
    def send(x):
        pass

    send(1)
    send(2)
    messages: list = []
    app = make_app(settings, huey=huey)
    async with app.run_test(size=(100, 30), message_hook=messages.append) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert any(isinstance(m, StatusCollected) for m in messages)
        queues = app.query_one("#queues", DataTable)
        rows = {queues.get_row_at(i)[0]: queues.get_row_at(i) for i in range(queues.row_count)}
        assert rows["emails"][1] == "2"
        low = app.query_one("#low-stock", DataTable)
        assert low.row_count >= 3
        summary = str(app.query_one("#summary", Static).render())
        assert "Database      ok" in summary
    huey.flush()


async def test_read_only_console_refuses_to_start_the_worker(sqlite_engine, settings):
    app = make_app(settings, huey=make_huey(settings), read_only=True)
    async with app.run_test() as pilot:
        await pilot.press("w")
        await pilot.pause()
        assert not app.worker.running


async def test_embedded_worker_starts_and_stops_from_the_keyboard(sqlite_engine, settings):
    app = make_app(settings, huey=make_huey(settings))
    async with app.run_test() as pilot:
        await pilot.press("w")
        await app.workers.wait_for_complete()
        assert app.worker.running
        await pilot.press("w")
        await app.workers.wait_for_complete()
        assert not app.worker.running


async def _data_loaded(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_overview_snapshot_80x24(snap_compare):
    assert snap_compare(str(SNAPSHOT_APP), terminal_size=(80, 24), run_before=_data_loaded)
