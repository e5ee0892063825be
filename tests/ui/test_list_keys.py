"""Keys every list shares (ListScreen and RecordTable): the filter grammar's errors, sort,
copy, Esc's order, j/k/g/G, retry that asks before resending an email, `?` listing every
binding, themes, refresh and the numbered screens."""

from __future__ import annotations

from conftest import settle
from seed import seed_ledger
from sqlmodel import Session, select
from textual.command import CommandPalette
from textual.widgets import Static

from kolaq_console.models import FailedJob
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.dialogs.help import HelpDialog
from kolaq_console.ui.messages import JobsRetried
from kolaq_console.ui.screens.activity import ActivityScreen
from kolaq_console.ui.screens.emails import EmailsScreen
from kolaq_console.ui.screens.failed_jobs import FailedJobsScreen
from kolaq_console.ui.screens.overview import OverviewScreen
from kolaq_console.ui.widgets.filter_bar import FilterBar
from kolaq_console.ui.widgets.navbar import NavBar
from kolaq_console.ui.widgets.record_table import RecordTable, plain


def table(app) -> RecordTable:
    return app.screen.table


def caption(app) -> str:
    return str(app.screen.query_one("#list-caption", Static).render())


async def test_a_bad_filter_key_says_which_keys_are_allowed_and_the_rest_applies(shop, console):
    app = console()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("4", "slash", *"sent")
        await settle(pilot)
        sent = table(app).keys()
        assert len(sent) == 3
        # pasted at once (typed, "sent colour" on the way would be a words filter)
        app.screen.query_one(FilterBar).value = "sent colour:red"
        await settle(pilot)
        assert table(app).keys() == sent  # the previous filter still applies
        text = caption(app)
        assert "unknown filter key “colour:”" in text and "status:, kind:" in text
        assert "not applied" in text
        app.screen.query_one(FilterBar).value = "who"  # typed on the way to who:ada
        await settle(pilot)
        app.screen.query_one(FilterBar).value = "who:ada"
        await settle(pilot)
        assert len(table(app).keys()) > len(sent)  # not filtered by the word `who`
        assert "unknown filter key “who:”" in caption(app)


async def test_o_sorts_by_the_next_column_and_capital_o_reverses(shop, console):
    app = console()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        assert table(app).displayed() == list(reversed(shop))  # newest first, as listed
        await pilot.press("o")  # the first column: the id
        assert table(app).displayed() == sorted(shop)
        await pilot.press("O")
        assert table(app).displayed() == sorted(shop, reverse=True)
        await pilot.press("O", "o")  # ascending again, then the status column
        statuses = [plain(table(app).cells(k)[1]) for k in table(app).displayed()]
        assert statuses == sorted(statuses)
        assert table(app).sort_label() == "sorted by status (ascending)"


async def test_y_copies_the_sort_columns_cell_and_capital_y_the_whole_row(shop, console):
    app = console()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        newest = shop[-1]
        await pilot.press("y")
        assert app.clipboard == str(newest)  # unsorted: the first column
        await pilot.press("o", "o", "g", "y")  # sorted by status
        first = table(app).displayed()[0]
        assert app.clipboard == plain(table(app).cells(first)[1])
        await pilot.press("Y")
        row = app.clipboard.split("\t")
        assert row[0] == str(first) and len(row) == len(EmailsScreen.COLUMNS)


async def test_escape_clears_marks_then_the_filter_then_goes_to_the_overview(
        sqlite_engine, console):
    seed_ledger(sqlite_engine)
    app = console()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("2", "slash", *"emails", "enter")
        await settle(pilot)
        assert isinstance(app.screen, FailedJobsScreen)
        assert len(table(app).keys()) == 2
        await pilot.press("space")
        assert table(app).marked
        await pilot.press("escape")
        assert not table(app).marked and app.screen.filter.get("queue") == "emails"
        await pilot.press("escape")
        await settle(pilot)
        assert not app.screen.filter and len(table(app).keys()) == 4
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)


async def test_j_k_g_and_capital_g_move_the_cursor(shop, console):
    app = console()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        rows = table(app).row_count
        await pilot.press("j", "j")
        assert table(app).cursor_row == 2
        await pilot.press("k")
        assert table(app).cursor_row == 1
        await pilot.press("G")
        assert table(app).cursor_row == rows - 1
        await pilot.press("g")
        assert table(app).cursor_row == 0
        await pilot.press("end")
        assert table(app).cursor_row == rows - 1
        await pilot.press("home")
        assert table(app).cursor_row == 0


def open_status(engine, job_id: int) -> str:
    with Session(engine) as s:
        job = s.get(FailedJob, job_id)
        assert job is not None
        return job.status


async def test_retrying_an_email_send_asks_first_and_cancel_retries_nothing(
        sqlite_engine, console):
    seed_ledger(sqlite_engine)
    with Session(sqlite_engine) as s:
        newest = max(j.id for j in s.exec(select(FailedJob)).all() if j.id)
    messages: list = []
    app = console()
    async with app.run_test(size=(120, 30), message_hook=messages.append) as pilot:
        await pilot.press("2")
        await settle(pilot)
        assert table(app).current == newest  # tasks.send_email
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        assert "sends the email again" in app.screen.message
        await pilot.press("n")
        await settle(pilot)
        assert not [m for m in messages if isinstance(m, JobsRetried)]
        assert open_status(sqlite_engine, newest) == "failed"
        await pilot.press("r", "y")
        await settle(pilot)
        [retried] = [m for m in messages if isinstance(m, JobsRetried)]
        # the seeded entry has no stored message to re-enqueue: tried, and skipped with why
        assert [i for i, _ in retried.retried + retried.skipped] == [newest]


