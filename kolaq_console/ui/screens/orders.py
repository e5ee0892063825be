"""6 Orders: filter by status; detail with lines, payment, every email and its delivery state,
webhook events and activity; change the status (allowed moves only, confirmed)."""

from __future__ import annotations

from sqlmodel import Session
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.markup import escape
from textual.widgets import Static

from kolaq_console.emails.render import money
from kolaq_console.orders.lifecycle import STATUSES, TRANSITIONS, set_status
from kolaq_console.orders.queries import list_orders, order_detail
from kolaq_console.ui.dialogs.choose import ChooseDialog, ShippingDialog
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.filtering import Grammar
from kolaq_console.ui.format import when, when_full
from kolaq_console.ui.messages import OrderLoaded, OrdersLoaded, OrderStatusChanged
from kolaq_console.ui.screens.base import POLL, LiveScreen
from kolaq_console.ui.screens.list_screen import ListScreen
from kolaq_console.ui.widgets.record_table import Col

# Priority 0 survives at 80 columns: the order number, its status, the customer.
COLUMNS = (
    Col("number", 9, priority=0), Col("status", 10, priority=0),
    Col("payment", 8, hide_below=90, priority=2), Col("customer", 16, flex=2, priority=0),
    Col("total", 12, right=True, priority=1), Col("created", 11, hide_below=80, priority=3),
)
GRAMMAR = Grammar({"status": tuple(STATUSES)}, bare_key="status")
LIMIT = 200
STATUS_COLOURS = {"pending": "$warning", "paid": "$success", "processing": "$accent",
                  "shipped": "$accent", "delivered": "$success", "cancelled": "dim",
                  "refunded": "dim", "review": "$error", "bounced": "$error",
                  "complained": "$error", "soft_bounced": "$warning", "delayed": "$warning"}


def coloured(value: str | None, unknown: str = "unknown") -> Content:
    text = value or unknown
    colour = STATUS_COLOURS.get(text)
    return Content.from_markup(f"[{colour}]{escape(text)}[/]") if colour else Content(text)


class OrderActions(LiveScreen):
    """Change status (`s`): choose an allowed status, carrier/tracking for shipping, confirm."""

    WRITE_ACTIONS = frozenset({"change_status"})

    def selected_order(self) -> tuple[str, str] | None:
        """(number, status) of the order the action is about."""
        raise NotImplementedError

    def action_change_status(self) -> None:
        if self.refused("changing an order's status"):
            return
        selected = self.selected_order()
        if selected is None:
            return
        number, status = selected
        allowed = list(TRANSITIONS.get(status, ()))
        if not allowed:
            self.notify(f"Order {number} is {status}: no further status", severity="warning")
            return
        self.app.push_screen(ChooseDialog(f"Order {number} is {status}; move it to…", allowed),
                             lambda new: self._chosen(number, status, new))

    def _chosen(self, number: str, old: str, new: str | None) -> None:
        if not new:
            return
        if new == "shipped":
            self.app.push_screen(ShippingDialog(number),
                                 lambda ship: self._confirm(number, old, new, ship)
                                 if ship else None)
        else:
            self._confirm(number, old, new, None)

    def _confirm(self, number: str, old: str, new: str,
                 ship: tuple[str, str, str] | None) -> None:
        email = {"paid": "the order confirmation", "shipped": "the shipping notification"}.get(
            new, "a status update" if new in ("delivered", "cancelled", "refunded") else None)
        lines = [f"Order {number}: {old} -> {new}."]
        if ship:
            link = f", link {ship[2]}" if ship[2] else ""
            lines.append(f"Carrier {ship[0]}, tracking {ship[1]}{link}.")
        if email:
            lines.append(f"The customer is sent {email} (once).")
        if new == "refunded":
            lines.append("Its items go back into stock (return events).")
        self.app.push_screen(
            ConfirmDialog("Change the order's status?", "\n".join(lines), confirm="Change"),
            lambda ok: self.change(number, new, ship) if ok else None)

    @work(thread=True, exit_on_error=False, group="order-status", description="Order status")
    def change(self, number: str, new: str, ship: tuple[str, str, str] | None) -> None:
        app = self.console
        carrier, tracking, url = ship or (None, None, None)
        with Session(app.engine, expire_on_commit=False) as session:
            done = set_status(session, app.settings, number, new, actor=app.operator,
                              carrier=carrier, tracking=tracking, tracking_url=url or None)
        self.post_message(OrderStatusChanged(done.describe()))

    @on(OrderStatusChanged)
    def _status_changed(self, event: OrderStatusChanged) -> None:
        self.notify(event.summary, markup=False)
        self.reload()


