"""2 Failed jobs: the job ledger's open entries, filtered, in detail, retried and discarded
from the keyboard, with confirmations for bulk actions."""

from __future__ import annotations

from datetime import timedelta

import jobs_tasks
import pytest
from conftest import settle
from sqlmodel import Session, select

from kolaq_console.jobs import failed as ledger
from kolaq_console.jobs import install_ledger
from kolaq_console.jobs.failed import JobFilter
from kolaq_console.models import FailedJob, utcnow
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.messages import BulkTargetsSelected, JobsDiscarded, JobsRetried
from kolaq_console.ui.screens.failed_jobs import GRAMMAR, FailedJobsScreen, job_filter
from kolaq_console.ui.screens.job_detail import JobDetailScreen
from kolaq_console.ui.widgets.record_table import RecordTable

SECRET = "test-key-not-real-0451"


@pytest.fixture
def failures(huey, settings, sqlite_engine, tmp_path, monkeypatch):
    """Real ledger entries: 3 `permanent` failures on emails, 2 `fail_until` on webhooks
    (retries exhausted, one with an api_key argument). Their ids, oldest first."""
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setenv("KOLAQ_TEST_RUNS", str(runs))
    tasks = jobs_tasks.register(huey, settings)
    install_ledger(huey, settings)
    for i in range(3):
        huey.execute(tasks.permanent.s(f"p{i}"))
    for i in range(2):
        run_until_done(huey, tasks.fail_until.s(f"w{i}", 10, api_key=SECRET))
    with Session(sqlite_engine) as s:
        ids = list(s.exec(select(FailedJob.id).order_by(FailedJob.id)).all())
    assert len(ids) == 5 and huey.pending_count() == 0
    return ids


def run_until_done(huey, task) -> None:
    """Execute a job and its retries as a worker would, without waiting for their delays."""
    huey.execute(task)
    while due := [t for t in huey.read_schedule(utcnow() + timedelta(days=1))
                  if t.id == task.id]:
        huey.execute(due[0], timestamp=due[0].eta)


def open_count(engine) -> int:
    with Session(engine) as s:
        return ledger.count_failed(s)


def listed(app) -> list[int]:
    return app.screen.query_one(RecordTable).keys()


async def open_failed(pilot) -> None:
    await pilot.press("2")
    await settle(pilot)
    assert isinstance(pilot.app.screen, FailedJobsScreen)


def test_filter_text_parses_queue_task_and_error_words():
    assert job_filter(GRAMMAR.parse("webhooks task:fail_until on purpose")) == JobFilter(
        queue="webhooks", task="fail_until", error="on purpose")
    assert job_filter(GRAMMAR.parse("queue:emails")) == JobFilter(queue="emails")


async def test_lists_open_failures_newest_first_with_errors_as_plain_text(failures, console):
    app = console()
    async with app.run_test(size=(200, 24)) as pilot:
        await open_failed(pilot)
        assert listed(app) == list(reversed(failures))
        table = app.screen.query_one(RecordTable)
        error = table.get_row(str(failures[-1]))[3]  # after the mark, # and who it was for
        # brackets in data are text, not markup
        assert str(error) == "run 4 of w1 failed on purpose (key [REDACTED])"  # the bare reason


async def test_filter_narrows_the_list_by_queue_and_by_error(failures, console):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await open_failed(pilot)
        await pilot.press("slash", *"webhooks", "enter")
        await settle(pilot)
        assert listed(app) == list(reversed(failures[3:]))
        # `/` again selects the filter, so typing replaces it; words match the error
        await pilot.press("slash", *"emails p1: the provider")
        await settle(pilot)
        assert listed(app) == [failures[1]]
        await pilot.press("escape")
        await settle(pilot)
        assert len(listed(app)) == 5


