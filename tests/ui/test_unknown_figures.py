"""The overview never shows a 0 nobody counted: figures that cannot be read are shown as the
last known value marked ~, or ? when never read; a read-only console opens no queue file."""

from __future__ import annotations

from pathlib import Path

from conftest import settle
from seed import clock
from textual.widgets import DataTable, Static

from kolaq_console.status import reading_queue
from kolaq_console.ui.app import make_app


def text(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def queue_cells(app) -> dict[str, list[str]]:
    table = app.screen.query_one("#queues", DataTable)
    rows = (table.get_row_at(i) for i in range(table.row_count))
    return {str(r[0]): [str(c).strip() for c in r[1:]] for r in rows}


async def test_database_lost_after_a_good_read_shows_last_known_values_marked_stale(
        shop, console, sqlite_engine, settings):
    app = console()
    db = Path(sqlite_engine.url.database)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "2 queued" in text(app, "#ov-attention")
        db.rename(db.with_suffix(".away"))  # the database is gone
        try:
            app.screen.reload()
            await settle(pilot)
            attention = text(app, "#ov-attention")
            assert "~2 queued" in attention and " 0 " not in attention
            assert "Workers and activity unknown" in text(app, "#workers-empty")
            assert "Database down" in attention and "does not exist" in attention
            assert [c[2] for c in queue_cells(app).values()] == ["~0"] * 3  # in flight
        finally:
            db.with_suffix(".away").rename(db)


async def test_read_only_console_without_a_queue_file_shows_unknown_and_creates_none(
        shop, make_settings, sqlite_engine, tmp_path):
    queue_file = tmp_path / "no-queue" / "queue.db"
    app_settings = make_settings(console__refresh_seconds="60",
                                 queue__sqlite_path=str(queue_file))
    try:
        reading_queue(app_settings)
        raise AssertionError("a missing queue file must be refused")
    except Exception as exc:
        problem = str(exc)
    app = make_app(app_settings, read_only=True, queue_problem=problem, clock=clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        cells = queue_cells(app)
        assert {tuple(c[:2]) for c in cells.values()} == {("?", "?")}  # never read
        assert "Queue down" in text(app, "#ov-attention")
        assert "queue unknown" in text(app, "#health-line")
        assert "2 queued" in text(app, "#ov-attention")  # the database still reads
        await pilot.press("w")  # no worker without a queue (and read-only)
        await settle(pilot)
    assert not queue_file.parent.exists()
