"""Consent per channel for SMS and WhatsApp (email consent is in consent.py).

- A customer gets SMS only with a phone number and `sms_consent`, WhatsApp only with
  `whatsapp_opt_in` (WhatsApp's own rule: the person opted in to messages from the business).
- A number that sent STOP (Twilio's opt-out keywords), or that Twilio refused with 21610, is
  recorded in `phone_opt_outs` for that channel and its customers' consent withdrawn; nothing
  is sent to it on that channel again until START. Checked when a message is queued and again
  just before it is sent.
"""

from __future__ import annotations

import functools

from sqlalchemy import bindparam
from sqlmodel import Session, col, delete, select

from kolaq_console.models import ActivityLog, Customer, PhoneOptOut, utcnow

CONSENT_FIELD = {"sms": "sms_consent", "whatsapp": "whatsapp_opt_in"}
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
START_WORDS = {"START", "UNSTOP", "YES", "OPTIN"}


def opt_out_of(session: Session, number: str, channel: str) -> PhoneOptOut | None:
    return session.exec(
        select(PhoneOptOut).where(PhoneOptOut.number == number, PhoneOptOut.channel == channel)
    ).first()


@functools.lru_cache(maxsize=1)
def _opted_statement():
    t = PhoneOptOut.__table__  # type: ignore[attr-defined]
    return (select(t.c.reason, t.c.created_at)
            .where(t.c.number == bindparam("b_number"), t.c.channel == bindparam("b_channel"))
            .limit(1))


def refusal(session: Session, channel: str, number: str,
            customer: Customer | None = None) -> str | None:
    """Why `number` may not get a message on `channel` now; None if it may."""
    opted = session.connection().execute(
        _opted_statement(), {"b_number": number, "b_channel": channel}).first()
    if opted is not None:
        reason, created = opted
        return f"{number} opted out of {channel} ({reason}, {created:%Y-%m-%d})"
    if customer is not None and not getattr(customer, CONSENT_FIELD[channel]):
        what = "consented to SMS" if channel == "sms" else "opted in to WhatsApp"
        return f"customer {customer.email} has not {what}"
    return None


def channels_allowed(session: Session, customer: Customer) -> list[str]:
    """The text channels this customer may be messaged on now."""
    if not customer.phone:
        return []
    return [c for c in CONSENT_FIELD if refusal(session, c, customer.phone, customer) is None]


def _customers_with(session: Session, number: str) -> list[Customer]:
    return list(session.exec(select(Customer).where(Customer.phone == number)).all())


def record_opt_out(session: Session, number: str, channel: str, *, reason: str, source: str,
                   actor: str = "recipient") -> bool:
    """`number` must get nothing more on `channel`; True if that is new. The caller commits."""
    changed = False
    if opt_out_of(session, number, channel) is None:
        session.add(PhoneOptOut(number=number, channel=channel, reason=reason, source=source))
        changed = True
    for customer in _customers_with(session, number):
        if getattr(customer, CONSENT_FIELD[channel]):
            setattr(customer, CONSENT_FIELD[channel], False)
            session.add(customer)
            changed = True
    if changed:
        session.add(ActivityLog(actor=actor, action=f"consent.{channel}_opt_out",
                                entity="phone", entity_id=number,
                                details={"reason": reason, "source": source}))
    return changed


def record_opt_in(session: Session, number: str, channel: str, *, source: str,
                  actor: str = "recipient") -> bool:
    """START from `number`: lift its opt-out and give its customers' consent back for this
    channel (they asked for messages). The caller commits."""
    result = session.execute(
        delete(PhoneOptOut).where(col(PhoneOptOut.number) == number,
                                  col(PhoneOptOut.channel) == channel)
    )
    changed = bool(result.rowcount)
    for customer in _customers_with(session, number):
        if not getattr(customer, CONSENT_FIELD[channel]):
            setattr(customer, CONSENT_FIELD[channel], True)
            session.add(customer)
            changed = True
    if changed:
        session.add(ActivityLog(actor=actor, action=f"consent.{channel}_opt_in", entity="phone",
                                entity_id=number, details={"source": source}))
    return changed


def set_customer_phone(session: Session, customer: Customer, phone: str | None, *,
                       sms: bool | None = None, whatsapp: bool | None = None,
                       actor: str = "operator") -> None:
    """Record a customer's number and consent (checkout, the console). The caller commits."""
    details: dict[str, object] = {}
    if phone != customer.phone:
        customer.phone, details["phone"] = phone, phone
    if sms is not None and sms != customer.sms_consent:
        customer.sms_consent, details["sms_consent"] = sms, sms
    if whatsapp is not None and whatsapp != customer.whatsapp_opt_in:
        customer.whatsapp_opt_in, details["whatsapp_opt_in"] = whatsapp, whatsapp
    if details:
        details["at"] = utcnow().isoformat()
        session.add(customer)
        session.add(ActivityLog(actor=actor, action="consent.phone", entity="customer",
                                entity_id=customer.email, details=details))
