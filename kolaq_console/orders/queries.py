"""Reading orders for the CLI and the console: a list, and one order with its whole story
(lines, payment, every email with its delivery state, the webhook events about it, activity)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from kolaq_console.errors import UserError
from kolaq_console.models import (
    ActivityLog,
    Customer,
    EmailOutbox,
    Order,
    OrderLine,
    WebhookEvent,
)
from kolaq_console.orders.lifecycle import STATUSES, get_order


def _check_status(status: str | None) -> None:
    if status and status not in STATUSES:
        raise UserError(f"unknown order status {status!r}; expected one of: {', '.join(STATUSES)}")


def list_orders(session: Session, status: str | None = None, limit: int = 50,
                search: str | None = None) -> list[dict[str, Any]]:
    """Newest first: one summary per order."""
    _check_status(status)
    query = (select(Order, Customer.email, Customer.name)
             .join(Customer, col(Customer.id) == col(Order.customer_id), isouter=True))
    if status:
        query = query.where(Order.status == status)
    if search:
        like = f"%{search.strip().lower()}%"
        query = query.where(func.lower(col(Order.number)).like(like)
                            | func.lower(col(Customer.email)).like(like))
    rows = session.exec(query.order_by(col(Order.created_at).desc(), col(Order.id).desc())
                        .limit(limit)).all()
    return [summary(order, email, name) for order, email, name in rows]


def summary(order: Order, customer_email: str | None, customer_name: str | None = None
            ) -> dict[str, Any]:
    return {
        "number": order.number,
        "status": order.status,
        "customer_email": customer_email,
        "customer_name": customer_name,
        "currency": order.currency,
        "total_minor": order.total_minor,
        "payment_status": order.payment_status,
        "payment_reference": order.payment_reference,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }


def email_summary(row: EmailOutbox) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "to": row.to_address,
        "subject": row.subject,
        "status": row.status,
        "delivery_status": row.delivery_status,
        "delivery_detail": row.delivery_detail,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "sent_at": row.sent_at,
        "delivery_updated_at": row.delivery_updated_at,
    }


def event_summary(event: WebhookEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "provider": event.provider,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "status": event.status,
        "error": event.error,
        "attempts": event.attempts,
        "received_at": event.received_at,
        "processed_at": event.processed_at,
    }


def order_detail(session: Session, number: str, activity_limit: int = 100) -> dict[str, Any]:
    """Everything about one order (`orders show --json`, the console's detail)."""
    order = get_order(session, number)
    customer = session.get(Customer, order.customer_id)
    lines = session.exec(select(OrderLine).where(OrderLine.order_id == order.id)
                         .order_by(col(OrderLine.id))).all()
    emails = session.exec(select(EmailOutbox).where(EmailOutbox.order_id == order.id)
                          .order_by(col(EmailOutbox.id))).all()
    events = session.exec(select(WebhookEvent).where(WebhookEvent.order_id == order.id)
                          .order_by(col(WebhookEvent.id))).all()
    activity = session.exec(
        select(ActivityLog).where(ActivityLog.entity == "order",
                                  ActivityLog.entity_id == order.number)
        .order_by(col(ActivityLog.id).desc()).limit(activity_limit)
    ).all()
    return {
        **summary(order, customer.email if customer else None,
                  customer.name if customer else None),
        "subtotal_minor": order.subtotal_minor,
        "shipping_minor": order.shipping_minor,
        "payment": {
            "provider": order.payment_provider,
            "reference": order.payment_reference,
            "status": order.payment_status,
            "paid_at": order.paid_at,
        },
        "shipping": {
            "carrier": order.carrier,
            "tracking_number": order.tracking_number,
            "tracking_url": order.tracking_url,
            "address": dict(order.shipping_address or {}),
        },
        "lines": [
            {"sku": line.sku, "name": line.name, "quantity": line.quantity,
             "unit_price_minor": line.unit_price_minor,
             "total_minor": line.unit_price_minor * line.quantity}
            for line in lines
        ],
        "emails": [email_summary(e) for e in emails],
        "webhooks": [event_summary(e) for e in events],
        "activity": [
            {"at": a.created_at, "actor": a.actor, "action": a.action, "details": a.details}
            for a in activity
        ],
    }
