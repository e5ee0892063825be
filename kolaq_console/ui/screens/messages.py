"""9 Messages: SMS and WhatsApp rows of every channel with their status and delivery state;
filter; send again; retry a failed one; decide an `unknown` one (send anyway, or mark sent)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.markup import escape
from textual.widgets import Static

from kolaq_console.db import session_scope
from kolaq_console.sms import outbox
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.format import one_line, when
from kolaq_console.ui.messages import TextActed, TextsLoaded
from kolaq_console.ui.screens.base import POLL, LiveScreen
from kolaq_console.ui.widgets.filter_bar import FilterBar
from kolaq_console.ui.widgets.record_table import Col, RecordTable

STATUSES = outbox.STATUSES
COLUMNS = (
    Col("#", 4, right=True), Col("via", 8), Col("status", 8), Col("delivery", 11),
    Col("to", 14), Col("text / last error", 16, flex=3), Col("kind", 9, hide_below=100),
    Col("seg", 3, right=True, hide_below=110), Col("updated", 11, hide_below=90),
)
LIMIT = 200
COLOURS = {"failed": "$error", "unknown": "$error", "cancelled": "$text-muted",
           "sent": "$success", "queued": "$warning", "sending": "$warning",
           "delivered": "$success", "read": "$success", "undelivered": "$error"}


@dataclass(frozen=True)
class TextQuery:
    status: str | None = None
    text: str = ""

    def matches(self, row: dict) -> bool:
        haystack = f"{row['to']} {row['channel']} {row['kind']} {row['body']}".lower()
        return all(word in haystack for word in self.text.lower().split())

    def describe(self) -> str:
        parts = [f"status {self.status}" if self.status else "all statuses"]
        if self.text:
            parts.append(f"“{escape(self.text)}”")
        return " · ".join(parts)


def load_texts(session: Session, query: TextQuery) -> list[dict]:
    rows = outbox.list_messages(session, status=query.status, limit=LIMIT)
    return [s for s in map(outbox.row_summary, rows) if query.matches(s)]


def coloured(value: str | None) -> Content:
    value = value or ""
    colour = COLOURS.get(value)
    return Content.from_markup(f"[{colour}]{value}[/]") if colour else Content(value)


class MessagesScreen(LiveScreen):
    MODE = "messages"
    TITLE_TEXT = "Messages"
    WRITE_ACTIONS = frozenset({"resend", "retry", "mark_sent"})
    BINDINGS = [
        Binding("s", "resend", "Send again"),
        Binding("r", "retry", "Retry"),
        Binding("m", "mark_sent", "Mark sent"),
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
        yield RecordTable(id="messages")
        yield FilterBar("words in the number, channel, kind or text")
        yield from self.compose_chrome_bottom()

    def on_mount(self) -> None:
        self.query_one(RecordTable).set_columns(*COLUMNS)
        self.query_one(FilterBar).display = False

    @property
    def text_query(self) -> TextQuery:
        return TextQuery(self.status_filter, self.filter_text)

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL, description="Messages")
    def load(self) -> None:
        query = self.text_query
        with Session(self.console.engine) as session:
            rows = load_texts(session, query)
        self.deliver(TextsLoaded(rows, query))

    @on(TextsLoaded)
    def show_texts(self, event: TextsLoaded) -> None:
        if not self.accepts() or event.query != self.text_query:
            return
        zone = self.console.settings.shop.zone
        rows: list[dict] = event.data
        self.rows = {r["id"]: r for r in rows}
        unknown = sum(1 for r in rows if r["status"] == "unknown")
        with self.app.batch_update():
            self.query_one(RecordTable).replace_rows(
                (r["id"], (
                    str(r["id"]), r["channel"], coloured(r["status"]),
                    coloured(r["delivery_status"]), r["to"],
                    one_line(r["last_error"] if r["status"] in ("failed", "unknown",
                                                                "cancelled") else r["body"]),
                    r["kind"], "" if r["segments"] is None else str(r["segments"]),
                    when(r["updated_at"], zone),
                ))
                for r in rows
            )
            decide = (f" · [$error]{unknown} unknown: r send anyway, m mark sent[/]"
                      if unknown else "")
            self.query_one("#list-caption", Static).update(
                f"[b]{len(rows)}[/] messages · {event.query.describe()}{decide}"
                "   [dim]f status · / filter[/]")

    # --- actions -----------------------------------------------------------------------------

    def _selected(self) -> dict | None:
        row_id = self.query_one(RecordTable).current
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

    # --- filtering ---------------------------------------------------------------------------

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