async def test_retrying_a_job_that_sends_no_email_does_not_ask(sqlite_engine, console):
    seed_ledger(sqlite_engine)
    messages: list = []
    app = console()
    async with app.run_test(size=(120, 30), message_hook=messages.append) as pilot:
        await pilot.press("2", "slash", *"inventory", "enter")
        await settle(pilot)
        [job_id] = table(app).keys()
        await pilot.press("r")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmDialog)
        [retried] = [m for m in messages if isinstance(m, JobsRetried)]
        assert [i for i, _ in retried.retried + retried.skipped] == [job_id]


async def test_help_lists_every_binding_of_the_screen_the_list_and_the_app(shop, console):
    app = console()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        expected = {b.binding.description for b in app.active_bindings.values()
                    if b.binding.description and not b.binding.system}
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpDialog)
        listed = {text for _, keys in app.screen.sections for _, text in keys}
        assert expected <= listed
        for description in ("Filter", "Sort", "Reverse sort", "Copy cell", "Copy row",
                            "Send again", "First row", "Last row", "Theme", "Refresh now",
                            "Activity"):
            assert description in listed


async def test_capital_t_opens_the_theme_picker_and_ctrl_r_refreshes(shop, console):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert any(n.message == "Refreshed" for n in app._notifications)
        await pilot.press("T")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)


async def test_r_never_refreshes_the_overview(shop, console):
    app = console()
    async with app.run_test(size=(80, 24)):
        assert "r" not in app.screen._bindings.key_to_bindings


async def test_8_opens_activity_and_the_navbar_shows_8_and_9_within_80_columns(shop, console):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("8")
        await settle(pilot)
        assert isinstance(app.screen, ActivityScreen)
        bar = app.screen.query_one(NavBar)
        line = " ".join(str(s.render()) for s in bar.query(Static))
        assert "8 Log" in line and "9 SMS" in line
        assert bar.query_one("#nav-screens").size.width + \
            bar.query_one("#nav-flags").size.width <= 80


async def test_the_navbar_follows_the_terminal_across_120_columns(shop, console):
    app = console()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("p")  # a flag, to see it survive the new layout
        await settle(pilot)

        def navbar() -> str:
            return " ".join(str(s.render()) for s in app.screen.query_one(NavBar).query(Static))

        assert "2 Failed jobs" in navbar()
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        assert "2 Fail " in navbar() and "Failed jobs" not in navbar()
        assert "PAUSED" in navbar()
        await pilot.resize_terminal(130, 30)
        await settle(pilot)
        assert "2 Failed jobs" in navbar() and "PAUSED" in navbar()


async def test_an_empty_list_says_what_to_do_next(sqlite_engine, console):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        empty = app.screen.query_one("#list-empty", Static)
        assert empty.display and "No open failed jobs" in str(empty.render())
        await pilot.press("slash", *"nothing-like-this", "enter")
        await settle(pilot)
        assert "Esc clears the filter" in str(empty.render())


async def test_activity_filters_by_actor_and_follows_the_record_it_names(
        shop, console, monkeypatch):
    from kolaq_console.ui.screens import activity

    opened: list = []

    class Links:
        @staticmethod
        def open_kind(app, kind, ref):
            opened.append((kind, ref))

    app = console()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("8", "slash", *"actor:ada", "enter")
        await settle(pilot)
        entries = app.screen.entries
        assert entries and {e.actor for e in entries.values()} == {"ada"}
        monkeypatch.setattr(activity, "links", Links)
        await pilot.press("enter")
        await settle(pilot)
    assert opened == [("product", "KB-ORNG-375")]  # the newest of ada's: the 2nd adjustment


async def test_the_broadcasts_list_sorts_and_copies_too(shop, console, sqlite_engine, settings):
    from seed import seed_broadcasts

    seed_broadcasts(sqlite_engine, settings)
    app = console()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await settle(pilot)
        broadcasts = app.screen.query_one("#broadcasts", RecordTable)
        broadcasts.focus()
        await pilot.press("o")
        assert broadcasts.sort_column is not None
        await pilot.press("Y")
        assert app.clipboard == broadcasts.row_text()


async def test_paused_and_read_only_both_fit_the_navbar_at_80_columns(shop, console):
    app = console(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        bar = app.screen.query_one(NavBar)
        flags = str(bar.query_one("#nav-flags", Static).render())
        assert "PAUSED" in flags and "READ-ONLY" in flags
        labels = str(bar.query_one("#nav-screens", Static).render())
        assert labels.endswith("9 SMS")
        assert len(labels) + len(flags) <= 80


async def test_help_keeps_every_description_in_one_column(shop, console):
    """A key longer than the others (shift+tab) pushed its description out of line."""
    app = console()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("9", "question_mark")
        assert isinstance(app.screen, HelpDialog)
        text = str(app.screen.query_one("#help-keys", Static).render())
    starts = {line.index(description) for line in text.splitlines()
              for description in ("Focus Previous", "Filter", "Quit") if description in line}
    assert len(starts) == 1
