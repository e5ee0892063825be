"""4 Emails: recent outbox rows with their status; filter; detail; send one again."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.widgets import DataTable, Static

from kolaq_console.db import session_scope
from kolaq_console.emails import KINDS, list_emails, resend_email
from kolaq_console.emails.outbox import OPEN_STATUSES, row_summary
from kolaq_console.models import EmailStatus
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.format import clip, one_line, when
from kolaq_console.ui.messages import EmailResent, EmailsLoaded
from kolaq_console.ui.screens.base import POLL, LiveScreen
from kolaq_console.ui.widgets.filter_bar import FilterBar
from kolaq_console.ui.widgets.record_table import Col, RecordTable

STATUSES = tuple(s.value for s in EmailStatus)
KIND_LABELS = {
    "order_confirmation": "order",
    "shipping_notification": "shipping",
    "order_status_update": "status",
    "low_stock": "low stock",
}
COLUMNS = (
    Col("#", 4, right=True), Col("status", 9), Col("delivery", 10), Col("kind", 9, hide_below=90),
    Col("to", 16, flex=2),
    Col("subject", 16, flex=3), Col("tries", 5, right=True, hide_below=100),
    Col("updated", 11, hide_below=90),
)
LIMIT = 200


@dataclass(frozen=True)
class EmailQuery:
    status: str | None = None
    kind: str | None = None
    text: str = ""
    problem: str | None = None  # e.g. a status still being typed: ignored, and said so

    @classmethod
    def parse(cls, text: str, status: str | None = None) -> EmailQuery:
        """`status:failed kind:generic ada@` — a bare status name filters by status; other
        words match the recipient or subject."""
        kind = problem = None
        words = []
        for word in text.split():
            key, sep, value = word.partition(":")
            if sep and key == "status":
                if value in STATUSES:
                    status = value
                else:
                    problem = f"unknown status “{value}” ({', '.join(STATUSES)})"
            elif sep and key == "kind":
                if value in KINDS:
                    kind = value
                else:
                    problem = f"unknown kind “{value}” ({', '.join(KINDS)})"
            elif word in STATUSES:
                status = word
            else:
                words.append(word.lower())
        return cls(status=status, kind=kind, text=" ".join(words), problem=problem)

    def matches(self, row: dict) -> bool:
        haystack = f"{row['to']} {row['subject']}".lower()
        return all(word in haystack for word in self.text.split())

    def describe(self) -> str:
        """What is filtered, as markup (typed text escaped)."""
        parts = [f"status {self.status}" if self.status else "all statuses"]
        if self.kind:
            parts.append(f"kind {self.kind}")
        if self.text:
            parts.append(f"“{escape(self.text)}”")
        if self.problem:
            parts.append(f"[$warning]{escape(self.problem)}[/]")
        return " · ".join(parts)


def load_emails(session: Session, query: EmailQuery) -> list[dict]:
    rows = list_emails(session, status=query.status, kind=query.kind, limit=LIMIT)
    summaries = ({**row_summary(r), "delivery_status": r.delivery_status} for r in rows)
    return [s for s in summaries if query.matches(s)]


def resend_confirmation(row_id: int, to: str, subject: str) -> ConfirmDialog:
    return ConfirmDialog(
        "Send this email again?",
        f"#{row_id} to {to}\n“{clip(subject, 60)}”\n\nA new outbox row is queued with a new "
        "idempotency key, so the provider sends it again. The original row is kept; its "
        "failed send job, if any, is closed.",
        confirm="Send again",
    )


class EmailScreenBase(LiveScreen):
    """Send again (`s`, confirmed), shared by the list and the detail view."""

    WRITE_ACTIONS = frozenset({"resend"})

    def selected_email(self) -> tuple[int, str, str] | None:
        """(id, recipient, subject) of the email the action is about."""
        raise NotImplementedError

    def selected_status(self) -> str | None:
        raise NotImplementedError

    def action_resend(self) -> None:
        if self.refused("send again"):
            return
        selected = self.selected_email()
        if selected is None:
            return
        row_id = selected[0]
        status = self.selected_status()
        if status in OPEN_STATUSES:  # the domain refuses it too; say so before confirming
            self.notify(f"Email #{row_id} is {status}: it is on its way already. Send it "
                        "again once it is sent or has failed.", severity="warning")
            return
        self.app.push_screen(resend_confirmation(*selected),
                             lambda ok: self.resend(row_id) if ok else None)

    @work(thread=True, exit_on_error=False, group="resend", description="Send again")
    def resend(self, row_id: int) -> None:
        app = self.console
        with session_scope(app.engine) as session:
            resent = resend_email(session, app.settings, row_id, actor=app.operator)
            self.post_message(EmailResent(row_id, resent.row.id or 0, resent.row.to_address,
                                          tuple(resent.closed_failed_jobs)))

    @on(EmailResent)
    def _resent(self, event: EmailResent) -> None:
        closed = "".join(f"; failed job #{i} closed" for i in event.closed_failed_jobs)
        self.notify(f"Email #{event.original_id} queued again as #{event.new_id} "
                    f"to {one_line(event.to)}{closed}", markup=False)
        self.reload()


class EmailsScreen(EmailScreenBase):
    MODE = "emails"
    TITLE_TEXT = "Emails"
    BINDINGS = [
        Binding("enter", "open", "Detail", show=False),
        Binding("s", "resend", "Send again"),
        Binding("f", "cycle_status", "Status"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.status_filter: str | None = None
        self.filter_text = ""
        self.rows: dict[int, dict] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome_top()
        yield Static(id="list-caption", classes="caption")
        yield RecordTable(id="emails")
        yield FilterBar("status:failed kind:generic or words in recipient/subject")
        yield from self.compose_chrome_bottom()

    def on_mount(self) -> None:
        self.query_one(RecordTable).set_columns(*COLUMNS)
        self.query_one(FilterBar).display = False

    @property
    def email_query(self) -> EmailQuery:
        return EmailQuery.parse(self.filter_text, self.status_filter)

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL, description="Emails")
    def load(self) -> None:
        query = self.email_query
        with Session(self.console.engine) as session:
            rows = load_emails(session, query)
        self.deliver(EmailsLoaded(rows, query))

    @on(EmailsLoaded)
    def show_emails(self, event: EmailsLoaded) -> None:
        if not self.accepts() or event.query != self.email_query:
            return  # frozen behind a dialog, or an answer to an older filter
        zone = self.console.settings.shop.zone
        rows: list[dict] = event.data
        self.rows = {r["id"]: r for r in rows}
        with self.app.batch_update():
            self.query_one(RecordTable).replace_rows(
                (r["id"], (
                    str(r["id"]), _status(r["status"]), _delivery(r),
                    KIND_LABELS.get(r["kind"], r["kind"]),
                    r["to"], r["subject"], str(r["attempts"]), when(r["updated_at"], zone),
                ))
                for r in rows
            )
            more = " (latest shown)" if len(rows) >= LIMIT else ""
            self.query_one("#list-caption", Static).update(
                f"[b]{len(rows)}[/] emails{more} · {event.query.describe()}"
                "   [dim]f status · / filter · Enter detail[/]")

    # --- keys --------------------------------------------------------------------------------

    def action_open(self) -> None:
        row_id = self.query_one(RecordTable).current
        if row_id is not None:
            from kolaq_console.ui.screens.email_detail import EmailDetailScreen

            self.app.push_screen(EmailDetailScreen(row_id))

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_open()

    def action_cycle_status(self) -> None:
        order = (None, *STATUSES)
        self.status_filter = order[(order.index(self.status_filter) + 1) % len(order)]
        self.reload()

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    async def action_back(self) -> None:
        if self.filter_text or self.status_filter:
            self.filter_text, self.status_filter = "", None
            bar = self.query_one(FilterBar)
            bar.value, bar.display = "", False
            self.reload()
        else:
            await self.app.run_action("go('overview')")

    @on(FilterBar.Applied)
    def _filter_applied(self, event: FilterBar.Applied) -> None:
        self.filter_text = event.text
        self.reload()

    @on(FilterBar.Closed)
    def _filter_closed(self) -> None:
        self.query_one(RecordTable).focus()

    def selected_email(self) -> tuple[int, str, str] | None:
        table = self.query_one(RecordTable)
        row_id = table.current
        if row_id is None:
            return None
        row = self.rows.get(row_id, {})
        return row_id, row.get("to", ""), row.get("subject", "")

    def selected_status(self) -> str | None:
        row_id = self.query_one(RecordTable).current
        return None if row_id is None else self.rows.get(row_id, {}).get("status")


def _status(status: str) -> str:
    colours = {"failed": "$error", "sent": "$success", "queued": "$warning",
               "sending": "$warning", "cancelled": "$text-muted"}
    from textual.content import Content

    return Content.from_markup(f"[{colours.get(status, '')}]{status}[/]")


def _delivery(row: dict):
    """What the provider reported after accepting it; "-" for mail not sent (yet)."""
    from kolaq_console.ui.screens.orders import coloured

    if row["status"] != "sent" and not row.get("delivery_status"):
        return "-"
    return coloured(row.get("delivery_status"))
