"""An order's record: status, payment, shipping; then the failed jobs about it, its emails
with their state, its lines (p opens the product), text messages and activity."""

from __future__ import annotations

from functools import partial
from typing import Any

from textual.content import Content
from textual.markup import escape

from kolaq_console.emails.render import money
from kolaq_console.lookup import order_record
from kolaq_console.ui.format import when, when_full
from kolaq_console.ui.screens.orders import coloured
from kolaq_console.ui.screens.records.base import (
    Record,
    RecordScreen,
    Related,
    activity_rows,
    email_rows,
    job_rows,
    text_rows,
)


class OrderRecordScreen(RecordScreen):
    MODE = "orders"
    KIND = "order"
    LINKS = frozenset({"customer", "email", "job", "product"})
    TITLE_TEXT = "Order"

    def read(self, session: Any) -> Record:
        d = order_record(session, self.key)
        zone = self.console.settings.shop.zone
        at = partial(when, zone=zone)
        self.key = d["number"]
        p, s = d["payment"], d["shipping"]
        e = escape
        cur = d["currency"]
        # The fee is part of the total: without it the lines never added up to it.
        carrier = " ".join(x for x in (s["carrier"], s["tracking_number"]) if x)
        shipping = " · ".join(x for x in (money(d["shipping_minor"], cur), carrier) if x)
        header = "\n".join([
            f"[b]Order {e(d['number'])}[/]  {coloured(d['status']).markup}  "
            f"{money(d['total_minor'], cur)}  [dim]created {when_full(d['created_at'], zone)}[/]",
            f"[b]Customer[/] {e(d['customer_name'] or '')} <{e(d['customer_email'] or '-')}>",
            f"[b]Payment[/]  {coloured(p['status']).markup} via {e(p['provider'] or '-')} "
            f"· ref {e(p['reference'] or '-')} · paid {when(p['paid_at'], zone)}",
            f"[b]Shipping[/] {e(shipping)}",
        ])
        rows: list[Related] = job_rows(d["failed_jobs"], at)
        rows += email_rows(d["emails"], at)
        rows += [Related("line", line["sku"], f"{line['quantity']} x",
                         f"{line['name']} · {money(line['total_minor'], cur)}")
                 for line in d["lines"]]
        rows += text_rows(d["texts"], at)
        rows += [Related("webhook", w["id"], w["status"],
                         f"{w['provider']} {w['event_type']} {w['error'] or ''}",
                         at(w["received_at"])) for w in d["webhooks"]]
        rows += activity_rows(d["activity"], at)
        return Record(Content.from_markup(header), rows,
                      {"customer": d["customer_email"]})
