"""3 Inventory: low-stock products, reconcile now, recent inventory activity."""

from __future__ import annotations

from sqlmodel import Session
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.widgets import Static

from kolaq_console.inventory.reconcile import reconcile
from kolaq_console.ui.data import InventoryView, load_inventory
from kolaq_console.ui.format import ago, when
from kolaq_console.ui.messages import InventoryLoaded, InventoryReconciled
from kolaq_console.ui.screens.base import ACTIVE, POLL, LiveScreen
from kolaq_console.ui.widgets.filter_bar import FilterBar
from kolaq_console.ui.widgets.record_table import Col, RecordTable

LOW_COLUMNS = (
    Col("SKU", 12, flex=1), Col("product", 14, flex=2), Col("stock", 5, right=True),
    Col("threshold", 9, right=True), Col("sold 7d", 7, right=True, hide_below=100),
    Col("cover", 6, right=True, hide_below=110), Col("reconciled", 11),
)
ACTIVITY_COLUMNS = (
    Col("when", 11), Col("action", 9), Col("subject", 12, flex=1),
    Col("what", 20, flex=3), Col("by", 8, flex=1, hide_below=100),
)
RECONCILE = "reconcile"


def reconcile_summary(result: dict) -> str:
    text = (f"Reconciled ({result['mode']}): {result['checked']} checked, "
            f"{result['changed']} changed, {result['events_folded']} events folded "
            f"in {result['duration_ms']} ms")
    refused = result.get("refused") or []
    if refused:
        text += f"; refused {len(refused)}: " + ", ".join(sku for sku, _why in refused[:5])
    return text


class InventoryScreen(LiveScreen):
    MODE = "inventory"
    TITLE_TEXT = "Inventory"
    WRITE_ACTIONS = frozenset({"reconcile"})
    BINDINGS = [
        Binding("c", "reconcile", "Reconcile now"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self.view: InventoryView | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome_top()
        yield Static(id="inv-caption", classes="caption")
        yield RecordTable(id="low-stock")
        yield Static("Recent activity", classes="caption section")
        yield RecordTable(id="activity")
        yield FilterBar("SKU, product or words in the activity")
        yield from self.compose_chrome_bottom()

    def on_mount(self) -> None:
        self.query_one("#low-stock", RecordTable).set_columns(*LOW_COLUMNS)
        self.query_one("#activity", RecordTable).set_columns(*ACTIVITY_COLUMNS)
        self.query_one(FilterBar).display = False

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL, description="Inventory")
    def load(self) -> None:
        app = self.console
        with Session(app.engine) as session:
            self.deliver(InventoryLoaded(load_inventory(session, app.settings, app.clock())))

    @on(InventoryLoaded)
    def show_inventory(self, event: InventoryLoaded) -> None:
        if not self.accepts():
            return
        self.view = event.data
        self._render_view()

    def _render_view(self) -> None:
        view = self.view
        if view is None:
            return
        zone, now = self.console.settings.shop.zone, self.console.clock()
        needle = self.filter_text.lower()
        low = [p for p in view.low if needle in f"{p['sku']} {p['name']}".lower()]
        activity = [a for a in view.activity
                    if needle in f"{a['subject']} {a['action']} {a['summary']}".lower()]
        with self.app.batch_update():
            self.query_one("#low-stock", RecordTable).replace_rows(
                (p["sku"], (
                    p["sku"], p["name"], str(p["stock"]), str(p["threshold"]),
                    str(p["sold_7d"]),
                    "-" if p["days_of_cover"] is None else f"{p['days_of_cover']:.1f}d",
                    when(p["last_reconciled_at"], zone),
                ))
                for p in low
            )
            self.query_one("#activity", RecordTable).replace_rows(
                (a["id"], (when(a["at"], zone), a["action"], a["subject"] or "", a["summary"],
                           a["actor"]))
                for a in activity
            )
            last = (f"last reconcile {ago(view.last_run_at, now)} ago"
                    if view.last_run_at else "never reconciled")
            shown = f" matching “{escape(self.filter_text)}”" if self.filter_text else ""
            self.query_one("#inv-caption", Static).update(
                f"[b]{len(low)}[/] low-stock products{shown} · {last}"
                + ("" if self.console.read_only else "   [dim]c reconcile now[/]"))

    # --- keys --------------------------------------------------------------------------------

    def action_reconcile(self) -> None:
        if self.refused("reconcile"):
            return
        if any(w.node is self and w.group == RECONCILE and w.state in ACTIVE
               for w in self.app.workers):
            self.notify("A reconciliation is already running", severity="warning")
            return
        self.notify("Reconciling inventory…")
        self.run_reconcile()

    @work(thread=True, exit_on_error=False, group=RECONCILE, description="Reconcile")
    def run_reconcile(self) -> None:
        app = self.console
        result = reconcile(app.engine, actor=app.operator,
                           lease_ttl=app.settings.inventory.lock_ttl_seconds,
                           max_stock=app.settings.inventory.max_stock)
        self.post_message(InventoryReconciled(reconcile_summary(result.summary())))

    @on(InventoryReconciled)
    def _reconciled(self, event: InventoryReconciled) -> None:
        self.notify(event.summary, title="Inventory", markup=False)
        self.reload()

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    async def action_back(self) -> None:
        if self.filter_text:
            self.query_one(FilterBar).action_clear_filter()
        else:
            await self.app.run_action("go('overview')")

    @on(FilterBar.Applied)
    def _filter_applied(self, event: FilterBar.Applied) -> None:
        self.filter_text = event.text
        self._render_view()

    @on(FilterBar.Closed)
    def _filter_closed(self) -> None:
        self.query_one("#low-stock", RecordTable).focus()
