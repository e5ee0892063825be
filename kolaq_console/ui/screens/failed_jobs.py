"""2 Failed jobs: the open entries of the job ledger; filter; detail; retry or discard one,
the marked ones, or every entry matching the filter (confirmed with the exact count)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from sqlmodel import Session, col, select
from textual import on, work
from textual.binding import Binding

from kolaq_console.jobs import failed as ledger
from kolaq_console.jobs.subjects import Subject, bare_reason, resends_email, subjects_of_ids
from kolaq_console.models import FailedJob
from kolaq_console.taskqueue import LOGICAL_QUEUES
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.filtering import Filter, Grammar
from kolaq_console.ui.format import ago, clip, plural, short_task, when
from kolaq_console.ui.messages import (
    BulkTargetsSelected,
    FailedJobsLoaded,
    JobsDiscarded,
    JobsRetried,
)
from kolaq_console.ui.screens.base import POLL, LiveScreen
from kolaq_console.ui.screens.list_screen import ListScreen
from kolaq_console.ui.widgets.record_table import Col

LIMIT = 200
ACTION = "jobs-action"
# Priority 0 survives at 80 columns: who it was for, the reason, the tries.
COLUMNS = (
    Col("#", 4, right=True, priority=5), Col("for", 14, flex=2, priority=0),
    Col("reason", 16, flex=4, priority=0), Col("tries", 5, right=True, priority=0),
    Col("task", 10, flex=1, priority=2, hide_below=90),
    Col("queue", 9, priority=4, hide_below=100),
    Col("ago", 4, right=True, priority=1), Col("last try", 11, hide_below=110),
)
GRAMMAR = Grammar({"queue": LOGICAL_QUEUES, "task": None}, bare_key="queue")


def job_filter(flt: Filter) -> ledger.JobFilter:
    """The ledger's filter: queue and task terms; free words match the error."""
    return ledger.JobFilter(queue=flt.get("queue"), task=flt.get("task"),
                            error=flt.text or None)


@dataclass
class FailedPage:
    rows: list[ledger.FailedJobSummary]
    total: int
    subjects: dict[int, Subject] = field(default_factory=dict)


def load_failed(session: Session, flt: Filter) -> FailedPage:
    jobs = job_filter(flt)
    rows = ledger.list_failed(session, jobs, limit=LIMIT)
    return FailedPage(rows, ledger.count_failed(session, jobs, cap=ledger.PAGE_COUNT_CAP),
                      subjects_of_ids(session, [r.id for r in rows]))


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
            confirm: bool = True, resends: bool = False) -> None:
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
        if action == "retry" and resends:
            consequence += ("\n\nThis sends the email again: if the provider accepted it "
                            "before the failure, the customer may receive it twice.")
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


class FailedJobsScreen(JobScreenBase, ListScreen):
    TITLE_TEXT = "Failed jobs"
    COLUMNS = COLUMNS
    GRAMMAR = GRAMMAR
    TABLE_ID = "failed"
    MARKABLE = True
    PLACEHOLDER = "queue:emails task:send_email or words of the error"
    EMPTY = ("No open failed jobs: every job either completed or is still retrying. "
             "Failures land here once their retries run out; 1 shows the overview.")
    BINDINGS = [
        Binding("space", "mark", "Mark"),
        Binding("r", "retry", "Retry"),
        Binding("R", "retry_all", "Retry all"),
        Binding("d", "discard", "Discard"),
        # under ?, not in the footer: the footer fits 80 columns
        Binding("D", "discard_all", "Discard all", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.rows: dict[int, ledger.FailedJobSummary] = {}

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL, description="Failed jobs")
    def load(self) -> None:
        flt = self.filter
        with Session(self.console.engine) as session:
            self.deliver(FailedJobsLoaded(load_failed(session, flt), flt))

    @on(FailedJobsLoaded)
    def show_failed(self, event: FailedJobsLoaded) -> None:
        if not self.accepts() or event.query != self.filter:
            return
        page: FailedPage = event.data
        self.total = page.total
        self.rows = {r.id: r for r in page.rows}
        zone, now = self.console.settings.shop.zone, self.console.clock()
        self.show_rows(
            (r.id, (
                str(r.id), page.subjects.get(r.id, Subject()).label,
                bare_reason(r.error_type, r.error_message), str(r.attempts),
                short_task(r.task_name), r.queue, ago(r.last_attempt_at, now),
                when(r.last_attempt_at, zone),
            ))
            for r in page.rows
        )

    def caption(self) -> str:
        table = self.table
        total = (f"{self.total:,}+" if self.total >= ledger.PAGE_COUNT_CAP
                 else f"{self.total:,}")
        shown = f" (newest {table.row_count} shown)" if self.total > table.row_count else ""
        marked = f" · [b]{len(table.marked)}[/] marked" if table.marked else ""
        return f"[b]{total}[/] open failed jobs{shown} · {self.filter.describe()}{marked}"

    # --- keys --------------------------------------------------------------------------------

    def open_record(self, key: object) -> None:
        from kolaq_console.ui.screens.job_detail import JobDetailScreen

        self.app.push_screen(JobDetailScreen(int(key)))  # type: ignore[call-overload]

    def action_mark(self) -> None:
        self.table.toggle_mark()
        self.show_caption()

    def _chosen(self) -> tuple[list[int], str]:
        table = self.table
        if table.marked:
            ids = sorted(table.marked)
            return ids, f"The {len(ids)} marked: " + clip(", ".join(f"#{i}" for i in ids), 200)
        current = table.current
        if current is None:
            return [], ""
        _, subject, reason, _tries, task, queue, *_ = table.cells(current)
        return [current], f"#{current} {task} ({queue}) for {subject}: {reason}"

    def action_retry(self) -> None:
        ids, what = self._chosen()
        resends = any(resends_email(self.rows[i].task_name) for i in ids if i in self.rows)
        self.act("retry", ids, what, confirm=len(ids) > 1 or resends, resends=resends)

    def action_discard(self) -> None:
        ids, what = self._chosen()
        self.act("discard", ids, what)

    def action_retry_all(self) -> None:
        if not self.refused("retry all"):
            self.select_targets("retry", self.filter)

    def action_discard_all(self) -> None:
        if not self.refused("discard all"):
            self.select_targets("discard", self.filter)

    @work(thread=True, exclusive=True, exit_on_error=False, group="targets",
          description="Failed jobs")
    def select_targets(self, action: str, flt: Filter) -> None:
        with Session(self.console.engine) as session:
            ids = ledger.select_ids(session, flt=job_filter(flt))
            resends = any(resends_email(t) for t in session.exec(
                select(FailedJob.task_name).where(col(FailedJob.id).in_(ids[:5000]))
                .distinct()).all()) if ids else False
        # a second R replaces the first
        self.deliver(BulkTargetsSelected(action, ids, (flt, resends)))

    @on(BulkTargetsSelected)
    def _targets_selected(self, event: BulkTargetsSelected) -> None:
        flt, resends = event.query
        if not event.ids:
            self.notify(f"No open failed job matches ({flt.describe()})", severity="warning",
                        markup=True)
            return
        what = ("Every open failed job" if not flt
                else f"Every open failed job matching {Text.from_markup(flt.describe()).plain}")
        self.act(event.action, event.ids, what, flt=job_filter(flt), resends=resends)

    def after_action(self) -> None:
        self.table.clear_marks()
        self.reload()
