"""On the demo shop (catalogue and its living present), every numbered screen opens on rows,
not on an empty list."""

from __future__ import annotations

from conftest import settle
from seed import NOW
from textual.widgets import DataTable

from kolaq_console.demo import load_demo
from kolaq_console.demo_live import load_live

SCREENS = {"1": "overview", "2": "failed", "3": "inventory", "4": "emails", "5": "broadcast",
           "6": "orders", "7": "webhooks", "9": "messages"}


async def test_every_screen_of_the_demo_has_rows(sqlite_engine, settings, console):
    load_demo(sqlite_engine, now=NOW)
    load_live(sqlite_engine, settings, NOW)
    app = console()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        for key, mode in SCREENS.items():
            await pilot.press(key)
            await settle(pilot)
            assert app.current_mode == mode
            tables = list(app.screen.query(DataTable))
            assert any(t.row_count for t in tables), mode
            if mode == "broadcast":
                await pilot.press("escape")  # the composer takes the focus: give it back
