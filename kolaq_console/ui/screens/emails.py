"""4 Emails: recent outbox rows with their status; filter; detail; send one again."""

from __future__ import annotations

from sqlmodel import Session
from textual import on, work
from textual.binding import Binding
from textual.markup import escape

from kolaq_console.db import session_scope
from kolaq_console.emails import KINDS
from kolaq_console.emails.outbox import OPEN_STATUSES, list_emails, resend_email, row_summary
from kolaq_console.models import EmailStatus
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.filtering import Filter, Grammar
from kolaq_console.ui.format import clip, one_line, state_label, when
from kolaq_console.ui.messages import EmailResent, EmailsLoaded
from kolaq_console.ui.screens.base import POLL, LiveScreen
from kolaq_console.ui.screens.list_screen import ListScreen
from kolaq_console.ui.widgets.record_table import Col

STATUSES = tuple(s.value for s in EmailStatus)
KIND_LABELS = {
    "order_confirmation": "order",
    "shipping_notification": "shipping",
    "order_status_update": "status",
    "low_stock": "low stock",
}
# Priority 0 survives at 80 columns: the recipient and the state.
# The status is wide enough for `retrying 2/3 · next 17:08`.
COLUMNS = (
    Col("#", 4, right=True, priority=4), Col("status", 25, priority=0),
    Col("delivery", 10, priority=2), Col("kind", 9, hide_below=90, priority=3),
    Col("to", 16, flex=3, priority=0), Col("subject", 16, flex=2, priority=5),
    Col("tries", 5, right=True, hide_below=100), Col("updated", 11, hide_below=90),
)
LIMIT = 200
GRAMMAR = Grammar({"status": STATUSES, "kind": tuple(KINDS)}, bare_key="status")


def load_emails(session: Session, flt: Filter) -> list[dict]:
    rows = list_emails(session, status=flt.get("status"), kind=flt.get("kind"), limit=LIMIT)
    summaries = ({**row_summary(r), "delivery_status": r.delivery_status} for r in rows)
    return [s for s in summaries if flt.matches(s["to"], s["subject"])]


def resend_confirmation(row_id: int, to: str, subject: str) -> ConfirmDialog:
    return ConfirmDialog(
        "Send this email again?",
        f"#{row_id} to {to}\n“{clip(subject, 60)}”\n\nA new outbox row is queued with a new "
        "idempotency key, so the provider sends it again. The original row is kept; its "
        "failed send job, if any, is closed.",
        confirm="Send again",
    )


class SendAgainScreen(LiveScreen):
    """Send an email again: the confirmation, the worker and its outcome, for every screen
    with an `s` key on emails (the list, the detail, the order/customer records). A
    LiveScreen subclass, so Textual collects its `@on` handler for the screens built on it."""

    def confirm_resend(self, email_id: int, status: str | None, to: str, subject: str) -> None:
        if status in OPEN_STATUSES:  # the domain refuses it too; say so before confirming
            self.notify(f"Email #{email_id} is {status}: it is on its way already. Send it "
                        "again once it is sent or has failed.", severity="warning")
            return
        self.app.push_screen(resend_confirmation(email_id, to, subject),
                             lambda ok: self.resend(email_id) if ok else None)

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


class EmailScreenBase(SendAgainScreen):
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
        self.confirm_resend(selected[0], self.selected_status(), selected[1], selected[2])


class EmailsScreen(EmailScreenBase, ListScreen):
    MODE = "emails"
    TITLE_TEXT = "Emails"
    COLUMNS = COLUMNS
    GRAMMAR = GRAMMAR
    TABLE_ID = "emails"
    STATUS_KEY = "status"
    PLACEHOLDER = "status:failed kind:generic or words in recipient/subject"
    EMPTY = ("No emails yet. Orders, low-stock alerts and broadcasts queue them; "
             "`kolaq-console email send` sends one by hand.")
    BINDINGS = [
        Binding("s", "resend", "Send again"),
        Binding("f", "cycle_status", "Status"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[int, dict] = {}

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL, description="Emails")
    def load(self) -> None:
        flt = self.filter
        with Session(self.console.engine) as session:
            rows = load_emails(session, flt)
        self.deliver(EmailsLoaded(rows, flt))

    @on(EmailsLoaded)
    def show_emails(self, event: EmailsLoaded) -> None:
        if not self.accepts() or event.query != self.filter:
            return  # frozen behind a dialog, or an answer to an older filter
        zone = self.console.settings.shop.zone
        retries = self.console.settings.queue.retries
        rows: list[dict] = event.data
        self.rows = {r["id"]: r for r in rows}
        self.show_rows(
            (r["id"], (
                str(r["id"]),
                _status(r["status"], state_label(r["status"], r["attempts"], retries,
                                                 r["next_attempt_at"], zone)),
                _delivery(r), KIND_LABELS.get(r["kind"], r["kind"]),
                r["to"], r["subject"], str(r["attempts"]), when(r["updated_at"], zone),
            ))
            for r in rows
        )

    def caption(self) -> str:
        more = " (latest shown)" if len(self.rows) >= LIMIT else ""
        parts = [] if self.filter.get("status") else ["all statuses"]
        if self.filter:
            parts.append(self.filter.describe())
        return (f"[b]{len(self.rows)}[/] emails{more} · {' · '.join(parts)}"
                "   [dim]f status · / filter · Enter detail[/]")

    # --- keys --------------------------------------------------------------------------------

    def open_record(self, key: object) -> None:
        from kolaq_console.ui.screens.email_detail import EmailDetailScreen

        self.app.push_screen(EmailDetailScreen(int(key)))  # type: ignore[call-overload]

    def selected_email(self) -> tuple[int, str, str] | None:
        row_id = self.table.current
        if row_id is None:
            return None
        row = self.rows.get(row_id, {})
        return row_id, row.get("to", ""), row.get("subject", "")

    def selected_status(self) -> str | None:
        row_id = self.table.current
        return None if row_id is None else self.rows.get(row_id, {}).get("status")


def _status(status: str, label: str | None = None):
    colours = {"failed": "$error", "sent": "$success", "queued": "$warning",
               "sending": "$warning", "cancelled": "$text-muted"}
    from textual.content import Content

    return Content.from_markup(f"[{colours.get(status, '')}]{escape(label or status)}[/]")


def _delivery(row: dict):
    """What the provider reported after accepting it; "-" for mail not sent (yet)."""
    from kolaq_console.ui.screens.orders import coloured

    if row["status"] != "sent" and not row.get("delivery_status"):
        return "-"
    return coloured(row.get("delivery_status"))
