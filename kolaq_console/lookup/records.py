"""One record with its whole story, for the console's record screens and `lookup`: an order
(status, lines, payment, every email with its state, the failed jobs about it, activity), a
customer (orders, emails, consent per channel, suppression), a product (stock, events,
adjustments, activity).

Each reads a bounded number of rows through indexes (migration 0011), so a record costs the
same in a shop of any size. Lists are newest first.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from kolaq_console.errors import NotFound
from kolaq_console.inventory.adjust import history
from kolaq_console.jobs.failed import FailedJobSummary, calls_about
from kolaq_console.lookup.search import ORD, C, P, normalise
from kolaq_console.models import (
    ActivityLog,
    EmailOutbox,
    PhoneOptOut,
    Suppression,
    TextMessage,
    WebhookEvent,
)
from kolaq_console.orders.queries import email_summary, order_detail

E = EmailOutbox.__table__  # type: ignore[attr-defined]
T = TextMessage.__table__  # type: ignore[attr-defined]
W = WebhookEvent.__table__  # type: ignore[attr-defined]
A = ActivityLog.__table__  # type: ignore[attr-defined]
LIMIT = 50


def exactly(column: Any, value: str, dialect: str) -> Any:
    """lower(column) = value (lower case), through the prefix index of migration 0011."""
    expr = func.lower(column)
    return (expr.collate("C") if dialect == "postgresql" else expr) == value


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def job_summary(job: FailedJobSummary) -> dict[str, Any]:
    return job.as_dict()


def _jobs_about(session: Session, email_ids: list[int], batch_ids: list[int],
                text_ids: list[int], event_ids: list[int]) -> list[dict[str, Any]]:
    jobs = calls_about(session, {"send_email": email_ids, "send_email_batch": batch_ids,
                                 "send_text": text_ids, "process_webhook": event_ids},
                       limit=LIMIT)
    return [job_summary(j) for j in jobs]


def _texts(session: Session, where: Any) -> list[dict[str, Any]]:
    rows = session.execute(
        select(T.c.id, T.c.channel, T.c.kind, T.c.to_number, T.c.status, T.c.delivery_status,
               T.c.attempts, T.c.last_error, T.c.created_at)
        .where(where).order_by(T.c.id.desc()).limit(LIMIT)
    ).all()
    return [dict(r._mapping) for r in rows]


def order_number(session: Session, term: str) -> str | None:
    """The order a term names exactly (case-insensitive), or None."""
    return session.execute(
        select(ORD.c.number).where(exactly(ORD.c.number, normalise(term), _dialect(session)))
    ).scalar()


def order_record(session: Session, number: str) -> dict[str, Any]:
    """`orders show` plus the text messages and the failed jobs about the order; emails
    and activity newest first."""
    found = order_number(session, number)
    if found is None:
        raise NotFound(f"no order {number!r}")
    record = order_detail(session, found, activity_limit=LIMIT)
    order_id = session.execute(select(ORD.c.id).where(ORD.c.number == found)).scalar_one()
    record["emails"] = list(reversed(record["emails"]))[:LIMIT]
    batch_ids = list(session.execute(
        select(E.c.batch_id).where(E.c.order_id == order_id, E.c.batch_id.is_not(None))
    ).scalars())
    record["texts"] = _texts(session, T.c.order_id == order_id)
    record["failed_jobs"] = _jobs_about(
        session, [e["id"] for e in record["emails"]], batch_ids,
        [t["id"] for t in record["texts"]], [w["id"] for w in record["webhooks"]])
    return record


def _consent(session: Session, customer: Any, suppression: Any) -> dict[str, Any]:
    opt_outs = {}
    if customer.phone:
        opt_outs = {o.channel: o.reason for o in session.execute(
            select(PhoneOptOut.channel, PhoneOptOut.reason)  # type: ignore[call-overload]
            .where(PhoneOptOut.number == customer.phone)).all()}
    blocked = suppression["reason"] if suppression else None
    return {
        "email": {"marketing": bool(customer.marketing_consent),
                  "unsubscribed_at": customer.unsubscribed_at,
                  "blocked": blocked},
        "sms": {"consent": bool(customer.sms_consent), "opted_out": opt_outs.get("sms")},
        "whatsapp": {"consent": bool(customer.whatsapp_opt_in),
                     "opted_out": opt_outs.get("whatsapp")},
    }


def customer_email(session: Session, term: str) -> str | None:
    """The customer whose address a term is (case-insensitive), as stored; or None."""
    return session.execute(
        select(C.c.email).where(func.lower(C.c.email) == normalise(term))
    ).scalar()


def address_story(session: Session, address: str) -> dict[str, Any]:
    """The emails sent to an address and the failed jobs about them (customer or not)."""
    rows = session.execute(
        select(EmailOutbox).where(func.lower(E.c.to_address) == normalise(address))
        .order_by(E.c.id.desc()).limit(LIMIT)
    ).scalars().all()
    emails = [email_summary(r) for r in rows]
    batch_ids = [r.batch_id for r in rows if r.batch_id is not None]
    return {"emails": emails, "batch_ids": batch_ids}


def customer_summary(session: Session, email: str) -> dict[str, Any]:
    """Who the customer is and what they agreed to: address, name, phone, consent per
    channel, suppression (no orders or messages)."""
    found = customer_email(session, email)
    if found is None:
        raise NotFound(f"no customer with address {email!r}")
    customer = session.execute(select(C).where(C.c.email == found)).one()
    suppression_row = session.execute(
        select(Suppression.reason, Suppression.source, Suppression.created_at)  # type: ignore[call-overload]
        .where(func.lower(Suppression.email) == normalise(found))
    ).first()
    suppression = dict(suppression_row._mapping) if suppression_row else None
    return {"id": customer.id, "email": found, "name": customer.name, "phone": customer.phone,
            "created_at": customer.created_at,
            "consent": _consent(session, customer, suppression), "suppression": suppression}


def customer_record(session: Session, email: str) -> dict[str, Any]:
    head = customer_summary(session, email)
    customer_id, found = head.pop("id"), head["email"]
    address = normalise(found)
    orders = session.execute(
        select(ORD.c.number, ORD.c.status, ORD.c.payment_status, ORD.c.currency,
               ORD.c.total_minor, ORD.c.created_at)
        .where(ORD.c.customer_id == customer_id).order_by(ORD.c.id.desc()).limit(LIMIT)
    ).all()
    story = address_story(session, address)
    texts = _texts(session, T.c.customer_id == customer_id)
    activity = session.execute(
        select(A.c.created_at, A.c.actor, A.c.action, A.c.details)
        .where(A.c.entity == "customer", A.c.entity_id.in_({address, found}))
        .order_by(A.c.id.desc()).limit(LIMIT)
    ).all()
    return {
        **head,
        "orders": [dict(r._mapping) for r in orders],
        "emails": story["emails"],
        "texts": texts,
        "failed_jobs": _jobs_about(session, [e["id"] for e in story["emails"]],
                                   story["batch_ids"], [t["id"] for t in texts], []),
        "activity": [{"at": a.created_at, "actor": a.actor, "action": a.action,
                      "details": a.details} for a in activity],
    }


def product_sku(session: Session, term: str) -> str | None:
    """The product a term names exactly by SKU (case-insensitive), or None."""
    return session.execute(
        select(P.c.sku).where(exactly(P.c.sku, normalise(term), _dialect(session)))
    ).scalar()


def product_record(session: Session, sku: str, default_threshold: int) -> dict[str, Any]:
    """`inventory history` plus the effective threshold, adjustments and failed jobs."""
    found = product_sku(session, sku)
    if found is None:
        raise NotFound(f"no product with SKU {sku!r}")
    record = history(session, found, limit=LIMIT)
    threshold = record["threshold"]
    record["threshold"] = default_threshold if threshold is None else threshold
    record["threshold_is_default"] = threshold is None
    record["adjustments"] = [e for e in record["events"] if e["kind"] == "adjustment"]
    record["failed_jobs"] = [job_summary(j) for j in calls_about(
        session, {"reconcile_inventory": [found]}, limit=LIMIT)]
    return record
