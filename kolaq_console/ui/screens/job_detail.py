"""One failed-job entry: task, queue, arguments (redacted), error, traceback, attempts, times."""

from __future__ import annotations

import json

from sqlmodel import Session
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.widgets import Static

from kolaq_console.jobs import failed as ledger
from kolaq_console.jobs.subjects import resends_email
from kolaq_console.ui import links
from kolaq_console.ui.format import short_task, when_full
from kolaq_console.ui.messages import FailedJobLoaded
from kolaq_console.ui.screens.base import POLL
from kolaq_console.ui.screens.failed_jobs import JobScreenBase

OPEN = ("failed", "interrupted")


def pretty(value: object) -> str:
    """One line when short, indented JSON otherwise."""
    flat = json.dumps(value, ensure_ascii=False, default=str)
    return flat if len(flat) <= 70 else json.dumps(value, indent=2, ensure_ascii=False,
                                                   default=str)


class JobDetailScreen(JobScreenBase):
    TITLE_TEXT = "Failed job"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "retry", "Retry"),
        Binding("d", "discard", "Discard"),
        Binding("e", "follow('email')", "Email"),
        Binding("o", "follow('order')", "Order"),
        Binding("c", "follow('customer')", "Customer"),
        Binding("p", "follow('product')", "Product"),
    ]

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.job: ledger.FailedJobDetail | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome_top()
        with VerticalScroll(id="detail"):
            yield Static(f"Failed job #{self.job_id}", id="detail-fields")
            yield Static("Error", classes="caption section")
            yield Static(id="detail-error", classes="code", markup=False)
            yield Static("Arguments", classes="caption section")
            yield Static(id="detail-args", classes="code", markup=False)
            yield Static("Traceback", classes="caption section")
            yield Static(id="detail-traceback", classes="code", markup=False)
        yield from self.compose_chrome_bottom()

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL, description="Failed job")
    def load(self) -> None:
        with Session(self.console.engine) as session:
            self.deliver(FailedJobLoaded(ledger.get_failed(session, self.job_id)))

    @on(FailedJobLoaded)
    def show_job(self, event: FailedJobLoaded) -> None:
        if not self.accepts():
            return
        job: ledger.FailedJobDetail = event.data
        self.job = job
        zone = self.console.settings.shop.zone
        fields = [
            ("Task", job.task_name), ("Queue", job.queue), ("Status", job.status),
            ("Error", short_task(job.error_type) or "-"),
            ("Attempts", str(job.attempts)),
            ("First try", when_full(job.first_attempt_at, zone)),
            ("Last try", when_full(job.last_attempt_at, zone)),
            ("Worker", f"{job.worker_host or '-'} pid {job.worker_pid or '-'}"),
            ("Job id", job.task_id),
        ]
        if job.retried_as:
            fields.append(("Retried as", job.retried_as))
        if job.resolved_by:
            fields.append(("Closed by", f"{job.resolved_by}, "
                                        f"{when_full(job.resolved_at, zone)}"))
        text = "\n".join(f"[b]{name:<11}[/] {escape(value)}" for name, value in fields)
        call = {"args": job.args, "kwargs": job.kwargs} if job.kwargs else job.args
        with self.app.batch_update():
            self.query_one("#detail-fields", Static).update(
                f"[b]Failed job #{job.id}[/]\n{text}")
            self.query_one("#detail-error", Static).update(job.error_message or "-")
            self.query_one("#detail-args", Static).update(pretty(call))
            self.query_one("#detail-traceback", Static).update(
                job.traceback or "(no traceback recorded)")

    def _about(self) -> tuple[list[int], str]:
        job = self.job
        if job is None or job.status not in OPEN:
            if job is not None:
                self.notify(f"Failed job #{job.id} is already {job.status}", severity="warning")
            return [], ""
        return [job.id], f"#{job.id} {job.task_name} ({job.queue})"

    def action_retry(self) -> None:
        ids, what = self._about()
        if ids and self.job is not None:
            resends = resends_email(self.job.task_name)
            self.act("retry", ids, what, confirm=resends, resends=resends)

    def action_discard(self) -> None:
        ids, what = self._about()
        if ids:
            self.act("discard", ids, what)

    def action_follow(self, kind: str) -> None:
        """Open the email, order, customer or product this job is about (ui/links.py)."""
        links.follow_job(self.app, self.job_id, kind)

    def after_action(self) -> None:
        self.app.pop_screen()
