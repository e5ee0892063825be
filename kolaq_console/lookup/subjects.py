"""What a failed job or an email is about: its email, order, customer and product, so every
view can link to the others. Which record a job names (the outbox row of a send, the event of
a webhook, the SKU of a reconcile) is read by kolaq_console.jobs.subjects.target_of, the one
place that knows the tasks' arguments; here that record is followed to its order, customer and
product."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import func, select
from sqlmodel import Session

from kolaq_console.errors import NotFound
from kolaq_console.jobs.failed import F, calls_about
from kolaq_console.jobs.subjects import target_of
from kolaq_console.lookup.search import ORD, C
from kolaq_console.models import (
    EmailOutbox,
    OrderLine,
    Product,
    TextMessage,
    WebhookEvent,
)

E = EmailOutbox.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Subject:
    email_id: int | None = None
    order_number: str | None = None
    customer_email: str | None = None
    sku: str | None = None
    job_ids: tuple[int, ...] = ()  # failed jobs about it, newest first (emails only)


def _order(session: Session, order_id: int | None) -> Subject:
    if order_id is None:
        return Subject()
    row = session.execute(
        select(ORD.c.number, C.c.email).join(C, C.c.id == ORD.c.customer_id, isouter=True)
        .where(ORD.c.id == order_id)
    ).first()
    if row is None:
        return Subject()
    sku = session.execute(
        select(OrderLine.sku).where(OrderLine.order_id == order_id)  # type: ignore[call-overload]
        .order_by(OrderLine.id).limit(1)
    ).scalar()
    return Subject(order_number=row.number, customer_email=row.email, sku=sku)


def _customer_of(session: Session, address: str | None) -> str | None:
    if not address:
        return None
    return session.execute(
        select(C.c.email).where(func.lower(C.c.email) == address.strip().lower())
    ).scalar()


def email_subject(session: Session, email_id: int) -> Subject:
    """An outbox row's order, customer (the order's, else the recipient if a customer) and
    the failed jobs about its sending."""
    row = session.execute(
        select(E.c.order_id, E.c.to_address, E.c.batch_id).where(E.c.id == email_id)
    ).first()
    if row is None:
        raise NotFound(f"email #{email_id} not found")
    about = _order(session, row.order_id)
    calls: dict[str, list] = {"send_email": [email_id]}
    if row.batch_id is not None:
        calls["send_email_batch"] = [row.batch_id]
    jobs = calls_about(session, calls, limit=20)
    return replace(about, email_id=email_id,
                   customer_email=about.customer_email or _customer_of(session, row.to_address),
                   job_ids=tuple(j.id for j in jobs))


def job_subject(session: Session, job_id: int) -> Subject:
    """What a ledger entry is about, as far as its stored call says; unknown parts None."""
    row = session.execute(select(F.c.task_name, F.c.args).where(F.c.id == job_id)).first()
    if row is None:
        raise NotFound(f"no failed job #{job_id}")
    target = target_of(row.task_name, row.args)
    if target is None:
        return Subject()
    kind, key = target.kind, target.key
    if kind == "email" and isinstance(key, int):
        try:
            return email_subject(session, key)
        except NotFound:
            return Subject()
    if kind == "batch":
        member = session.execute(
            select(E.c.id).where(E.c.batch_id == key).order_by(E.c.id).limit(1)).scalar()
        return Subject() if member is None else email_subject(session, member)
    if kind == "text":
        text = session.get(TextMessage, key)
        if text is None:
            return Subject()
        about = _order(session, text.order_id)
        if about.customer_email is None and text.customer_id is not None:
            email = session.execute(select(C.c.email).where(C.c.id == text.customer_id)).scalar()
            about = replace(about, customer_email=email)
        return about
    if kind == "webhook":
        event = session.get(WebhookEvent, key)
        if event is None:
            return Subject()
        about = _order(session, event.order_id)
        return replace(about, email_id=event.email_id) if event.email_id else about
    if kind == "product" and key is not None:
        found = session.execute(select(Product.sku).where(Product.sku == key)).scalar()  # type: ignore[call-overload]
        return Subject(sku=found)
    return Subject()
