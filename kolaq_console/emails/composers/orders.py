"""The order kinds: confirmation, shipping notification, status update. Each goes to the
order's customer (unless the request names another address), with support as Reply-To."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from kolaq_console.config import Settings
from kolaq_console.emails.composers.base import Composition, composer
from kolaq_console.emails.request import REPLY_TO_HEADER, EmailRequest, validate_address
from kolaq_console.errors import NotFound, UserError
from kolaq_console.models import Customer, Order, OrderLine

STATUS_TEXT = {
    "pending": ("awaiting payment", "We have your order and are waiting for the payment."),
    "paid": ("payment received", "Your payment has arrived; we are preparing your order."),
    "processing": ("being prepared", "Your order is being packed in our workshop."),
    "shipped": ("shipped", "Your order has left our workshop and is on its way."),
    "delivered": ("delivered", "Your order has been delivered. Enjoy, and cheers!"),
    "cancelled": ("cancelled", "Your order has been cancelled. Any payment will be refunded."),
    "refunded": ("refunded", "Your payment has been refunded."),
}


def _order(session: Session, settings: Settings, request: EmailRequest):
    """(order, the base composition with the order's context) for an order kind."""
    number = request.order_number
    if not number:
        raise UserError("this email kind needs an order: give --order NUMBER")
    order = session.exec(select(Order).where(Order.number == number)).first()
    if order is None:
        raise NotFound(f"order {number!r} not found")
    customer = session.get(Customer, order.customer_id)
    lines = session.exec(
        select(OrderLine).where(OrderLine.order_id == order.id).order_by(col(OrderLine.id))
    ).all()
    context: dict[str, Any] = {
        "order": {
            "number": order.number,
            "status": order.status,
            "currency": order.currency or settings.shop.currency,
            "subtotal_minor": order.subtotal_minor,
            "shipping_minor": order.shipping_minor,
            "total_minor": order.total_minor,
            "created_at": order.created_at.astimezone(settings.shop.zone).strftime("%d %B %Y"),
        },
        "customer": {
            "name": customer.name if customer else "",
            "email": customer.email if customer else "",
        },
        "lines": [
            {
                "sku": line.sku,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price_minor": line.unit_price_minor,
                "total_minor": line.unit_price_minor * line.quantity,
            }
            for line in lines
        ],
        "address": dict(order.shipping_address or {}),
        **request.context,
    }
    to = validate_address(request.to or (customer.email if customer else None))
    return order, Composition(
        to=to, context=context, key="", headers={REPLY_TO_HEADER: settings.email.support_email},
        order_id=order.id,
    )


@composer("order_confirmation")
def order_confirmation(session: Session, settings: Settings, request: EmailRequest) -> Composition:
    order, composition = _order(session, settings, request)
    composition.key = f"order_confirmation/{order.number}"
    return composition


@composer("shipping_notification")
def shipping_notification(
    session: Session, settings: Settings, request: EmailRequest
) -> Composition:
    order, composition = _order(session, settings, request)
    if not order.tracking_number or not order.carrier:
        raise UserError(
            f"order {order.number} has no carrier/tracking number yet; "
            "a shipping notification needs both"
        )
    ctx = composition.context
    ctx.setdefault("carrier", order.carrier)
    ctx.setdefault("tracking_number", order.tracking_number)
    ctx.setdefault("tracking_url", order.tracking_url or "")
    composition.key = f"shipping_notification/{order.number}/{order.tracking_number}"
    return composition


@composer("order_status_update")
def order_status_update(
    session: Session, settings: Settings, request: EmailRequest
) -> Composition:
    order, composition = _order(session, settings, request)
    label, message = STATUS_TEXT.get(order.status, (order.status, ""))
    composition.context.setdefault("status_label", label)
    composition.context.setdefault("status_message",
                                   message or f"Your order is now {order.status}.")
    composition.key = f"order_status_update/{order.number}/{order.status}"
    return composition
