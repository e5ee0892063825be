"""A product's record: stock (from its events), threshold, last reconciliation; then the
failed jobs about it, its latest inventory events (adjustments with their reason) and
activity."""

from __future__ import annotations

from functools import partial
from typing import Any

from textual.content import Content
from textual.markup import escape

from kolaq_console.lookup import product_record
from kolaq_console.ui.format import when
from kolaq_console.ui.screens.records.base import (
    Record,
    RecordScreen,
    Related,
    activity_rows,
    job_rows,
)


class ProductRecordScreen(RecordScreen):
    MODE = "inventory"
    KIND = "product"
    LINKS = frozenset({"job"})
    EMAILS = False
    TITLE_TEXT = "Product"

    def read(self, session: Any) -> Record:
        d = product_record(session, self.key,
                           self.console.settings.inventory.low_stock_threshold)
        zone = self.console.settings.shop.zone
        at = partial(when, zone=zone)
        self.key = d["sku"]
        e = escape
        low = d["stock"] <= d["threshold"]
        stock = f"[$error]{d['stock']}[/] (low)" if low else str(d["stock"])
        threshold = f"{d['threshold']}" + (" (default)" if d["threshold_is_default"] else "")
        header = "\n".join([
            f"[b]{e(d['sku'])}[/] {e(d['name'])}"
            + ("" if d["active"] else "  [dim](inactive)[/]"),
            f"[b]Stock[/] {stock} · threshold {threshold} · reconciled "
            f"{when(d['last_reconciled_at'], zone)}"
            + (f" [dim](cached {d['stored_stock']})[/]"
               if d["stored_stock"] != d["stock"] else ""),
        ])
        rows: list[Related] = job_rows(d["failed_jobs"], at)
        rows += [Related("event", ev["id"], ev["kind"],
                         f"{ev['delta']:+d} → {ev['stock_after']} · {ev['actor']}"
                         + (f" · {ev['note'] or ev['reference']}"
                            if ev["note"] or ev["reference"] else ""),
                         at(ev["at"])) for ev in d["events"]]
        rows += activity_rows(d["activity"], at)
        return Record(Content.from_markup(header), rows, {})
