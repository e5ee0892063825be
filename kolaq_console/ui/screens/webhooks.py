"""7 Webhooks: stored events with their status and error; detail with the payload; replay a
failed, flagged or ignored one (confirmed; its effects still happen once)."""

from __future__ import annotations

import json

from sqlmodel import Session
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.widgets import Static

from kolaq_console.models import Order
from kolaq_console.orders.queries import event_summary
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.filtering import Grammar
from kolaq_console.ui.format import when, when_full
from kolaq_console.ui.messages import WebhookLoaded, WebhookReplayed, WebhooksLoaded
from kolaq_console.ui.screens.base import POLL, LiveScreen
from kolaq_console.ui.screens.list_screen import ListScreen
from kolaq_console.ui.widgets.record_table import Col
from kolaq_console.webhooks.inbox import REPLAYABLE, STATUSES, get_event, list_events, replay

COLUMNS = (
    Col("#", 5, right=True, priority=2), Col("received", 11, hide_below=80, priority=3),
    Col("provider", 8, priority=1), Col("type", 16, flex=2, priority=0),
    Col("status", 9, priority=0), Col("error", 14, flex=3, hide_below=90, priority=0),
)
GRAMMAR = Grammar({"status": tuple(STATUSES), "provider": None}, bare_key="status")
LIMIT = 200
STATUS_COLOURS = {"processed": "$success", "received": "$warning", "flagged": "$error",
                  "failed": "$error", "ignored": "dim"}


class WebhookActions(LiveScreen):
    WRITE_ACTIONS = frozenset({"replay"})

    def selected_event(self) -> tuple[int, str, str] | None:
        """(id, what it is, status) of the event the action is about."""
        raise NotImplementedError

    def action_replay(self) -> None:
        if self.refused("replay"):
            return
        selected = self.selected_event()
        if selected is None:
            return
        row_id, what, status = selected
        if status not in REPLAYABLE:
            self.notify(f"Event #{row_id} is {status}; only {', '.join(REPLAYABLE)} events "
                        "can be replayed", severity="warning")
            return
        self.app.push_screen(
            ConfirmDialog("Replay this webhook event?",
                          f"#{row_id} {what} ({status})\n\nIt is processed again. Effects "
                          "already applied (an order paid, stock moved, an email queued) are "
                          "not repeated.", confirm="Replay"),
            lambda ok: self.replay(row_id) if ok else None)

    @work(thread=True, exit_on_error=False, group="replay", description="Replay")
    def replay(self, row_id: int) -> None:
        app = self.console
        replay(app.engine, row_id, actor=app.operator,
               lease_seconds=app.settings.webhooks.lease_seconds)
        self.post_message(WebhookReplayed(row_id))

    @on(WebhookReplayed)
    def _replayed(self, event: WebhookReplayed) -> None:
        self.notify(f"Webhook event #{event.row_id} queued again")
        self.reload()


