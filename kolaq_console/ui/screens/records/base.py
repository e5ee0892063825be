"""What the order, customer and product records share: a header of fields, a table of what
is about the record (failed jobs first, then emails, orders, lines, events, activity), link
keys (o c e j p: the highlighted row of that kind, else the first one listed, else the
record's own), `r` retry a failed job and `s` send an email again, both always confirmed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Static

from kolaq_console.db import session_scope
from kolaq_console.jobs import failed as ledger
from kolaq_console.models import OPEN_FAILED_STATUSES
from kolaq_console.ui import links
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.format import short_task
from kolaq_console.ui.messages import DataLoaded, JobsRetried
from kolaq_console.ui.screens.base import POLL
from kolaq_console.ui.screens.emails import SendAgainScreen
from kolaq_console.ui.screens.failed_jobs import retried_text
from kolaq_console.ui.widgets.record_table import Col, RecordTable

COLUMNS = (
    Col("about", 8), Col("#", 12), Col("state", 10), Col("what", 20, flex=1),
    Col("when", 11, hide_below=90),
)


class RecordLoaded(DataLoaded):
    """A record was read (its fields and related rows), for the record screen."""


@dataclass
class Related:
    """A row of the record's table: `kind` (job, email, order, line, event, text, activity),
    `ref` what a link opens (a job or email id, an order number, a SKU), and its cells."""

    kind: str
    ref: Any
    state: str
    what: str
    when: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Record:
    header: Content
    rows: list[Related]
    links: dict[str, Any]  # the record's own: order, customer, product (a kind's ref)


class RecordScreen(SendAgainScreen):
    KIND: ClassVar[str] = ""
    LINKS: ClassVar[frozenset[str]] = frozenset()
    """The kinds this record links to: the other link keys are neither shown nor bound."""
    EMAILS: ClassVar[bool] = True  # has emails to send again
    WRITE_ACTIONS = frozenset({"retry", "resend"})
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("enter", "open", "Open", show=False),
        Binding("o", "link('order')", "Order"),
        Binding("c", "link('customer')", "Customer"),
        Binding("e", "link('email')", "Email"),
        Binding("J", "link('job')", "Job"),  # j moves the cursor, as in every list
        Binding("p", "link('product')", "Product"),
        Binding("r", "retry", "Retry"),
        Binding("s", "resend", "Resend"),
    ]

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.record: Record | None = None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "link" and parameters and parameters[0] not in self.LINKS:
            return False
        if action == "resend" and not self.EMAILS:
            return False
        return super().check_action(action, parameters)

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome_top()
        with Vertical(id="record"):
            yield Static(f"{self.TITLE_TEXT} {self.key}", id="record-fields")
            yield RecordTable(id="record-rows")
        yield from self.compose_chrome_bottom()

    def on_mount(self) -> None:
        self.query_one(RecordTable).set_columns(*COLUMNS)

    def read(self, session: Any) -> Record:
        raise NotImplementedError

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL, description="Record")
    def load(self) -> None:
        with session_scope(self.console.engine) as session:
            self.deliver(RecordLoaded(self.read(session), self.key))

    @on(RecordLoaded)
    def show_record(self, event: RecordLoaded) -> None:
        if not self.accepts():
            return
        record: Record = event.data
        self.record = record
        with self.app.batch_update():
            self.query_one("#record-fields", Static).update(record.header)
            self.query_one(RecordTable).replace_rows(
                (f"{r.kind}:{r.ref}:{n}", (r.kind, _ref(r), r.state, r.what, r.when))
                for n, r in enumerate(record.rows))

    # --- which row an action is about ----------------------------------------------------

    def highlighted(self) -> Related | None:
        if self.record is None:
            return None
        key = self.query_one(RecordTable).current
        if key is None:
            return None
        return self.record.rows[int(str(key).rsplit(":", 1)[1])]

    def target(self, kind: str, pick: Any = None) -> Related | None:
        """The highlighted row if of this kind (and picked), else the first such row."""
        if self.record is None:
            return None
        row = self.highlighted()
        if row is not None and row.kind == kind and (pick is None or pick(row)):
            return row
        return next((r for r in self.record.rows
                     if r.kind == kind and (pick is None or pick(r))), None)

    # --- links ---------------------------------------------------------------------------

    def action_open(self) -> None:
        row = self.highlighted()
        if row is None or row.ref is None:
            return
        kind = {"line": "product", "event": None, "activity": None, "text": None,
                "webhook": None}.get(
            row.kind, row.kind)
        if kind is None:
            self.notify(f"{row.kind.capitalize()} rows have no screen of their own",
                        severity="warning")
            return
        links.open_kind(self.app, kind, row.ref)

    def action_link(self, kind: str) -> None:
        if self.record is None:
            return
        row = self.target("line" if kind == "product" else kind)
        ref = row.ref if row is not None else self.record.links.get(kind)
        if ref is None:
            self.notify(f"No {kind} about {self.TITLE_TEXT.lower()} {self.key}",
                        severity="warning")
            return
        links.open_kind(self.app, kind, ref)

    # --- actions (always confirmed) ------------------------------------------------------

    def action_retry(self) -> None:
        if self.refused("retry"):
            return
        row = self.target("job", lambda r: r.state in OPEN_FAILED_STATUSES)
        if row is None:
            self.notify(f"No open failed job about {self.TITLE_TEXT.lower()} {self.key}",
                        severity="warning")
            return
        job_id = row.ref
        self.app.push_screen(
            ConfirmDialog("Retry this failed job?",
                          f"#{job_id} {row.what}\n\nIt is re-enqueued as a new job with a "
                          "fresh retry budget (a send job sends its email).", confirm="Retry"),
            lambda ok: self.retry_job(job_id) if ok else None,
        )

    @work(thread=True, exit_on_error=False, group="record-action", description="Retry")
    def retry_job(self, job_id: int) -> None:
        app = self.console
        outcome = ledger.retry_failed(app.engine, app.huey, [job_id], app.operator)
        self.post_message(JobsRetried(outcome.retried, outcome.skipped))

    @on(JobsRetried)
    def _retried(self, event: JobsRetried) -> None:
        text, severity = retried_text(event)
        self.notify(text, title="Failed jobs", severity=severity,  # type: ignore[arg-type]
                    markup=False)
        self.reload()

    def action_resend(self) -> None:
        if self.refused("send again"):
            return
        row = self.target("email", lambda r: r.state == "failed") or self.target("email")
        if row is None:
            self.notify(f"No email about {self.TITLE_TEXT.lower()} {self.key}",
                        severity="warning")
            return
        self.confirm_resend(row.ref, row.state, row.data.get("to", ""),
                            row.data.get("subject", ""))

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_open()


def _ref(row: Related) -> str:
    if row.ref is None:
        return ""
    return f"#{row.ref}" if isinstance(row.ref, int) else str(row.ref)


def job_rows(jobs: list[dict[str, Any]], when: Any) -> list[Related]:
    """Failed jobs, open ones first (the incident), then closed ones, newest first."""
    ordered = sorted(jobs, key=lambda j: (j["status"] not in OPEN_FAILED_STATUSES, -j["id"]))
    return [Related("job", j["id"], j["status"],
                    f"{short_task(j['task_name'])}: {j['error_message']}",
                    when(j["last_attempt_at"]), j) for j in ordered]


def email_rows(emails: list[dict[str, Any]], when: Any) -> list[Related]:
    return [Related("email", e["id"], e["status"],
                    f"{e['kind']} · {e['delivery_status'] or 'delivery unknown'} · {e['to']}",
                    when(e["created_at"]), e) for e in emails]


def text_rows(texts: list[dict[str, Any]], when: Any) -> list[Related]:
    return [Related("text", t["id"], t["status"],
                    f"{t['channel']} {t['kind']} · {t['delivery_status'] or 'unknown'}",
                    when(t["created_at"])) for t in texts]


def activity_rows(activity: list[dict[str, Any]], when: Any) -> list[Related]:
    out = []
    for a in activity:
        details = ", ".join(f"{k} {v}" for k, v in (a["details"] or {}).items())
        out.append(Related("activity", None, a["actor"], f"{a['action']} {details}",
                           when(a["at"])))
    return out
