"""One outbox row: subject, recipient, status, attempts, last error, provider id, the text."""

from __future__ import annotations

from sqlmodel import Session
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.widgets import Static

from kolaq_console.emails.bodies import body_of
from kolaq_console.emails.outbox import row_summary
from kolaq_console.errors import NotFound
from kolaq_console.jobs import failed as ledger
from kolaq_console.jobs.subjects import open_jobs_for_email
from kolaq_console.models import EmailOutbox
from kolaq_console.redact import redact
from kolaq_console.ui import links
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.format import when_full
from kolaq_console.ui.messages import EmailLoaded, FailedSendFound, JobsRetried
from kolaq_console.ui.screens.base import POLL
from kolaq_console.ui.screens.emails import EmailScreenBase
from kolaq_console.ui.screens.failed_jobs import retried_text


def load_email(session: Session, row_id: int) -> dict:
    row = session.get(EmailOutbox, row_id)
    if row is None:
        raise NotFound(f"email #{row_id} not found")
    detail = row_summary(row)
    _, text = body_of(session, row)  # a broadcast copy's is put together from its rendering
    detail.update(kind=row.kind, order_id=row.order_id, broadcast_id=row.broadcast_id,
                  text=text, last_error=redact(row.last_error or ""),
                  delivery_status=row.delivery_status, delivery_detail=row.delivery_detail,
                  delivery_updated_at=row.delivery_updated_at)
    return detail


class EmailDetailScreen(EmailScreenBase):
    MODE = "emails"
    TITLE_TEXT = "Email"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("s", "resend", "Send again"),
        Binding("r", "retry", "Retry"),
        Binding("j,J", "follow('job')", "Job"),  # J as in the records
        Binding("o", "follow('order')", "Order"),
        Binding("c", "follow('customer')", "Customer"),
    ]
    WRITE_ACTIONS = frozenset({"resend", "retry"})

    def __init__(self, row_id: int) -> None:
        super().__init__()
        self.row_id = row_id
        self.row: dict | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome_top()
        with VerticalScroll(id="detail"):
            yield Static(f"Email #{self.row_id}", id="detail-fields")
            yield Static(id="detail-body", classes="code", markup=False)
        yield from self.compose_chrome_bottom()

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL, description="Email")
    def load(self) -> None:
        with Session(self.console.engine) as session:
            self.deliver(EmailLoaded(load_email(session, self.row_id), self.row_id))

    @on(EmailLoaded)
    def show_email(self, event: EmailLoaded) -> None:
        if not self.accepts():
            return
        r = self.row = event.data
        zone = self.console.settings.shop.zone
        fields = [
            ("Subject", r["subject"]), ("To", r["to"]), ("Kind", r["kind"]),
            ("Status", r["status"]), ("Attempts", str(r["attempts"])),
            ("Last error", r["last_error"] or "-"),
            ("Provider id", r["provider_message_id"] or "-"),
            ("Idempotency", r["idempotency_key"]),
            ("Created", when_full(r["created_at"], zone)),
            ("Updated", when_full(r["updated_at"], zone)),
            ("Sent", when_full(r["sent_at"], zone)),
            ("Delivery", " · ".join(x for x in (r["delivery_status"] or "unknown (nothing "
                                                "reported yet)", r["delivery_detail"]) if x)),
            ("Reported", when_full(r["delivery_updated_at"], zone)),
            ("Next try", when_full(r["next_attempt_at"], zone)),
        ]
        if r["order_id"]:
            fields.append(("Order id", str(r["order_id"])))
        if r["broadcast_id"]:
            fields.append(("Broadcast", str(r["broadcast_id"])))
        text = "\n".join(f"[b]{name:<12}[/] {escape(value)}" for name, value in fields)
        with self.app.batch_update():
            self.query_one("#detail-fields", Static).update(f"[b]Email #{r['id']}[/]\n{text}")
            self.query_one("#detail-body", Static).update(r["text"] or "")

    def action_follow(self, kind: str) -> None:
        """Open the failed job about this email, its order or its customer (ui/links.py)."""
        links.follow_email(self.app, self.row_id, kind)

    def action_retry(self) -> None:
        """Retry this email's open failed send job (asks first: it sends the email)."""
        if not self.refused("retry"):
            self.find_failed_send()

    @work(thread=True, exclusive=True, exit_on_error=False, group="retry-find",
          description="Retry")
    def find_failed_send(self) -> None:
        with Session(self.console.engine) as session:
            ids = open_jobs_for_email(session, self.row_id)
        self.post_message(FailedSendFound(ids, self.row_id))

    @on(FailedSendFound)
    def _failed_send_found(self, event: FailedSendFound) -> None:
        ids: list[int] = event.data
        if not ids:
            self.notify(f"Email #{self.row_id} has no open failed send job to retry "
                        "(s sends a new copy)", severity="warning")
            return
        to = self.row["to"] if self.row else "its recipient"
        self.app.push_screen(
            ConfirmDialog("Retry sending this email?",
                          f"Email #{self.row_id} to {to} (failed job "
                          f"{', '.join(f'#{i}' for i in ids)}).\n\nThis sends the email again: "
                          "if the provider accepted it before the failure, the customer may "
                          "receive it twice.", confirm="Retry"),
            lambda ok: self.retry_send(ids) if ok else None)

    @work(thread=True, exit_on_error=False, group="retry", description="Retry")
    def retry_send(self, ids: list[int]) -> None:
        app = self.console
        outcome = ledger.retry_failed(app.engine, app.huey, ids, app.operator)
        self.post_message(JobsRetried(outcome.retried, outcome.skipped))

    @on(JobsRetried)
    def _retried(self, event: JobsRetried) -> None:
        text, severity = retried_text(event)
        self.notify(text, title="Email", severity=severity,  # type: ignore[arg-type]
                    markup=False)
        self.reload()

    def selected_email(self) -> tuple[int, str, str] | None:
        if self.row is None:
            return None
        return self.row_id, self.row["to"], self.row["subject"]

    def selected_status(self) -> str | None:
        return None if self.row is None else self.row["status"]