class OrdersScreen(OrderActions, ListScreen):
    MODE = "orders"
    TITLE_TEXT = "Orders"
    COLUMNS = COLUMNS
    GRAMMAR = GRAMMAR
    TABLE_ID = "orders"
    STATUS_KEY = "status"
    PLACEHOLDER = "status:paid or part of an order number or a customer's address"
    EMPTY = ("No orders yet. They arrive from the shop's checkout (Paystack or Flutterwave "
             "webhooks); `kolaq-console demo` loads a demo shop.")
    BINDINGS = [
        Binding("s", "change_status", "Status"),
        Binding("f", "cycle_status", "Filter status"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict] = {}

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL, description="Orders")
    def load(self) -> None:
        flt = self.filter
        with Session(self.console.engine) as session:
            rows = list_orders(session, status=flt.get("status"), limit=LIMIT,
                               search=flt.text or None)
        self.deliver(OrdersLoaded(rows, flt))

    @on(OrdersLoaded)
    def show_orders(self, event: OrdersLoaded) -> None:
        if not self.accepts() or event.query != self.filter:
            return
        zone = self.console.settings.shop.zone
        rows: list[dict] = event.data
        self.rows = {r["number"]: r for r in rows}
        self.show_rows(
            (r["number"], (r["number"], coloured(r["status"]),
                           coloured(r["payment_status"]), r["customer_email"] or "-",
                           money(r["total_minor"], r["currency"]),
                           when(r["created_at"], zone)))
            for r in rows)

    def caption(self) -> str:
        more = " (latest shown)" if len(self.rows) >= LIMIT else ""
        parts = [] if self.filter.get("status") else ["all statuses"]
        if self.filter:
            parts.append(self.filter.describe())
        return (f"[b]{len(self.rows)}[/] orders{more} · {' · '.join(parts)}"
                "   [dim]f status · / filter · Enter detail[/]")

    def open_record(self, key: object) -> None:
        self.app.push_screen(OrderDetailScreen(str(key)))

    def selected_order(self) -> tuple[str, str] | None:
        number = self.table.current
        if number is None or number not in self.rows:
            return None
        return number, self.rows[number]["status"]


class OrderDetailScreen(OrderActions):
    MODE = "orders"
    TITLE_TEXT = "Order"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("s", "change_status", "Status"),
    ]

    def __init__(self, number: str) -> None:
        super().__init__()
        self.number = number
        self.detail: dict | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome_top()
        with VerticalScroll(id="detail"):
            yield Static(f"Order {self.number}", id="detail-fields")
        yield from self.compose_chrome_bottom()

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL, description="Order")
    def load(self) -> None:
        with Session(self.console.engine) as session:
            self.deliver(OrderLoaded(order_detail(session, self.number, activity_limit=20),
                                     self.number))

    @on(OrderLoaded)
    def show_order(self, event: OrderLoaded) -> None:
        if not self.accepts():
            return
        d = self.detail = event.data
        self.query_one("#detail-fields", Static).update(
            render_order(d, self.console.settings.shop.zone))

    def selected_order(self) -> tuple[str, str] | None:
        return (self.number, self.detail["status"]) if self.detail else None


def render_order(d: dict, zone) -> Content:
    """The detail as markup: every value escaped (addresses and notes are data)."""
    cur = d["currency"]
    p, s = d["payment"], d["shipping"]
    e = escape

    def row(name: str, value: str) -> str:
        return f"[b]{name:<10}[/] {value}"

    out = [
        f"[b]Order {e(d['number'])}[/]  {coloured(d['status']).markup}",
        row("Customer", e(f"{d['customer_name'] or ''} <{d['customer_email'] or '-'}>")),
        row("Payment", f"{coloured(p['status']).markup} via {e(p['provider'] or '-')}, "
                       f"reference {e(p['reference'] or '-')}, "
                       f"paid {when_full(p['paid_at'], zone)}"),
        row("Shipping", e(" ".join(x for x in (s["carrier"], s["tracking_number"],
                                               s["tracking_url"]) if x) or "-")),
        row("Created", when_full(d["created_at"], zone)),
        "",
        "[b]Lines[/]",
    ]
    for line in d["lines"]:
        out.append(f"  {line['quantity']:>3} x {e(line['name'][:40]):<40} "
                   f"{money(line['total_minor'], cur):>14}")
    out.append(f"  {'shipping':>46} {money(d['shipping_minor'], cur):>14}")
    out.append(f"  [b]{'total':>46} {money(d['total_minor'], cur):>14}[/]")
    out += ["", "[b]Emails[/] (status · delivery)"]
    for m in d["emails"] or []:
        out.append(f"  #{m['id']:<5} {e(m['kind']):<22} {coloured(m['status']).markup:<8} · "
                   f"{coloured(m['delivery_status']).markup}  {e(m['to'])}")
    if not d["emails"]:
        out.append("  [dim]none[/]")
    if d["webhooks"]:
        out += ["", "[b]Webhook events[/]"]
        for w in d["webhooks"]:
            out.append(f"  #{w['id']:<5} {e(w['provider']):<9} {e(w['event_type']):<26} "
                       f"{coloured(w['status']).markup} {e(w['error'] or '')}")
    out += ["", "[b]Activity[/] (newest first)"]
    for a in d["activity"]:
        details = ", ".join(f"{k} {v}" for k, v in (a["details"] or {}).items())
        out.append(f"  {when(a['at'], zone)}  {e(a['actor'])}  {e(a['action'])}  "
                   f"[dim]{e(details[:80])}[/]")
    return Content.from_markup("\n".join(out))
