"""3 Inventory: low-stock products with days of cover, recent inventory activity; adjust
stock with a reason (`a`, confirmed), send the low-stock alert now (`A`, confirmed),
reconcile now (`c`), a product's record on Enter."""

from __future__ import annotations

from sqlmodel import Session
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from kolaq_console.inventory.adjust import adjust
from kolaq_console.inventory.lowstock import send_alerts
from kolaq_console.inventory.reconcile import reconcile
from kolaq_console.ui import links
from kolaq_console.ui.data import InventoryView, load_inventory
from kolaq_console.ui.dialogs.adjust import AdjustDialog
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.format import ago, when
from kolaq_console.ui.messages import (
    InventoryLoaded,
    InventoryReconciled,
    LowStockAlertSent,
    StockAdjusted,
)
from kolaq_console.ui.screens.base import ACTIVE, POLL
from kolaq_console.ui.screens.list_screen import ListScreen
from kolaq_console.ui.widgets.record_table import Col, RecordTable

# Priority 0 survives at 80 columns: SKU, stock and days of cover.
LOW_COLUMNS = (
    Col("SKU", 12, flex=1, priority=0), Col("product", 14, flex=2, priority=2),
    Col("stock", 5, right=True, priority=0), Col("threshold", 9, right=True, priority=3),
    Col("sold 7d", 7, right=True, priority=1), Col("cover", 6, right=True, priority=0),
    # when the product's stock was last verified: the last run's, or its adjustment's since
    # (inventory.stock.reconciled_times)
    Col("reconciled", 11, priority=4),
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


class InventoryScreen(ListScreen):
    MODE = "inventory"
    TITLE_TEXT = "Inventory"
    COLUMNS = LOW_COLUMNS
    TABLE_ID = "low-stock"
    PLACEHOLDER = "SKU, product or words in the activity"
    EMPTY = ("No product is at or below its low-stock threshold. `kolaq-console inventory "
             "adjust SKU DELTA --reason ...` changes any product's stock.")
    WRITE_ACTIONS = frozenset({"reconcile", "adjust", "send_alert"})
    BINDINGS = [
        Binding("a", "adjust", "Adjust"),
        Binding("A", "send_alert", "Alert now"),
        Binding("c", "reconcile", "Reconcile now"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.view: InventoryView | None = None

    def compose_list(self) -> ComposeResult:
        yield from super().compose_list()
        yield Static("Recent activity", classes="caption section")
        yield RecordTable(id="activity")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#activity", RecordTable).set_columns(*ACTIVITY_COLUMNS)

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

    def filter_changed(self) -> None:
        self._render_view()  # filtered here: the view holds every low product

    def _render_view(self) -> None:
        view = self.view
        if view is None:
            return
        zone = self.console.settings.shop.zone
        flt = self.filter
        low = [p for p in view.low if flt.matches(p["sku"], p["name"])]
        activity = [a for a in view.activity
                    if flt.matches(a["subject"], a["action"], a["summary"])]
        with self.app.batch_update():
            self.query_one("#activity", RecordTable).replace_rows(
                (a["id"], (when(a["at"], zone), a["action"], a["subject"] or "", a["summary"],
                           a["actor"]))
                for a in activity
            )
            self.show_rows(
                (p["sku"], (
                    p["sku"], p["name"], str(p["stock"]), str(p["threshold"]),
                    str(p["sold_7d"]),
                    "-" if p["days_of_cover"] is None else f"{p['days_of_cover']:.1f}d",
                    when(p["last_reconciled_at"], zone),
                ))
                for p in low
            )

    def caption(self) -> str:
        view = self.view
        if view is None:
            return "Inventory"
        now = self.console.clock()
        last = (f"last reconcile {ago(view.last_run_at, now)} ago"
                if view.last_run_at else "never reconciled")
        shown = f" matching {self.filter.describe()}" if self.filter else ""
        keys = "" if self.console.read_only else "   [dim]a adjust · A alert[/]"
        return f"[b]{self.table.row_count}[/] low-stock products{shown} · {last}{keys}"

    # --- records -----------------------------------------------------------------------------

    def open_record(self, key: object) -> None:
        table = self.active_table()
        if table.id == "activity":  # entries about one product name its SKU
            _when, action, subject, *_ = table.cells(key)
            if action in ("adjust", "reconcile") and subject:
                self._open_product(str(subject))
            return
        self._open_product(str(key))

    def _open_product(self, sku: str) -> None:
        links.open_product(self.app, sku)

    def _current_product(self) -> dict | None:
        sku = self.table.current
        if sku is None or self.view is None:
            return None
        return next((p for p in self.view.low if p["sku"] == sku), None)

    # --- adjust ------------------------------------------------------------------------------

    def action_adjust(self) -> None:
        if self.refused("adjusting stock"):
            return
        product = self._current_product()
        if product is None:
            self.notify("No product selected: / finds one by SKU or name", severity="warning")
            return
        sku, stock = product["sku"], product["stock"]
        self.app.push_screen(AdjustDialog(sku, product["name"], stock),
                             lambda answer: self._confirm_adjust(sku, stock, answer))

    def _confirm_adjust(self, sku: str, stock: int, answer: tuple[int, str] | None) -> None:
        if answer is None:
            return
        delta, reason = answer
        self.app.push_screen(
            ConfirmDialog(f"Adjust {sku} by {delta:+d}?",
                          f"Stock {stock} -> {stock + delta} (as last read).\n"
                          f"Reason: {reason}\n\nAn adjustment event is recorded with your "
                          "name and this reason; the stored stock is brought up to date.",
                          confirm="Adjust"),
            lambda ok: self.apply_adjustment(sku, delta, reason) if ok else None)

    @work(thread=True, exit_on_error=False, group="adjust", description="Adjust stock")
    def apply_adjustment(self, sku: str, delta: int, reason: str) -> None:
        app = self.console
        result = adjust(app.engine, app.settings, sku, delta, reason, actor=app.operator,
                        now=app.clock())
        low = " (at or below its threshold)" if result.low else ""
        self.post_message(StockAdjusted(
            f"{sku}: {result.stock_before} -> {result.stock_after}{low}"))

    @on(StockAdjusted)
    def _adjusted(self, event: StockAdjusted) -> None:
        self.notify(event.summary, title="Stock adjusted", markup=False)
        self.reload()

    # --- alert now ---------------------------------------------------------------------------

    def action_send_alert(self) -> None:
        if self.refused("sending the low-stock alert"):
            return
        count = self.table.row_count if not self.filter else len(self.view.low
                                                                  if self.view else [])
        self.app.push_screen(
            ConfirmDialog("Send the low-stock alert now?",
                          f"{count} product(s) are low. The admin is emailed about those no "
                          "alert listed today (a product is alerted at most once a day).",
                          confirm="Send"),
            lambda ok: self.send_alert() if ok else None)

    @work(thread=True, exit_on_error=False, group="alert", description="Low-stock alert")
    def send_alert(self) -> None:
        app = self.console
        outcome = send_alerts(app.engine, app.settings, now=app.clock(), actor=app.operator)
        if outcome.queued:
            summary = (f"Low-stock alert queued (email #{outcome.outbox_id}) for "
                       f"{len(outcome.skus)} product(s)")
        else:
            summary = f"No alert sent: {outcome.reason}"
        self.post_message(LowStockAlertSent(summary))

    @on(LowStockAlertSent)
    def _alert_sent(self, event: LowStockAlertSent) -> None:
        self.notify(event.summary, title="Inventory", markup=False)
        self.reload()

    # --- reconcile ---------------------------------------------------------------------------

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
