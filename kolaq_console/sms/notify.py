"""Order notices by SMS and WhatsApp: the channels [notifications] lists for a kind, each only
if the customer allowed it. Queued in the caller's transaction; the caller enqueues the new
rows after its commit (`outbox.enqueue_after_commit`), as for email."""

from __future__ import annotations

import logging

from sqlmodel import Session

from kolaq_console import channel_consent
from kolaq_console.config import Settings
from kolaq_console.errors import UserError
from kolaq_console.models import ActivityLog, Customer, Order
from kolaq_console.sms import outbox
from kolaq_console.sms.kinds import CHANNELS

log = logging.getLogger(__name__)

# Which notice an order status sends (as the customer email does).
KIND_FOR_STATUS = {
    "paid": "order_confirmation",
    "shipped": "shipping_notification",
    "delivered": "order_status_update",
    "cancelled": "order_status_update",
    "refunded": "order_status_update",
}


def queue_order_texts(session: Session, settings: Settings, kind: str, order: Order,
                      customer: Customer | None, *, actor: str = "system") -> list[int]:
    """Queue `kind` for this order on every text channel configured and allowed; the ids of
    new rows. A channel that cannot be used (no template, no consent) is noted in the
    activity log and skipped: it never stops the status change."""
    new_ids: list[int] = []
    channels = [c for c in settings.notifications.channels(kind) if c in CHANNELS]
    if not channels or customer is None or not customer.phone:
        return new_ids
    for channel in channels:
        if channel_consent.refusal(session, channel, customer.phone, customer):
            continue  # no consent on this channel: the customer chose, nothing to note
        try:
            draft = outbox.build_message(session, settings, kind, channel=channel,
                                         order_number=order.number)
        except UserError as exc:
            session.add(ActivityLog(actor=actor, action="message.skipped", entity="order",
                                    entity_id=order.number,
                                    details={"kind": kind, "channel": channel,
                                             "reason": str(exc)}))
            log.warning("order %s: %s by %s not queued: %s", order.number, kind, channel, exc)
            continue
        queued = outbox.store(session, settings, draft)
        if queued.created:
            new_ids.append(queued.row.id)  # type: ignore[arg-type]
    return new_ids


def notify_order_status(session: Session, settings: Settings, order: Order,
                        status: str) -> list[int]:
    """The texts of an order's change to `status` (its row already says so); new row ids to
    enqueue after the caller's commit."""
    kind = KIND_FOR_STATUS.get(status)
    if kind is None:
        return []
    customer = session.get(Customer, order.customer_id)
    return queue_order_texts(session, settings, kind, order, customer)
