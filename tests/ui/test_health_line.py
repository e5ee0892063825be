"""The health line: on every screen, fed by one app-level poll; a database that goes away reads
"db unknown · stale since HH:MM" (never zeros) and the line recovers by itself. The overview's
charts scale with the terminal's width and draw gaps where nothing was sampled."""

from __future__ import annotations

from pathlib import Path

from conftest import settle
from seed import clock, seed_depth_samples, seed_ledger
from textual.widgets import Static

from kolaq_console.ui.app import make_app
from kolaq_console.ui.widgets.charts import LastHourCharts
from kolaq_console.ui.widgets.health_line import GROUP


def line(app) -> str:
    return str(app.screen.query_one("#health-line", Static).render())


async def test_every_screen_shows_the_same_health_line(shop, make_settings, huey,
                                                       sqlite_engine):
    seed_ledger(sqlite_engine)  # a live and a dead worker (with a 120 s lease)
    app = make_app(make_settings(console__refresh_seconds="60", jobs__lease_seconds="120"),
                   huey=huey, clock=clock)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        for key in "12345679":
            await pilot.press(key)
            await settle(pilot)
            text = line(app)
            assert "db ok" in text and "queue ok" in text, (key, text)
            assert "1 live · 1 dead" in text and "embedded off" in text, (key, text)
        # the outbox has 2 queued rows and the queue no job: flagged
        assert "outbox 2 waiting · 0 jobs ⚠ no sending job queued" in line(app)


async def test_one_app_level_poll_feeds_the_line(shop, console):
    app = console()
    async with app.run_test() as pilot:
        await settle(pilot)
        for key in "234":
            await pilot.press(key)
            await settle(pilot)
        polls = [w for w in app.workers if w.group == GROUP]
        assert len(polls) <= 1  # screens do not start their own
        assert app.health.latest is not None


async def test_a_lost_database_reads_unknown_stale_since_and_recovers(shop, console,
                                                                      sqlite_engine):
    app = console()
    db = Path(sqlite_engine.url.database)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        assert "db ok" in line(app)
        db.rename(db.with_suffix(".away"))
        try:
            app.health.poll()
            await settle(pilot)
            text = line(app)
            # the frozen clock is 11:00 UTC, 12:00 on the shop's clock (Africa/Lagos)
            assert "db unknown · stale since 12:00" in text, text
            assert "workers unknown" in text and "outbox ? waiting" in text
            assert " 0 " not in text
        finally:
            db.with_suffix(".away").rename(db)
        app.health.poll()
        await settle(pilot)
        assert "db ok" in line(app) and "unknown" not in line(app)


async def test_the_embedded_worker_switch_shows_at_once(sqlite_engine, console):
    app = console()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        assert "embedded off" in line(app)
        await pilot.press("w")
        await settle(pilot)
        assert "embedded on" in line(app)
        await pilot.press("w")
        await settle(pilot)
        assert "embedded off" in line(app)


async def test_the_navbar_no_longer_says_worker_off_beside_live_workers(shop, console,
                                                                        sqlite_engine):
    seed_ledger(sqlite_engine)
    app = console()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        flags = str(app.screen.query_one("#nav-flags", Static).render())
        assert "worker" not in flags


async def test_charts_scale_with_the_width_and_show_gaps(shop, console, sqlite_engine):
    seed_ledger(sqlite_engine)
    seed_depth_samples(sqlite_engine)
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        narrow = str(app.screen.query_one("#ov-charts", LastHourCharts).render())
        assert "1 col = 2 min" in narrow and "-60m" in narrow and "now" in narrow
        emails = narrow.splitlines()[0]
        assert emails.startswith("emails    depth") and "·····" in emails  # the gap
        assert "max 28" in emails
        await pilot.resize_terminal(120, 40)
        await settle(pilot)
        wide = str(app.screen.query_one("#ov-charts", LastHourCharts).render())
        assert "1 col = 1 min" in wide and "··········" in wide.splitlines()[0]
        assert "webhooks  idle" in wide


async def test_charts_unknown_when_the_database_cannot_be_read(shop, console, sqlite_engine):
    app = console()
    db = Path(sqlite_engine.url.database)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        db.rename(db.with_suffix(".away"))
        try:
            app.screen.reload()
            await settle(pilot)
            text = str(app.screen.query_one("#ov-charts", LastHourCharts).render())
            assert "Charts unknown" in text
        finally:
            db.with_suffix(".away").rename(db)