async def test_retry_all_with_confirmation_reenqueues_every_match(failures, console, huey,
                                                                  sqlite_engine):
    messages: list = []
    app = console()
    async with app.run_test(size=(120, 40), message_hook=messages.append) as pilot:
        await open_failed(pilot)
        await pilot.press("R")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        assert app.screen.title_text == "Retry 5 failed jobs?"
        await pilot.press("enter")
        await settle(pilot)
        assert listed(app) == []
        [retried] = [m for m in messages if isinstance(m, JobsRetried)]
        assert any("Retried 5 jobs" in n.message for n in app._notifications)
    assert len(retried.retried) == 5 and retried.skipped == []
    assert open_count(sqlite_engine) == 0
    assert huey.pending_count() == 5
    with Session(sqlite_engine) as s:
        rows = s.exec(select(FailedJob)).all()
    assert {r.status for r in rows} == {"retried"}
    assert {r.retried_as for r in rows} == {t for _, t in retried.retried}
    assert {r.resolved_by for r in rows} == {"test-operator"}


async def test_retry_all_acts_on_the_filtered_entries_only(failures, console, huey,
                                                           sqlite_engine):
    messages: list = []
    app = console()
    async with app.run_test(size=(80, 24), message_hook=messages.append) as pilot:
        await open_failed(pilot)
        await pilot.press("slash", *"queue:emails", "enter", "R")
        await settle(pilot)
        [targets] = [m for m in messages if isinstance(m, BulkTargetsSelected)]
        assert targets.ids == failures[:3]
        await pilot.press("y")
        await settle(pilot)
    assert open_count(sqlite_engine) == 2
    assert huey.pending_count() == 3


async def test_cancelled_confirmation_changes_nothing(failures, console, huey, sqlite_engine):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await open_failed(pilot)
        await pilot.press("D")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert len(listed(app)) == 5
    assert open_count(sqlite_engine) == 5 and huey.pending_count() == 0


async def test_retry_one_reenqueues_the_entry_under_the_cursor(failures, console, huey,
                                                               sqlite_engine):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await open_failed(pilot)
        await pilot.press("r")  # one entry: no confirmation
        await settle(pilot)
        assert listed(app) == list(reversed(failures[:-1]))
    assert huey.pending_count() == 1 and open_count(sqlite_engine) == 4


async def test_marked_entries_are_discarded_after_confirming(failures, console, huey,
                                                             sqlite_engine):
    messages: list = []
    app = console()
    async with app.run_test(size=(80, 24), message_hook=messages.append) as pilot:
        await open_failed(pilot)
        await pilot.press("space", "down", "space")  # marks the newest and the third newest
        await settle(pilot)
        assert app.screen.query_one(RecordTable).marked == {failures[4], failures[2]}
        await pilot.press("d")
        await settle(pilot)
        assert app.screen.title_text == "Discard 2 failed jobs?"
        await pilot.press("y")
        await settle(pilot)
        [discarded] = [m for m in messages if isinstance(m, JobsDiscarded)]
        assert sorted(listed(app)) == [failures[0], failures[1], failures[3]]
    assert discarded.count == 2
    assert open_count(sqlite_engine) == 3 and huey.pending_count() == 0


async def test_detail_shows_redacted_arguments_error_and_traceback(failures, console):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await open_failed(pilot)
        await pilot.press("enter")  # the newest: fail_until with an api_key
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, JobDetailScreen)
        job = screen.job
        assert job.task_name == "jobs_tasks.fail_until" and job.attempts == 4
        shown = "".join(str(w.render()) for w in screen.query("Static"))
        assert SECRET not in shown
        assert "[REDACTED]" in shown and "ValueError" in shown and "Traceback" in shown
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, FailedJobsScreen)  # back to the list, one fewer
        assert len(listed(app)) == 4


async def test_read_only_console_refuses_every_action(failures, console, huey, sqlite_engine):
    app = console(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_failed(pilot)
        await pilot.press("R", "D", "r", "d")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmDialog)
        screen = app.screen
        for action in (screen.action_retry_all, screen.action_retry, screen.action_discard):
            action()
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmDialog)
        footer_keys = {b.binding.key for b in app.active_bindings.values() if b.binding.show}
        assert not footer_keys & {"r", "R", "d", "D"}
    assert open_count(sqlite_engine) == 5 and huey.pending_count() == 0
