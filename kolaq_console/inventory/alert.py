"""The seam between the low-stock check and the email outbox (kind `low_stock`).

`send_low_stock_alert(session, settings, products, idempotency_key)` is the one function the
check calls. It runs inside the check's transaction, so the alert's guard row and its outbox
row commit together or not at all. Today it renders a minimal message itself and inserts the
`EmailOutbox` row (status queued); once the email service exists, its body becomes a call to
that service's `queue_email(...)` with the same arguments, and nothing else here changes.

After the transaction commits, the row is handed to the send task if one is registered
(`tasks.send_email(outbox_id)`); until the email area provides that task nothing is
enqueued, and the row waits in the outbox for the email service's sweeper.
"""

from __future__ import annotations

import html
import logging
import sys
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event
from sqlmodel import Session

from kolaq_console.config import Settings
from kolaq_console.models import EmailOutbox, EmailStatus

log = logging.getLogger(__name__)

KIND = "low_stock"
SEND_TASK = "send_email"  # the email area's task in tasks.py, called with the outbox row id
_PENDING = "kolaq.inventory.enqueue_after_commit"


def _cover(days: float | None) -> str:
    return "-" if days is None else f"{days:.1f}"


def render(settings: Settings, products: Sequence[Any], follow_up: bool) -> tuple[str, str, str]:
    """(subject, html, text) for a list of LowStockItem."""
    n = len(products)
    noun = "product" if n == 1 else "products"
    shop = settings.shop.name
    if follow_up:
        subject = f"[{shop}] Low stock update: {n} more {noun} at or below threshold"
        intro = f"Since today's alert, {n} more {noun} fell to or below the low-stock threshold."
    else:
        subject = f"[{shop}] Low stock: {n} {noun} at or below threshold"
        intro = f"{n} {noun} at or below the low-stock threshold."
    head = ("SKU", "Product", "Stock", "Threshold", "Sold (7 days)", "Days of cover")
    rows = [(p.sku, p.name, str(p.stock), str(p.threshold), str(p.sold_7d),
             _cover(p.days_of_cover)) for p in products]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    text_rows = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    text = "\n".join([intro, "", line, "-" * len(line), *text_rows, "",
                      "Restock or adjust with: kolaq-console inventory adjust SKU DELTA "
                      "--reason TEXT", ""])
    cells = "".join(f"<th align='left'>{html.escape(h)}</th>" for h in head)
    body_rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    page = (
        f"<!doctype html><html><body><p>{html.escape(intro)}</p>"
        f"<table cellpadding='4'><thead><tr>{cells}</tr></thead><tbody>{body_rows}</tbody>"
        "</table></body></html>"
    )
    return subject, page, text


def send_low_stock_alert(session: Session, settings: Settings, products: Sequence[Any],
                         idempotency_key: str, *, follow_up: bool = False) -> int:
    """Queue the alert email in the caller's transaction; returns the outbox row id."""
    subject, page, text = render(settings, products, follow_up)
    row = EmailOutbox(
        kind=KIND, to_address=settings.email.admin_email, subject=subject, html=page, text=text,
        status=EmailStatus.queued.value, idempotency_key=idempotency_key,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    _enqueue_after_commit(session, row.id)
    return row.id


def _enqueue_after_commit(session: Session, outbox_id: int) -> None:
    pending = session.info.setdefault(_PENDING, [])
    if not pending:
        event.listen(session, "after_commit", _after_commit, once=True)
        event.listen(session, "after_rollback", _after_rollback, once=True)
    pending.append(outbox_id)


def _after_commit(session: Session) -> None:
    ids = session.info.pop(_PENDING, [])
    if not ids:
        return
    task = getattr(sys.modules.get("tasks"), SEND_TASK, None)
    if task is None:
        log.info("low-stock alert(s) %s queued in the outbox; no send task registered yet", ids)
        return
    for outbox_id in ids:
        try:
            task(outbox_id)
        except Exception:  # the row is committed; the outbox sweeper will send it
            log.exception("could not enqueue outbox row %s; the sweeper will pick it up",
                          outbox_id)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