class WebhooksScreen(WebhookActions, ListScreen):
    MODE = "webhooks"
    TITLE_TEXT = "Webhooks"
    COLUMNS = COLUMNS
    GRAMMAR = GRAMMAR
    TABLE_ID = "webhooks"
    STATUS_KEY = "status"
    PLACEHOLDER = "status:failed provider:paystack or words in the type or error"
    EMPTY = ("No webhook events yet. Point Paystack, Flutterwave, Resend and Twilio at "
             "`kolaq-console webhooks serve` (see the README).")
    BINDINGS = [
        Binding("r", "replay", "Replay"),
        Binding("f", "cycle_status", "Filter status"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[int, dict] = {}

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL, description="Webhooks")
    def load(self) -> None:
        flt = self.filter
        provider = flt.get("provider")
        with Session(self.console.engine) as session:
            rows = [event_summary(e) for e in list_events(session, flt.get("status"),
                                                           limit=LIMIT)]
        rows = [r for r in rows if (provider is None or r["provider"].lower() == provider)
                and flt.matches(r["provider"], r["event_type"], r["error"])]
        self.deliver(WebhooksLoaded(rows, flt))

    @on(WebhooksLoaded)
    def show_events(self, event: WebhooksLoaded) -> None:
        if not self.accepts() or event.query != self.filter:
            return
        zone = self.console.settings.shop.zone
        rows: list[dict] = event.data
        self.rows = {r["id"]: r for r in rows}
        self.show_rows(
            (r["id"], (str(r["id"]), when(r["received_at"], zone), r["provider"],
                       r["event_type"], _status(r["status"]), r["error"] or ""))
            for r in rows)

    def caption(self) -> str:
        parts = [] if self.filter.get("status") else ["all statuses"]
        if self.filter:
            parts.append(self.filter.describe())
        return (f"[b]{len(self.rows)}[/] events · {' · '.join(parts)}   [dim]f status · "
                "Enter detail · r replay[/]")

    def open_record(self, key: object) -> None:
        self.app.push_screen(WebhookDetailScreen(int(key)))  # type: ignore[call-overload]

    def selected_event(self) -> tuple[int, str, str] | None:
        row_id = self.table.current
        row = self.rows.get(row_id) if row_id is not None else None
        if row is None:
            return None
        return row_id, f"{row['provider']} {row['event_type']}", row["status"]


class WebhookDetailScreen(WebhookActions):
    MODE = "webhooks"
    TITLE_TEXT = "Webhook event"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "replay", "Replay"),
    ]

    def __init__(self, row_id: int) -> None:
        super().__init__()
        self.row_id = row_id
        self.row: dict | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome_top()
        with VerticalScroll(id="detail"):
            yield Static(f"Webhook event #{self.row_id}", id="detail-fields")
            yield Static(id="detail-body", classes="code", markup=False)
        yield from self.compose_chrome_bottom()

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL,
          description="Webhook event")
    def load(self) -> None:
        with Session(self.console.engine) as session:
            event = get_event(session, self.row_id)
            order = session.get(Order, event.order_id) if event.order_id else None
            row = {**event_summary(event), "order": order.number if order else None,
                   "email_id": event.email_id, "payload": event.payload}
        self.deliver(WebhookLoaded(row, self.row_id))

    @on(WebhookLoaded)
    def show_event(self, event: WebhookLoaded) -> None:
        if not self.accepts():
            return
        r = self.row = event.data
        zone = self.console.settings.shop.zone
        fields = [("Provider", r["provider"]), ("Event id", r["event_id"]),
                  ("Type", r["event_type"]), ("Error", r["error"] or "-"),
                  ("Attempts", str(r["attempts"])), ("Order", r["order"] or "-"),
                  ("Email", f"#{r['email_id']}" if r["email_id"] else "-"),
                  ("Received", when_full(r["received_at"], zone)),
                  (_handled_label(r["status"]), when_full(r["processed_at"], zone))]
        text = "\n".join(f"[b]{name:<10}[/] {escape(value)}" for name, value in fields)
        with self.app.batch_update():
            self.query_one("#detail-fields", Static).update(
                f"[b]Webhook event #{r['id']}[/]  {_status(r['status']).markup}\n{text}")
            self.query_one("#detail-body", Static).update(json.dumps(r["payload"], indent=2))

    def selected_event(self) -> tuple[int, str, str] | None:
        if self.row is None:
            return None
        return self.row_id, f"{self.row['provider']} {self.row['event_type']}", self.row["status"]


def _status(status: str):
    from textual.content import Content

    return Content.from_markup(f"[{STATUS_COLOURS.get(status, '')}]{escape(status)}[/]")


def _handled_label(status: str) -> str:
    """What the event's last handling time was: a failed (or not yet handled) event was
    tried then, not processed."""
    return "Last tried" if status in ("failed", "received") else status.capitalize()
