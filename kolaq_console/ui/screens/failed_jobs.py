"""2 Failed jobs: the open entries of the job ledger; filter; detail; retry or discard one,
the marked ones, or every entry matching the filter (confirmed with the exact count)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.widgets import DataTable, Static

from kolaq_console.jobs import failed as ledger
from kolaq_console.taskqueue import LOGICAL_QUEUES
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.format import ago, clip, plural, short_task, when
from kolaq_console.ui.messages import (
    BulkTargetsSelected,
    FailedJobsLoaded,
    JobsDiscarded,
    JobsRetried,
)
from kolaq_console.ui.screens.base import POLL, LiveScreen
from kolaq_console.ui.widgets.filter_bar import FilterBar
from kolaq_console.ui.widgets.record_table import Col, RecordTable

LIMIT = 200
ACTION = "jobs-action"
COLUMNS = (
    Col("#", 4, right=True), Col("task", 10, flex=1), Col("queue", 9),
    Col("error", 16, flex=4), Col("tries", 5, right=True), Col("ago", 4, right=True),
    Col("last try", 11, hide_below=110),
)


@dataclass(frozen=True)
class JobQuery:
    """`/` text: `queue:emails task:send_email timeout` — a bare queue name filters by queue;
    other words match the error type or message."""

    queue: str | None = None
    task: str | None = None
    error: str | None = None
    problem: str | None = None  # e.g. a queue name still being typed: ignored, and said so

    @classmethod
    def parse(cls, text: str) -> JobQuery:
        queue = task = problem = None
        words = []
        for word in text.split():
            key, sep, value = word.partition(":")
            if sep and key == "queue":
                if value in LOGICAL_QUEUES:
                    queue = value
                else:
                    problem = f"unknown queue “{value}” ({', '.join(LOGICAL_QUEUES)})"
            elif sep and key == "task":
                task = value or None
            elif word in LOGICAL_QUEUES:
                queue = word
            else:
                words.append(word)
        return cls(queue=queue, task=task, error=" ".join(words) or None, problem=problem)

    def job_filter(self) -> ledger.JobFilter:
        return ledger.JobFilter(queue=self.queue, task=self.task, error=self.error)

    def describe(self, markup: bool = True) -> str:
        """What is filtered, for the caption (markup, typed text escaped) or a dialog."""
        esc = escape if markup else str
        parts = [f"queue {self.queue}" if self.queue else "",
                 f"task {esc(self.task)}" if self.task else "",
                 f"error “{esc(self.error)}”" if self.error else ""]
        if self.problem:
            parts.append(f"[$warning]{esc(self.problem)}[/]" if markup else self.problem)
        return " · ".join(p for p in parts if p) or "no filter"


@dataclass
class FailedPage:
    rows: list[ledger.FailedJobSummary]
    total: int


def load_failed(session: Session, query: JobQuery) -> FailedPage:
    flt = query.job_filter()
    return FailedPage(ledger.list_failed(session, flt, limit=LIMIT),
                      ledger.count_failed(session, flt, cap=ledger.PAGE_COUNT_CAP))


def retried_text(event: JobsRetried) -> tuple[str, str]:
    text = f"Retried {plural(len(event.retried), 'job')}: re-enqueued as new jobs"
    if not event.skipped:
        return text, "information"
    first = "; ".join(f"#{i}: {why}" for i, why in event.skipped[:2])
    return f"{text}; skipped {len(event.skipped)} ({clip(first, 120)})", "warning"


class JobScreenBase(LiveScreen):
    """Retry and discard, shared by the list and the detail view."""

    MODE = "failed"
    # marking only serves the actions, so it goes with them
    WRITE_ACTIONS = frozenset({"retry", "discard", "retry_all", "discard_all", "mark"})

    def act(self, action: str, ids: list[int], what: str, flt: ledger.JobFilter | None = None,
            confirm: bool = True) -> None:
        """Retry or discard exactly `ids` (`what` names them in the dialog)."""
        if self.refused(action):
            return
        if not ids:
            self.notify("Nothing to " + action, severity="warning")
            return
        run = self.retry_jobs if action == "retry" else self.discard_jobs
        if not confirm:
            run(ids, flt)
            return
        verb = "Retry" if action == "retry" else "Discard"
        consequence = ("Each is re-enqueued as a new job with a fresh retry budget."
                       if action == "retry" else
                       "They are closed without running again (the records stay).")
        self.app.push_screen(
            ConfirmDialog(f"{verb} {plural(len(ids), 'failed job')}?",
                          f"{what}\n\n{consequence}", confirm=verb),
            lambda ok: run(ids, flt) if ok else None,
        )

    @work(thread=True, exit_on_error=False, group=ACTION, description="Retry")
    def retry_jobs(self, ids: list[int], flt: ledger.JobFilter | None) -> None:
        app = self.console
        outcome = ledger.retry_failed(app.engine, app.huey, ids, app.operator, flt)
        self.post_message(JobsRetried(outcome.retried, outcome.skipped))

    @work(thread=True, exit_on_error=False, group=ACTION, description="Discard")
    def discard_jobs(self, ids: list[int], flt: ledger.JobFilter | None) -> None:
        app = self.console
        count = ledger.discard_failed(app.engine, ids, app.operator, flt)
        self.post_message(JobsDiscarded(count, len(ids)))

    @on(JobsRetried)
    def _retried(self, event: JobsRetried) -> None:
        text, severity = retried_text(event)
        self.notify(text, title="Failed jobs", severity=severity,  # type: ignore[arg-type]
                    markup=False)
        self.after_action()

    @on(JobsDiscarded)
    def _discarded(self, event: JobsDiscarded) -> None:
        gone = event.requested - event.count
        extra = f" ({gone} already closed by someone else)" if gone else ""
        self.notify(f"Discarded {plural(event.count, 'job')}{extra}", title="Failed jobs")
        self.after_action()

    def after_action(self) -> None:
        self.reload()


class FailedJobsScreen(JobScreenBase):
    TITLE_TEXT = "Failed jobs"
    BINDINGS = [
        Binding("enter", "open", "Detail", show=False),
        Binding("space", "mark", "Mark"),
        Binding("r", "retry", "Retry"),
        Binding("R", "retry_all", "Retry all"),
        Binding("d", "discard", "Discard"),
        Binding("D", "discard_all", "Discard all"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self.total = 0

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome_top()
        yield Static(id="list-caption", classes="caption")
        yield RecordTable(id="failed", markable=True)
        yield FilterBar("queue:emails task:send_email or words of the error")
        yield from self.compose_chrome_bottom()

    def on_mount(self) -> None:
        self.query_one(RecordTable).set_columns(*COLUMNS)
        self.query_one(FilterBar).display = False

    @property
    def job_query(self) -> JobQuery:
        return JobQuery.parse(self.filter_text)

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL, description="Failed jobs")
    def load(self) -> None:
        query = self.job_query
        with Session(self.console.engine) as session:
            self.deliver(FailedJobsLoaded(load_failed(session, query), query))

    @on(FailedJobsLoaded)
    def show_failed(self, event: FailedJobsLoaded) -> None:
        if not self.accepts() or event.query != self.job_query:
            return
        page: FailedPage = event.data
        self.total = page.total
        zone, now = self.console.settings.shop.zone, self.console.clock()
        table = self.query_one(RecordTable)
        with self.app.batch_update():
            table.replace_rows(
                (r.id, (
                    str(r.id), short_task(r.task_name), r.queue,
                    f"{short_task(r.error_type)}: {r.error_message}" if r.error_type
                    else r.error_message,
                    str(r.attempts), ago(r.last_attempt_at, now), when(r.last_attempt_at, zone),
                ))
                for r in page.rows
            )
            self._caption()

    def _caption(self) -> None:
        table = self.query_one(RecordTable)
        total = (f"{self.total:,}+" if self.total >= ledger.PAGE_COUNT_CAP
                 else f"{self.total:,}")
        shown = f" (newest {table.row_count} shown)" if self.total > table.row_count else ""
        marked = f" · [b]{len(table.marked)}[/] marked" if table.marked else ""
        self.query_one("#list-caption", Static).update(
            f"[b]{total}[/] open failed jobs{shown} · {self.job_query.describe()}{marked}")

    # --- keys --------------------------------------------------------------------------------

    def action_open(self) -> None:
        job_id = self.query_one(RecordTable).current
        if job_id is not None:
            from kolaq_console.ui.screens.job_detail import JobDetailScreen

            self.app.push_screen(JobDetailScreen(job_id))

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_open()

    def action_mark(self) -> None:
        self.query_one(RecordTable).toggle_mark()
        self._caption()

    def _chosen(self) -> tuple[list[int], str]:
        table = self.query_one(RecordTable)
        if table.marked:
            ids = sorted(table.marked)
            return ids, f"The {len(ids)} marked: " + clip(", ".join(f"#{i}" for i in ids), 200)
        current = table.current
        if current is None:
            return [], ""
        _, task, queue, error, *_ = table.cells(current)
        return [current], f"#{current} {task} ({queue}): {error}"

    def action_retry(self) -> None:
        ids, what = self._chosen()
        self.act("retry", ids, what, confirm=len(ids) > 1)

    def action_discard(self) -> None:
        ids, what = self._chosen()
        self.act("discard", ids, what)

    def action_retry_all(self) -> None:
        if not self.refused("retry all"):
            self.select_targets("retry", self.job_query)

    def action_discard_all(self) -> None:
        if not self.refused("discard all"):
            self.select_targets("discard", self.job_query)

    @work(thread=True, exclusive=True, exit_on_error=False, group="targets",
          description="Failed jobs")
    def select_targets(self, action: str, query: JobQuery) -> None:
        with Session(self.console.engine) as session:
            ids = ledger.select_ids(session, flt=query.job_filter())
        self.deliver(BulkTargetsSelected(action, ids, query))  # a second R replaces the first

    @on(BulkTargetsSelected)
    def _targets_selected(self, event: BulkTargetsSelected) -> None:
        query: JobQuery = event.query
        if not event.ids:
            self.notify(f"No open failed job matches ({query.describe()})", severity="warning",
                        markup=True)
            return
        what = ("Every open failed job" if query.job_filter() == ledger.JobFilter()
                else f"Every open failed job matching {query.describe(markup=False)}")
        self.act(event.action, event.ids, what, flt=query.job_filter())

    def after_action(self) -> None:
        self.query_one(RecordTable).clear_marks()
        self.reload()

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    async def action_back(self) -> None:
        table = self.query_one(RecordTable)
        if table.marked:
            table.clear_marks()
            self._caption()
        elif self.filter_text:
            self.query_one(FilterBar).action_clear_filter()
        else:
            await self.app.run_action("go('overview')")

    @on(FilterBar.Applied)
    def _filter_applied(self, event: FilterBar.Applied) -> None:
        self.filter_text = event.text
        self.reload()

    @on(FilterBar.Closed)
    def _filter_closed(self) -> None:
        self.query_one(RecordTable).focus()
