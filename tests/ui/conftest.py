"""Console tests: an app factory on a migrated SQLite database with the fixed seed data, and
`settle(pilot)`, which waits until the workers an action started (and the reloads they
triggered) have finished."""

from __future__ import annotations

import contextlib

import pytest
from seed import clock, seed_emails, seed_shop
from textual.worker import WorkerFailed

from kolaq_console.ui.app import KolaqConsole, make_app
from kolaq_console.ui.screens.base import ACTIVE


@pytest.fixture
def shop(sqlite_engine, settings):
    """The demo shop and seeded outbox rows; the ids of those rows."""
    seed_shop(sqlite_engine, settings)
    return seed_emails(sqlite_engine, settings)


@pytest.fixture
def console(make_settings, settings, huey):
    """`console(read_only=False)`: an app on this test's database and queue, its clock frozen
    and its refresh slow (tests drive refreshes themselves)."""

    def build(**options) -> KolaqConsole:
        app_settings = make_settings(console__refresh_seconds="60")
        return make_app(app_settings, huey=huey, clock=clock, **options)

    return build


async def settle(pilot, rounds: int = 6) -> None:
    """Wait for running workers, then for what their messages started, a few rounds deep."""
    app = pilot.app
    for _ in range(rounds):
        # A failed worker is shown as a notification; tests assert on that.
        with contextlib.suppress(WorkerFailed):
            await app.workers.wait_for_complete()
        await pilot.pause()
        if not any(w.state in ACTIVE for w in app.workers):
            return
