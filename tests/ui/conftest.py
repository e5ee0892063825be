"""Console tests: an app factory on a migrated SQLite database with the fixed seed data, and
`settle(pilot)`, which waits until the workers an action started (and the reloads they
triggered) have finished."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from seed import clock, seed_emails, seed_shop
from textual.worker import WorkerFailed

from kolaq_console.ui.app import KolaqConsole, make_app
from kolaq_console.ui.screens.base import ACTIVE

_SEEDED: dict[str, tuple[Path, list[int]]] = {}  # this process's seeded shop, once


@pytest.fixture
def shop(sqlite_engine, settings, tmp_path_factory):
    """The demo shop and seeded outbox rows; the ids of those rows. Seeded once per process
    (~0.2 s), then copied into each test's database: the data is fixed (times from the frozen
    clock) and nothing of it depends on the test's queue or paths."""
    if "shop" not in _SEEDED:
        seed_shop(sqlite_engine, settings)
        ids = seed_emails(sqlite_engine, settings)
        copy = tmp_path_factory.mktemp("seeded") / "shop.db"
        _sqlite_copy(sqlite_engine.url.database, copy)
        _SEEDED["shop"] = (copy, ids)
        return list(ids)
    copy, ids = _SEEDED["shop"]
    _sqlite_copy(copy, sqlite_engine.url.database)
    return list(ids)


def _sqlite_copy(source, target) -> None:
    """SQLite's online backup: a consistent copy, whatever connections are open."""
    with contextlib.closing(sqlite3.connect(source)) as src, \
            contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


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
