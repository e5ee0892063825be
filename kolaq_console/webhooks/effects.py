"""What each provider event does, inside the processing transaction.

- Payments (Paystack `charge.success`; Stripe `payment_intent.succeeded`,
  `checkout.session.completed`): find the order by reference; the amount and currency must
  match its total (else it is flagged for an operator and the order is marked for review,
  never fulfilled); then the order becomes paid through `orders.lifecycle` (stock, activity,
  confirmation email, once).
- Refunds (Paystack `refund.processed`; Stripe `charge.refunded`): a full refund moves the
  order to refunded (`return` events, a status email); a partial one is flagged.
- Delivery (Resend `email.delivered`, `email.delivery_delayed`, `email.bounced`,
  `email.complained`): the outbox row's delivery state; a hard bounce or a complaint puts the
  address on the suppression list.
- Anything else is kept and marked ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from kolaq_console import consent
from kolaq_console.config import Settings
from kolaq_console.emails.render import money
from kolaq_console.models import (
    OUTBOX_TAG,
    ActivityLog,
    EmailOutbox,
    Order,
    WebhookStatus,
    utcnow,
)
from kolaq_console.orders.lifecycle import change_status
from kolaq_console.webhooks.verify import Event

ACTOR = "webhook"


@dataclass
class Outcome:
    status: str
    note: str | None = None
    order_id: int | None = None
    email_id: int | None = None
    emails: list[int] = field(default_factory=list)  # outbox rows to enqueue after commit


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _find_order(session: Session, numbers: list[Any], references: list[Any]) -> Order | None:
    numbers = [str(n) for n in numbers if n]
    references = [str(r) for r in references if r]
    if not numbers and not references:
        return None
    return session.exec(
        select(Order).where(or_(col(Order.number).in_(numbers),
                                col(Order.payment_reference).in_(references)))
        .order_by(col(Order.id))
    ).first()


def _flag(session: Session, order: Order | None, event: Event, note: str,
          review: bool = False) -> Outcome:
    if order is not None:
        if review and order.payment_status != "paid":
            session.execute(update(Order).where(col(Order.id) == order.id)
                            .values(payment_status="review", updated_at=utcnow())
                            .execution_options(synchronize_session=False))
        session.add(ActivityLog(actor=ACTOR, action="order.flagged", entity="order",
                                entity_id=order.number,
                                details={"reason": note, "provider": event.provider,
                                         "event_id": event.event_id}))
    return Outcome(WebhookStatus.flagged.value, note, order.id if order else None)


def _pay(session: Session, settings: Settings, event: Event, order: Order | None,
         reference: str, amount: int | None, currency: str) -> Outcome:
    if order is None:
        return _flag(session, None, event, f"no order with reference {reference!r}")
    if order.payment_status == "paid" or order.paid_at is not None:
        return Outcome(WebhookStatus.processed.value, f"order {order.number} was already paid",
                       order.id)
    if order.status != "pending":
        return _flag(session, order, event,
                     f"payment for order {order.number}, which is {order.status}", review=True)
    expected = (order.total_minor, (order.currency or "").upper())
    if amount is None or (amount, currency.upper()) != expected:
        paid = money(amount, currency) if amount is not None else f"an unreadable amount {currency}"
        note = (f"amount mismatch: paid {paid}, order {order.number} is "
                f"{money(order.total_minor, order.currency)}")
        return _flag(session, order, event, note, review=True)
    change = change_status(
        session, settings, order, "paid", actor=ACTOR, source=f"{event.provider}:{event.event_id}",
        payment={"provider": event.provider, "reference": reference, "amount_minor": amount,
                 "currency": currency.upper()},
    )
    note = None if change.changed else f"order {order.number} was already paid"
    return Outcome(WebhookStatus.processed.value, note, order.id, emails=change.emails)


def _refund(session: Session, settings: Settings, event: Event, order: Order | None,
            reference: str, refunded: int | None, total: int | None) -> Outcome:
    if order is None:
        return _flag(session, None, event, f"refund for no known order (reference {reference!r})")
    if order.status == "refunded":
        return Outcome(WebhookStatus.processed.value, f"order {order.number} was already refunded",
                       order.id)
    full = total if total is not None else order.total_minor
    if refunded is None or refunded < full:
        shown = money(refunded, order.currency) if refunded is not None else "an unknown amount"
        return _flag(session, order, event, f"partial refund of {shown} on order "
                     f"{order.number}; an operator decides its status")
    if order.paid_at is None:
        return _flag(session, order, event, f"refund for order {order.number}, never paid")
    change = change_status(session, settings, order, "refunded", actor=ACTOR,
                           source=f"{event.provider}:{event.event_id}")
    return Outcome(WebhookStatus.processed.value, None, order.id, emails=change.emails)


def paystack(session: Session, settings: Settings, event: Event) -> Outcome:
    data = _dict(event.payload.get("data"))
    metadata = _dict(data.get("metadata"))
    if event.event_type == "charge.success":
        if data.get("status") not in (None, "success"):
            return Outcome(WebhookStatus.ignored.value, f"charge status {data.get('status')!r}")
        reference = str(data.get("reference") or "")
        order = _find_order(session, [metadata.get("order_number")], [reference])
        return _pay(session, settings, event, order, reference, _int(data.get("amount")),
                    str(data.get("currency") or ""))
    if event.event_type == "refund.processed":
        transaction = _dict(data.get("transaction"))
        reference = str(data.get("transaction_reference") or transaction.get("reference") or "")
        order = _find_order(session, [metadata.get("order_number")], [reference])
        return _refund(session, settings, event, order, reference, _int(data.get("amount")),
                       _int(transaction.get("amount")))
    return Outcome(WebhookStatus.ignored.value, f"paystack {event.event_type} is not acted on")


def stripe(session: Session, settings: Settings, event: Event) -> Outcome:
    obj = _dict(_dict(event.payload.get("data")).get("object"))
    metadata = _dict(obj.get("metadata"))
    kind = event.event_type
    if kind == "payment_intent.succeeded":
        order = _find_order(session, [metadata.get("order_number")], [obj.get("id")])
        amount = _int(obj.get("amount_received")) or _int(obj.get("amount"))
        return _pay(session, settings, event, order, str(obj.get("id") or ""), amount,
                    str(obj.get("currency") or ""))
    if kind == "checkout.session.completed":
        if obj.get("payment_status") != "paid":
            return Outcome(WebhookStatus.ignored.value,
                           f"checkout payment_status is {obj.get('payment_status')!r}, not paid")
        order = _find_order(session, [metadata.get("order_number"),
                                      obj.get("client_reference_id")],
                            [obj.get("id"), obj.get("payment_intent")])
        return _pay(session, settings, event, order, str(obj.get("payment_intent")
                                                         or obj.get("id") or ""),
                    _int(obj.get("amount_total")), str(obj.get("currency") or ""))
    if kind == "charge.refunded":
        reference = str(obj.get("payment_intent") or obj.get("id") or "")
        order = _find_order(session, [metadata.get("order_number")],
                            [obj.get("payment_intent"), obj.get("id")])
        return _refund(session, settings, event, order, reference,
                       _int(obj.get("amount_refunded")), _int(obj.get("amount")))
    return Outcome(WebhookStatus.ignored.value, f"stripe {kind} is not acted on")


# Later news never replaces stronger news: a delivery_delayed arriving after delivered, or a
# delivered after a bounce, leaves the row as it is.
DELIVERY_RANK = {"delayed": 1, "soft_bounced": 2, "delivered": 3, "bounced": 4, "complained": 5}
RESEND_TYPES = {
    "email.delivered": "delivered",
    "email.delivery_delayed": "delayed",
    "email.bounced": "bounced",
    "email.complained": "complained",
}


def resend(session: Session, settings: Settings, event: Event) -> Outcome:
    state = RESEND_TYPES.get(event.event_type)
    if state is None:
        return Outcome(WebhookStatus.ignored.value, f"resend {event.event_type} is not acted on")
    data = _dict(event.payload.get("data"))
    bounce = _dict(data.get("bounce"))
    detail = None
    if state == "bounced":
        # email.bounced means the receiving server rejected it for good; a bounce explicitly
        # typed otherwise is a soft one and does not block the address.
        if str(bounce.get("type") or "permanent").lower() not in ("permanent", "hard"):
            state = "soft_bounced"
        detail = " / ".join(str(bounce[k]) for k in ("type", "subType", "message")
                            if bounce.get(k)) or None
    recipients = data.get("to")
    addresses = [recipients] if isinstance(recipients, str) else [
        a for a in (recipients or []) if isinstance(a, str)]

    blocked = []
    if state in ("bounced", "complained"):
        reason = "bounced" if state == "bounced" else "complained"
        for address in addresses:
            if consent.suppress(session, address, reason, source=f"resend:{event.event_id}",
                                actor=ACTOR):
                blocked.append(address)

    row = _sent_row(session, data)
    if row is None:
        note = f"no outbox row has provider id {data.get('email_id')!r}"
        if blocked:
            return Outcome(WebhookStatus.processed.value, f"{note}; suppressed "
                           f"{', '.join(blocked)}")
        return Outcome(WebhookStatus.ignored.value, note)
    current = DELIVERY_RANK.get(row.delivery_status or "", 0)
    if DELIVERY_RANK[state] >= current:
        session.execute(
            update(EmailOutbox).where(col(EmailOutbox.id) == row.id)
            .values(delivery_status=state, delivery_detail=detail,
                    delivery_updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        note = None
    else:
        note = f"kept {row.delivery_status}: {state} arrived after it"
    return Outcome(WebhookStatus.processed.value, note, row.order_id, row.id)


def _sent_row(session: Session, data: dict[str, Any]) -> EmailOutbox | None:
    """The outbox row an email event is about: by the row id we sent as its tag, else (emails
    sent before tags, migration 0018) by the provider id. A tagged row counts only if it holds
    the event's provider id: another database sending through the same account (staging) has
    rows with the same ids."""
    provider_id = str(data.get("email_id") or "")
    if not provider_id:
        return None
    tagged = _outbox_tag(data.get("tags"))
    if tagged is not None:
        row = session.get(EmailOutbox, tagged)
        if row is not None and row.provider_message_id == provider_id:
            return row
    return session.exec(by_untagged_provider_id(provider_id)).first()


def by_untagged_provider_id(provider_id: str):
    """Rows sent without the tag, by provider id (ix_email_outbox_provider_message_id's terms)."""
    return select(EmailOutbox).where(EmailOutbox.provider_message_id == provider_id,
                                     col(EmailOutbox.provider_tagged).is_(None))


def _outbox_tag(tags: Any) -> int | None:
    """OUTBOX_TAG's value from an event's tags (Resend writes them as an object, {"name":
    "value"}), if it can be a row id: anything else is looked up by provider id."""
    value = tags.get(OUTBOX_TAG) if isinstance(tags, dict) else None
    if not (isinstance(value, str) and 0 < len(value) <= 10 and value.isascii()
            and value.isdigit()):
        return None
    return int(value) if 0 < int(value) <= MAX_ROW_ID else None


MAX_ROW_ID = 2**31 - 1  # an id column's range (PostgreSQL integer)


HANDLERS = {"paystack": paystack, "stripe": stripe, "resend": resend}


def apply(session: Session, settings: Settings, event: Event) -> Outcome:
    return HANDLERS[event.provider](session, settings, event)
