"""Order status changes: validated transitions, and the effects each change has, once.

A change is one conditional UPDATE (`WHERE status = <the status we read>`), so two writers (an
operator and a payment webhook, two workers) cannot both make it: the loser sees the new status
and changes nothing. With it, in the same transaction: the activity-log entry, the stock events
(paid -> `sale` per line; refunded -> `return` per line, if it was paid) and the customer email
(paid -> confirmation; shipped -> shipping notification; delivered, cancelled, refunded ->
status update), whose key makes it once per order and status. The caller commits, then
enqueues `Change.emails` (notify.enqueue_after_commit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import update
from sqlmodel import Session, col, select

from kolaq_console import notify
from kolaq_console.config import Settings
from kolaq_console.errors import NotFound, UserError
from kolaq_console.inventory.stock import record_event
from kolaq_console.models import (
    ActivityLog,
    Customer,
    InventoryEventKind,
    Order,
    OrderLine,
    OrderStatus,
    utcnow,
)

STATUSES = tuple(s.value for s in OrderStatus)
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "pending": ("paid", "cancelled"),
    "paid": ("processing", "shipped", "cancelled", "refunded"),
    "processing": ("shipped", "cancelled", "refunded"),
    "shipped": ("delivered", "refunded"),
    "delivered": ("refunded",),
    "cancelled": ("refunded",),  # only an order that was paid
    "refunded": (),
}
CUSTOMER_EMAIL = {
    "paid": "order_confirmation",
    "shipped": "shipping_notification",
    "delivered": "order_status_update",
    "cancelled": "order_status_update",
    "refunded": "order_status_update",
}


class Conflict(UserError):
    """The order changed while we were changing it (another writer won)."""


def check_tracking_url(url: str | None) -> str | None:
    """The tracking link as stored: None when blank, else an http(s) address with a host of
    at most 500 characters. Anything else is refused: the email's button would lead nowhere
    (its href becomes '#') while the text and SMS showed the bad link."""
    value = (url or "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or " " in value:
        raise UserError(f"tracking link {value[:80]!r} is not a web address: give the full "
                        "https://… link, or none")
    if len(value) > 500:
        raise UserError(f"tracking link is {len(value)} characters; at most 500")
    return value


@dataclass
class Change:
    order: Order
    old: str
    new: str
    changed: bool
    emails: list[int] = field(default_factory=list)  # outbox rows to enqueue after commit
    texts: list[int] = field(default_factory=list)  # SMS/WhatsApp rows (enqueued on commit)
    stock_events: int = 0

    def describe(self) -> str:
        if not self.changed:
            return f"order {self.order.number} is already {self.new}; nothing changed"
        sent = f", {len(self.emails)} email(s) queued" if self.emails else ""
        sent += f", {len(self.texts)} text message(s) queued" if self.texts else ""
        return f"order {self.order.number}: {self.old} -> {self.new}{sent}"


def get_order(session: Session, number: str) -> Order:
    order = session.exec(select(Order).where(Order.number == number.strip())).first()
    if order is None:
        raise NotFound(f"order {number!r} not found")
    return order


def check_transition(order: Order, new: str) -> None:
    if new not in STATUSES:
        raise UserError(f"unknown order status {new!r}; expected one of: {', '.join(STATUSES)}")
    allowed = TRANSITIONS.get(order.status, ())
    if new not in allowed:
        choices = ", ".join(allowed) or "none (it is final)"
        raise UserError(f"order {order.number} cannot go from {order.status} to {new}; "
                        f"allowed: {choices}")
    if order.status == "cancelled" and new == "refunded" and order.paid_at is None:
        raise UserError(f"order {order.number} was never paid; there is nothing to refund")


def change_status(
    session: Session,
    settings: Settings,
    order: Order,
    new: str,
    *,
    actor: str,
    source: str = "operator",
    note: str | None = None,
    carrier: str | None = None,
    tracking: str | None = None,
    tracking_url: str | None = None,
    payment: dict[str, Any] | None = None,
) -> Change:
    """Move `order` to `new` with its effects (see the module doc); the caller commits.

    Asking for the status the order already has changes nothing and sends nothing.
    `payment` (provider, reference, amount_minor, currency) is recorded when it becomes paid.
    """
    new = new.strip().lower()
    old = order.status
    if new == old:
        return Change(order, old, new, changed=False)
    check_transition(order, new)
    now = utcnow()
    values: dict[str, Any] = {"status": new, "updated_at": now}
    if new == "shipped":
        carrier = (carrier or order.carrier or "").strip()
        tracking = (tracking or order.tracking_number or "").strip()
        if not carrier or not tracking:
            raise UserError(f"order {order.number}: shipping needs a carrier and a tracking "
                            "number (--carrier C --tracking T)")
        values.update(carrier=carrier, tracking_number=tracking)
        if tracking_url is not None:
            values["tracking_url"] = check_tracking_url(tracking_url)
    if new == "paid":
        values.update(payment_status="paid", paid_at=now)
        if payment:
            values["payment_provider"] = payment.get("provider") or order.payment_provider
            values["payment_reference"] = order.payment_reference or payment.get("reference")
    if new == "refunded":
        values["payment_status"] = "refunded"

    won = session.execute(
        update(Order).where(col(Order.id) == order.id, col(Order.status) == old)
        .values(**values).execution_options(synchronize_session=False)
    ).rowcount
    if not won:
        session.refresh(order)
        if order.status == new:
            return Change(order, old, new, changed=False)
        raise Conflict(f"order {order.number} changed to {order.status} meanwhile; "
                       "look at it again")
    session.refresh(order)
    change = Change(order, old, new, changed=True)

    lines = session.exec(select(OrderLine).where(OrderLine.order_id == order.id)
                         .order_by(col(OrderLine.id))).all()
    if new == "paid":
        for line in lines:
            record_event(session, line.product_id, -line.quantity, InventoryEventKind.sale.value,
                         reference=order.number, note=f"order {order.number} paid", actor=actor)
        change.stock_events = len(lines)
    if new == "refunded" and order.paid_at is not None:
        for line in lines:
            record_event(session, line.product_id, line.quantity,
                         InventoryEventKind.return_.value, reference=order.number,
                         note=f"order {order.number} refunded", actor=actor)
        change.stock_events = len(lines)

    details: dict[str, Any] = {"from": old, "to": new, "source": source}
    if note:
        details["note"] = note
    if new == "shipped":
        details.update(carrier=order.carrier, tracking=order.tracking_number)
    if payment:
        details["payment"] = payment
    session.add(ActivityLog(actor=actor, action="order.status", entity="order",
                            entity_id=order.number, details=details))

    kind = CUSTOMER_EMAIL.get(new)
    if kind:
        customer = session.get(Customer, order.customer_id)
        if customer is not None and "email" in settings.notifications.channels(kind):
            queued = notify.queue_order_email(session, settings, kind, order.number,
                                              to=customer.email, actor=actor)
            if queued.created and queued.row_id is not None:
                change.emails.append(queued.row_id)
        # ...and by SMS / WhatsApp where [notifications] says so and the customer allowed it;
        # their send jobs are enqueued when this transaction commits.
        from kolaq_console.sms import notify as texts
        from kolaq_console.sms.outbox import enqueue_when_committed

        change.texts = texts.queue_order_texts(session, settings, kind, order, customer,
                                               actor=actor)
        enqueue_when_committed(session, change.texts)
    return change


def set_status(session: Session, settings: Settings, number: str, new: str, *, actor: str,
               note: str | None = None, carrier: str | None = None,
               tracking: str | None = None, tracking_url: str | None = None) -> Change:
    """An operator's status change (CLI, console): commits, then enqueues its email."""
    order = get_order(session, number)
    change = change_status(session, settings, order, new, actor=actor, note=note,
                           carrier=carrier, tracking=tracking, tracking_url=tracking_url,
                           payment={"provider": "manual"} if new == "paid" else None)
    session.commit()
    notify.enqueue_after_commit(change.emails)
    return change
