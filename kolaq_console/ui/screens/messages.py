"""9 Messages: SMS and WhatsApp rows of every channel with their status and delivery state;
filter; send again; retry a failed one; decide an `unknown` one (send anyway, or mark sent)."""

from __future__ import annotations

from sqlmodel import Session
from textual import on, work
from textual.binding import Binding
from textual.content import Content
from textual.markup import escape

from kolaq_console.db import session_scope
from kolaq_console.sms import outbox
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.filtering import Filter, Grammar
from kolaq_console.ui.format import one_line, state_label, when
from kolaq_console.ui.messages import TextActed, TextsLoaded
from kolaq_console.ui.screens.base import POLL
from kolaq_console.ui.screens.list_screen import ListScreen
from kolaq_console.ui.widgets.record_table import Col

STATUSES = outbox.STATUSES
# Priority 0 survives at 80 columns: the recipient, the state, the text or the reason.
COLUMNS = (
    Col("#", 4, right=True, priority=3), Col("via", 8, priority=2),
    Col("status", 25, priority=0), Col("delivery", 11, priority=4),
    Col("to", 14, priority=0), Col("text / last error", 16, flex=3, priority=0),
    Col("kind", 9, hide_below=100), Col("seg", 3, right=True, hide_below=110),
    Col("updated", 11, hide_below=90),
)
GRAMMAR = Grammar({"status": tuple(STATUSES), "via": ("sms", "whatsapp")}, bare_key="status")
LIMIT = 200
COLOURS = {"failed": "$error", "unknown": "$error", "cancelled": "$text-muted",
           "sent": "$success", "queued": "$warning", "sending": "$warning",
           "delivered": "$success", "read": "$success", "undelivered": "$error"}


def load_texts(session: Session, flt: Filter) -> list[dict]:
    rows = outbox.list_messages(session, status=flt.get("status"), limit=LIMIT)
    via = flt.get("via")
    return [s for s in map(outbox.row_summary, rows)
            if (via is None or s["channel"] == via)
            and flt.matches(s["to"], s["channel"], s["kind"], s["body"])]


def coloured(value: str | None, label: str | None = None) -> Content:
    value = value or ""
    colour = COLOURS.get(value)
    text = escape(label or value)
    return Content.from_markup(f"[{colour}]{text}[/]") if colour else Content(label or value)


class MessagesScreen(ListScreen):
    MODE = "messages"
    TITLE_TEXT = "Messages"
    COLUMNS = COLUMNS
    GRAMMAR = GRAMMAR
    TABLE_ID = "messages"
    STATUS_KEY = "status"
    PLACEHOLDER = "status:failed via:whatsapp or words in the number, kind or text"
    EMPTY = ("No SMS or WhatsApp messages yet. Set [sms] in config.toml and list sms or "
             "whatsapp in [notifications] to text customers and the admin.")
    WRITE_ACTIONS = frozenset({"resend", "retry", "mark_sent"})
    BINDINGS = [
        Binding("s", "resend", "Send again"),
        Binding("r", "retry", "Retry"),
        Binding("m", "mark_sent", "Mark sent"),
        Binding("f", "cycle_status", "Status"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[int, dict] = {}

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL, description="Messages")
    def load(self) -> None:
        flt = self.filter
        with Session(self.console.engine) as session:
            rows = load_texts(session, flt)
        self.deliver(TextsLoaded(rows, flt))

    @on(TextsLoaded)
    def show_texts(self, event: TextsLoaded) -> None:
        if not self.accepts() or event.query != self.filter:
            return
        zone = self.console.settings.shop.zone
        retries = self.console.settings.queue.retries
        rows: list[dict] = event.data
        self.rows = {r["id"]: r for r in rows}
        self.show_rows(
            (r["id"], (
                str(r["id"]), r["channel"],
                coloured(r["status"], state_label(r["status"], r["attempts"], retries,
                                                  r.get("next_attempt_at"), zone)),
                coloured(r["delivery_status"]), r["to"],
                one_line(r["last_error"] if r["status"] in ("failed", "unknown",
                                                            "cancelled") else r["body"]),
                r["kind"], "" if r["segments"] is None else str(r["segments"]),
                when(r["updated_at"], zone),
            ))
            for r in rows
        )

    def caption(self) -> str:
        unknown = sum(1 for r in self.rows.values() if r["status"] == "unknown")
        decide = (f" · [$error]{unknown} unknown: r send anyway, m mark sent[/]"
                  if unknown else "")
        parts = [] if self.filter.get("status") else ["all statuses"]
        if self.filter:
            parts.append(self.filter.describe())
        return (f"[b]{len(self.rows)}[/] messages · {' · '.join(parts)}{decide}"
                "   [dim]f status · / filter[/]")

    # --- actions -----------------------------------------------------------------------------

    def _selected(self) -> dict | None:
        row_id = self.table.current
        return None if row_id is None else self.rows.get(row_id)

    def _confirm_then(self, title: str, text: str, label: str, run) -> None:
        self.app.push_screen(ConfirmDialog(title, text, confirm=label),
                             lambda ok: run() if ok else None)

    def action_resend(self) -> None:
        row = None if self.refused("send again") else self._selected()
        if row is not None:
            self._confirm_then(
                "Send this message again?",
                f"#{row['id']} {row['channel']} to {row['to']}\n\nA new row is queued, so "
                "Twilio sends it again. The original row is kept.", "Send again",
                lambda: self.act("resend", row["id"]))

    def action_retry(self) -> None:
        row = None if self.refused("retry") else self._selected()
        if row is None:
            return
        if row["status"] == "failed":
            self.act("retry", row["id"])
        elif row["status"] == "unknown":
            self._confirm_then(
                "Send anyway?",
                f"#{row['id']} to {row['to']} may already have been delivered: its worker "
                "stopped mid-send and Twilio's list could not tell.\n\nSending it again may "
                "reach the customer twice.", "Send anyway",
                lambda: self.act("retry", row["id"]))
        else:
            self.notify(f"Message #{row['id']} is {row['status']}: only failed or unknown "
                        "messages are retried (s sends a copy)", severity="warning")

    def action_mark_sent(self) -> None:
        row = None if self.refused("mark sent") else self._selected()
        if row is None:
            return
        if row["status"] != "unknown":
            self.notify("Only an unknown message can be marked sent", severity="warning")
            return
        self._confirm_then(
            "Mark as sent?",
            f"#{row['id']} to {row['to']}: you checked (in Twilio's console) that it went "
            "out. Nothing is sent.", "Mark sent", lambda: self.act("mark_sent", row["id"]))

    @work(thread=True, exit_on_error=False, group="text-action", description="Message")
    def act(self, action: str, row_id: int) -> None:
        app = self.console
        with session_scope(app.engine) as session:
            if action == "resend":
                row = outbox.resend_message(session, app.settings, row_id, app.operator)
                what = f"Message #{row_id} queued again as #{row.id}"
            elif action == "retry":
                outbox.retry_message(session, app.settings, row_id, app.operator,
                                     accept_duplicate=True)
                what = f"Message #{row_id} queued again"
            else:
                outbox.mark_sent_by_operator(session, app.settings, row_id, app.operator)
                what = f"Message #{row_id} marked sent"
        self.post_message(TextActed(what))

    @on(TextActed)
    def _acted(self, event: TextActed) -> None:
        self.notify(event.what, markup=False)
        self.reload()
