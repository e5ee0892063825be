"""A product's history (Enter on the Inventory screen when ui/links.py offers no product
record): stock, its latest inventory events with the stock after each, and the activity log
entries about it."""

from __future__ import annotations

from sqlmodel import Session
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.widgets import Static

from kolaq_console.inventory.adjust import history
from kolaq_console.ui.format import when
from kolaq_console.ui.messages import ProductHistoryLoaded
from kolaq_console.ui.screens.base import POLL, LiveScreen
from kolaq_console.ui.widgets.record_table import Col, RecordTable

EVENT_COLUMNS = (
    Col("when", 11, priority=0), Col("kind", 10, priority=0), Col("change", 6, right=True),
    Col("stock", 6, right=True, priority=0), Col("by", 8, priority=2),
    Col("note / reference", 14, flex=1, priority=0),
)


class ProductHistoryScreen(LiveScreen):
    MODE = "inventory"
    TITLE_TEXT = "Product"
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, sku: str) -> None:
        super().__init__()
        self.sku = sku

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome_top()
        yield Static(f"Product {self.sku}", id="product-head", classes="caption")
        yield RecordTable(id="product-events")
        yield Static("Activity", classes="caption section")
        yield Static(id="product-activity")
        yield from self.compose_chrome_bottom()

    def on_mount(self) -> None:
        self.query_one(RecordTable).set_columns(*EVENT_COLUMNS)

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL, description="Product")
    def load(self) -> None:
        with Session(self.console.engine) as session:
            self.deliver(ProductHistoryLoaded(history(session, self.sku, limit=50), self.sku))

    @on(ProductHistoryLoaded)
    def show_history(self, event: ProductHistoryLoaded) -> None:
        if not self.accepts():
            return
        h = event.data
        zone = self.console.settings.shop.zone
        threshold = "default" if h["threshold"] is None else str(h["threshold"])
        state = "" if h["active"] else " · [$warning]inactive[/]"
        with self.app.batch_update():
            self.query_one("#product-head", Static).update(
                f"[b]{escape(h['sku'])}[/] {escape(h['name'])} · stock [b]{h['stock']}[/] · "
                f"threshold {threshold} · reconciled {when(h['last_reconciled_at'], zone)}"
                f"{state}")
            self.query_one(RecordTable).replace_rows(
                (e["id"], (when(e["at"], zone), e["kind"], f"{e['delta']:+d}",
                           str(e["stock_after"]), e["actor"] or "-",
                           e["note"] or e["reference"] or ""))
                for e in h["events"])
            lines = [f"{when(a['at'], zone)}  {escape(a['actor'])}  {escape(a['action'])}  "
                     f"[dim]{escape(', '.join(f'{k} {v}' for k, v in a['details'].items()))}[/]"
                     for a in h["activity"][:10]]
            self.query_one("#product-activity", Static).update(
                "\n".join(lines) or "[dim]none[/]")
