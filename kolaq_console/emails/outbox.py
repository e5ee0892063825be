"""The email outbox: every email is a row before it is a job.

`queue_email` validates, renders once, inserts the row (status `queued`, a deterministic
idempotency key), commits, then enqueues a send job carrying only the row id. The same logical
email queued twice returns the existing row. The row is the record: a job lost with a crashed
worker is found by `sweep_stale` once its lease has passed, and sent again under the same key,
which the provider deduplicates.

Longer than ~400 lines for now: `build_email`'s branch per kind is to become one composer per
kind behind an email request object (issue 9, item 4), which takes it under.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, or_, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, col, select

from kolaq_console import dispatch
from kolaq_console.config import Settings
from kolaq_console.db import session_scope
from kolaq_console.emails.render import KINDS, Rendered, markdown_html, render
from kolaq_console.errors import NotFound, UserError
from kolaq_console.models import (
    ActivityLog,
    Customer,
    EmailOutbox,
    EmailStatus,
    Order,
    OrderLine,
    utcnow,
)
from kolaq_console.sqlutil import begin_write, upsert_insert

log = logging.getLogger(__name__)

ORDER_KINDS = ("order_confirmation", "shipping_notification", "order_status_update")
MAX_KEY_LENGTH = 256
MAX_SUBJECT_CHARS = 200  # what a person types; the stored (rendered) subject fits SUBJECT_COLUMN
SUBJECT_COLUMN = 300  # email_outbox.subject
OPEN_STATUSES = (EmailStatus.queued.value, EmailStatus.sending.value)

# Envelope headers kept in the row's `headers` so every attempt sends byte-identical requests
# (the provider refuses a reused idempotency key with a different body).
FROM_HEADER = "From"
REPLY_TO_HEADER = "Reply-To"

STATUS_TEXT = {
    "pending": ("awaiting payment", "We have your order and are waiting for the payment."),
    "paid": ("payment received", "Your payment has arrived; we are preparing your order."),
    "processing": ("being prepared", "Your order is being packed in our workshop."),
    "shipped": ("shipped", "Your order has left our workshop and is on its way."),
    "delivered": ("delivered", "Your order has been delivered. Enjoy, and cheers!"),
    "cancelled": ("cancelled", "Your order has been cancelled. Any payment will be refunded."),
    "refunded": ("refunded", "Your payment has been refunded."),
}


@dataclass
class EmailDraft:
    """A validated, rendered email that is not stored yet (what `email preview` shows)."""

    kind: str
    to: str
    subject: str
    html: str
    text: str
    idempotency_key: str
    headers: dict[str, str] = field(default_factory=dict)
    order_id: int | None = None
    broadcast_id: int | None = None


@dataclass
class Queued:
    row: EmailOutbox
    created: bool  # False: the same logical email was already queued; this is that row


# --- validation --------------------------------------------------------------------------------


def validate_address(
    value: str | None, what: str = "recipient", *, configured: bool = False
) -> str:
    """A normalised address, or a UserError naming what was wrong. No DNS look-ups.
    `configured` (addresses from settings, e.g. the admin's) also accepts special-use domains
    `.test` (test setups); addresses from users must not use special-use domains."""
    if not value or not value.strip():
        raise UserError(f"{what} address is missing")
    try:
        return validate_email(
            value.strip(), check_deliverability=False, test_environment=configured
        ).normalized
    except EmailNotValidError as exc:
        raise UserError(f"invalid {what} address {value.strip()!r}: {exc}") from None


@functools.lru_cache(maxsize=16)
def validate_sender(value: str) -> str:
    """`Name <addr>` or a bare address, as configured in [email] from_address."""
    _, addr = parseaddr(value)
    try:
        validate_email(addr, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise UserError(f"[email] from_address {value!r} is not a valid sender: {exc}") from None
    return value


_LINE_BREAKS = frozenset("\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def validate_subject(subject: str | None, kind: str) -> str:
    """A subject as typed: one line, at most MAX_SUBJECT_CHARS characters, not empty."""
    subject = (subject or "").strip()
    if not subject:
        raise UserError(f"a {kind} email needs a subject (--subject)")
    if any(c in _LINE_BREAKS for c in subject):
        raise UserError("the subject must be one line: it contains a line break")
    if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in subject):
        raise UserError("the subject contains a control character")
    if len(subject) > MAX_SUBJECT_CHARS:
        raise UserError(
            f"the subject is {len(subject):,} characters; at most {MAX_SUBJECT_CHARS}"
        )
    return subject


def body_limit_error(size: int, limit: int, what: str = "the body") -> UserError:
    return UserError(
        f"{what} is {size:,} bytes; at most {limit:,} bytes ([email] max_body_bytes)"
    )


def validate_body(body: str | None, settings: Settings) -> str:
    """A body as typed (text or Markdown), within [email] max_body_bytes as UTF-8."""
    body = body or ""
    limit = settings.email.max_body_bytes
    # 4 bytes per character at most: most bodies are measured without encoding them
    if len(body) * 4 > limit:
        size = len(body.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise body_limit_error(size, limit)
    return body


def validate_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or any(ord(c) < 32 for c in key):
        raise UserError(
            f"idempotency key must be 1-{MAX_KEY_LENGTH} printable characters, got {key!r:.80}"
        )
    return key


def _digest(*parts: str, length: int = 24) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]


# --- building each kind ------------------------------------------------------------------------


def _order_context(session: Session, settings: Settings, number: str | None):
    if not number:
        raise UserError("this email kind needs an order: give --order NUMBER")
    order = session.exec(select(Order).where(Order.number == number)).first()
    if order is None:
        raise NotFound(f"order {number!r} not found")
    customer = session.get(Customer, order.customer_id)
    lines = session.exec(
        select(OrderLine).where(OrderLine.order_id == order.id).order_by(col(OrderLine.id))
    ).all()
    zone = settings.shop.zone
    context = {
        "order": {
            "number": order.number,
            "status": order.status,
            "currency": order.currency or settings.shop.currency,
            "subtotal_minor": order.subtotal_minor,
            "shipping_minor": order.shipping_minor,
            "total_minor": order.total_minor,
            "created_at": order.created_at.astimezone(zone).strftime("%d %B %Y"),
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
    }
    return order, customer, context


def _low_stock_products(products: Any) -> list[dict[str, Any]]:
    if not isinstance(products, Sequence) or isinstance(products, str) or not products:
        raise UserError("low_stock email needs a non-empty list of products")
    out = []
    for i, p in enumerate(products):
        item = dict(p) if isinstance(p, Mapping) else None
        missing = [k for k in ("sku", "name", "stock", "threshold") if not item or k not in item]
        if missing:
            raise UserError(f"low_stock product #{i + 1} lacks {', '.join(missing)}")
        item.setdefault("units_sold_7d", None)
        item.setdefault("days_of_cover", None)
        out.append(item)
    return out


def build_email(
    session: Session,
    settings: Settings,
    kind: str,
    *,
    to: str | None = None,
    order_number: str | None = None,
    subject: str | None = None,
    body: str | None = None,
    context: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> EmailDraft:
    """Validate the input and render the email; raises UserError/NotFound, writes nothing.

    - order kinds (`order_confirmation`, `shipping_notification`, `order_status_update`) need
      `order_number`; the recipient is the order's customer unless `to` is given;
    - `low_stock`: `context={"products": [{sku, name, stock, threshold, units_sold_7d,
      days_of_cover}, ...], "as_of": "..."}`, to the admin; pass the alert's own
      `idempotency_key` (e.g. `low_stock/2026-11-28`), default one per shop-local day;
    - `broadcast`: one recipient's copy: `to`, `subject`, `body` (Markdown), optional
      `context={"broadcast_id", "unsubscribe_url"}`;
    - `generic`: `to`, `subject`, `body` (plain text).
    """
    if kind not in KINDS:
        raise UserError(f"unknown email kind {kind!r}; expected one of: {', '.join(KINDS)}")
    validate_sender(settings.email.from_address)
    ctx: dict[str, Any] = dict(context or {})
    headers: dict[str, str] = {FROM_HEADER: settings.email.from_address}
    if kind != "low_stock":  # customers' replies go to support, not the no-reply sender
        headers[REPLY_TO_HEADER] = settings.email.support_email
    order_id = broadcast_id = None

    if kind in ORDER_KINDS:
        order, customer, order_ctx = _order_context(session, settings, order_number)
        order_id = order.id
        recipient = validate_address(to or (customer.email if customer else None))
        ctx = {**order_ctx, **ctx}
        if kind == "order_confirmation":
            key = f"order_confirmation/{order.number}"
        elif kind == "shipping_notification":
            if not order.tracking_number or not order.carrier:
                raise UserError(
                    f"order {order.number} has no carrier/tracking number yet; "
                    "a shipping notification needs both"
                )
            ctx.setdefault("carrier", order.carrier)
            ctx.setdefault("tracking_number", order.tracking_number)
            ctx.setdefault("tracking_url", order.tracking_url or "")
            key = f"shipping_notification/{order.number}/{order.tracking_number}"
        else:
            label, message = STATUS_TEXT.get(order.status, (order.status, ""))
            ctx.setdefault("status_label", label)
            ctx.setdefault("status_message", message or f"Your order is now {order.status}.")
            key = f"order_status_update/{order.number}/{order.status}"
    elif kind == "low_stock":
        recipient = (
            validate_address(to) if to
            else validate_address(settings.email.admin_email, "admin", configured=True)
        )
        ctx["products"] = _low_stock_products(ctx.get("products"))
        ctx["follow_up"] = bool(ctx.get("follow_up"))  # a later alert listing newcomers only
        today = utcnow().astimezone(settings.shop.zone).date().isoformat()
        ctx.setdefault("as_of", today)
        key = f"low_stock/{today}"
    elif kind == "broadcast":
        recipient = validate_address(to)
        subject = validate_subject(subject or ctx.get("subject"), kind)
        body = validate_body(body if body is not None else ctx.get("body_markdown"), settings)
        if not body.strip():
            raise UserError("a broadcast email needs a subject and a body")
        broadcast_id = ctx.get("broadcast_id")
        unsubscribe = ctx.get("unsubscribe_url") or ""
        ctx.update(
            subject=subject,
            body_html=markdown_html(body or ""),
            body_text=(body or "").strip(),
            unsubscribe_url=unsubscribe,
        )
        if unsubscribe:
            headers["List-Unsubscribe"] = f"<{unsubscribe}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        scope = str(broadcast_id) if broadcast_id is not None else _digest(subject, body or "")
        key = f"broadcast/{scope}/{_digest(recipient, length=16)}"
    else:  # generic
        # The configured admin address may use a special-use domain (test setups), as for
        # low_stock; addresses typed by users may not.
        recipient = validate_address(to, configured=to == settings.email.admin_email)
        subject = validate_subject(subject or ctx.get("subject"), kind)
        body = validate_body(body if body is not None else ctx.get("body"), settings)
        if not body.strip():
            raise UserError("a generic email needs a body (--body-file)")
        ctx.update(subject=subject, body=(body or "").strip())
        key = f"generic/{_digest(recipient, subject, body or '')}"

    rendered: Rendered = render(settings, kind, ctx)
    if len(rendered.subject) > SUBJECT_COLUMN:
        raise UserError(f"email {kind}: the subject rendered to {len(rendered.subject):,} "
                        f"characters; at most {SUBJECT_COLUMN}")
    return EmailDraft(
        kind=kind,
        to=recipient,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        idempotency_key=validate_key(idempotency_key or key),
        headers=headers,
        order_id=order_id,
        broadcast_id=broadcast_id,
    )


# --- queueing ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _insert_statement(dialect: str):
    table = EmailOutbox.__table__  # type: ignore[attr-defined]
    return (
        upsert_insert(dialect, table)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(table.c.id)
    )


def _insert_ignoring_duplicate(session: Session, values: dict[str, Any]) -> int | None:
    """INSERT ... ON CONFLICT (idempotency_key) DO NOTHING; the new id, or None if the key
    exists. No exception and no rollback on a duplicate, so the caller's transaction is
    untouched. One statement built once per dialect, values bound at execution."""
    stmt = _insert_statement(session.get_bind().dialect.name)
    return session.connection().execute(stmt, values).scalar()


def by_key(session: Session, key: str) -> EmailOutbox | None:
    return session.exec(select(EmailOutbox).where(EmailOutbox.idempotency_key == key)).first()


def queue(
    session: Session,
    settings: Settings,
    kind: str,
    *,
    to: str | None = None,
    order_number: str | None = None,
    subject: str | None = None,
    body: str | None = None,
    context: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    commit: bool = True,
    enqueue: bool = True,
) -> Queued:
    """`queue_email`, also telling whether the row is new (see there)."""
    draft = build_email(
        session, settings, kind, to=to, order_number=order_number, subject=subject, body=body,
        context=context, idempotency_key=idempotency_key,
    )
    now = utcnow()
    values = {
        "kind": draft.kind,
        "to_address": draft.to,
        "subject": draft.subject,
        "html": draft.html,
        "text": draft.text,
        "headers": draft.headers,
        "status": EmailStatus.queued.value,
        "attempts": 0,
        "idempotency_key": draft.idempotency_key,
        "order_id": draft.order_id,
        "broadcast_id": draft.broadcast_id,
        "created_at": now,
        "updated_at": now,
        # Not sent by then (never enqueued, or its job lost): the sweeper sends it.
        "lease_until": now + timedelta(seconds=settings.email.lease_seconds),
    }
    new_id = _insert_ignoring_duplicate(session, values)
    created = new_id is not None
    if created:
        # What was inserted, attached without reading it back.
        row = EmailOutbox(id=new_id, **values)
        make_transient_to_detached(row)
        session.add(row)
    else:
        row = by_key(session, draft.idempotency_key)
        assert row is not None
    if commit:
        session.commit()
        if created and enqueue:
            try:
                enqueue_send(row.id)  # type: ignore[arg-type]
            except Exception as exc:  # queue down: the row is safe, the sweeper sends it
                log.warning(
                    "email #%s stored but not enqueued (%s); the outbox sweeper will send it "
                    "after its lease",
                    row.id,
                    exc,
                )
    if created:
        log.info("email #%s queued: %s to %s (key %s)", row.id, kind, row.to_address,
                 row.idempotency_key)
    return Queued(row, created)


def queue_email(
    session: Session,
    settings: Settings,
    kind: str,
    *,
    to: str | None = None,
    order_number: str | None = None,
    subject: str | None = None,
    body: str | None = None,
    context: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    commit: bool = True,
    enqueue: bool = True,
) -> EmailOutbox:
    """Validate, render once, store an outbox row, commit, enqueue its send job; the row.

    The same logical email (same idempotency key) queued again returns the existing row and
    sends nothing more. Bad input raises UserError/NotFound and writes nothing.
    `commit=False` only flushes (the row joins the caller's transaction) and does not enqueue:
    call `enqueue_send(row.id)` after your commit, or leave it to the sweeper (one lease later).
    See `build_email` for what each kind needs; e.g. the inventory check calls::

        queue_email(session, settings, "low_stock", idempotency_key=f"low_stock/{date}",
                    context={"products": [{"sku", "name", "stock", "threshold",
                                           "units_sold_7d", "days_of_cover"}, ...]})
    """
    return queue(
        session, settings, kind, to=to, order_number=order_number, subject=subject, body=body,
        context=context, idempotency_key=idempotency_key, commit=commit, enqueue=enqueue,
    ).row


def enqueue_send(row_id: int, *, delay: float | None = None) -> None:
    """Put the send job of outbox row `row_id` on the `emails` queue (tasks.send_email)."""
    dispatch.enqueue("send_email", row_id, delay=delay)


SEND_TASK = "send_email"  # the task whose first argument is an outbox row id
RESEND_MARK = "/resend-"
_RESEND_SUFFIX = len(RESEND_MARK) + 12


def later_copy(conn: Connection | Session, row: Any) -> int | None:
    """The id of a later copy of this email (sent again from it, or from another copy of the
    same email), if any: sending it would reach the customer a second time."""
    base = row.idempotency_key.split(RESEND_MARK)[0][: MAX_KEY_LENGTH - _RESEND_SUFFIX]
    o = EmailOutbox
    return conn.execute(
        select(o.id).where(col(o.to_address) == row.to_address, col(o.kind) == row.kind,
                           col(o.id) > row.id,
                           col(o.idempotency_key).startswith(base + RESEND_MARK,
                                                             autoescape=True))
        .order_by(col(o.id)).limit(1)
    ).scalar()


def reopen_failed(conn: Connection, row_id: int, lease_seconds: float) -> bool:
    """An operator's retry of the send job of row `row_id`: a `failed` row goes back to
    `queued` (True). Refused (UserError, nothing changed) when the email was sent, was sent
    again (a later copy exists) or was cancelled: the retry would reach the customer twice.
    A queued or sending row is left as it is (False): its claim makes a second send a no-op.

    The row keeps its rendered body and idempotency key, so if the provider did accept an
    earlier attempt it replays that answer instead of sending again."""
    o = EmailOutbox
    row = conn.execute(
        select(o.id, o.status, o.sent_at, o.idempotency_key, o.to_address, o.kind)
        .where(col(o.id) == row_id).with_for_update()
    ).first()
    if row is None:
        raise UserError(f"email #{row_id} no longer exists")
    copy = later_copy(conn, row)
    if copy is not None:
        raise UserError(f"email #{row_id} was sent again as #{copy}; retrying would send it "
                        "twice: discard this entry")
    if row.status == EmailStatus.sent.value:
        at = f" at {row.sent_at:%Y-%m-%d %H:%M} UTC" if row.sent_at else ""
        raise UserError(f"email #{row_id} was already sent{at}; retrying would send it "
                        "twice: discard this entry")
    if row.status == EmailStatus.cancelled.value:
        raise UserError(f"email #{row_id} was cancelled: discard this entry")
    now = utcnow()
    stmt = (
        update(EmailOutbox)
        .where(col(EmailOutbox.id) == row_id, col(EmailOutbox.status) == EmailStatus.failed.value)
        .values(status=EmailStatus.queued.value, next_attempt_at=None, updated_at=now,
                lease_until=now + timedelta(seconds=lease_seconds))
    )
    return conn.execute(stmt).rowcount == 1


@dataclass
class Resent:
    row: EmailOutbox  # the new copy
    closed_failed_jobs: list[int]  # ledger entries of the original's sends, now discarded


def resend_email(
    session: Session, settings: Settings, row_id: int, actor: str | None = None
) -> Resent:
    """An operator's explicit "send again": a new row (same content, new key), an activity-log
    line, committed and enqueued. The original row is left as it was, and the open failed-job
    entries of its sends are closed (each noted in the activity log), so a later retry of them
    cannot send a second copy. Refused (nothing written) while the original is queued or being
    sent: it is on its way already."""
    actor = actor or settings.operator()
    now = utcnow()
    try:
        # Lock order, shared with an operator's retry: ledger entries first, then the row.
        from kolaq_console.jobs.failed import close_open_calls

        conn = begin_write(session)
        original = session.exec(select(EmailOutbox).where(col(EmailOutbox.id) == row_id)).first()
        if original is None:
            raise NotFound(f"email #{row_id} not found")
        suffix = f"{RESEND_MARK}{uuid.uuid4().hex[:12]}"
        base = original.idempotency_key.split(RESEND_MARK)[0]
        key = base[: MAX_KEY_LENGTH - len(suffix)] + suffix
        row = EmailOutbox(
            kind=original.kind, to_address=original.to_address, subject=original.subject,
            html=original.html, text=original.text, headers=dict(original.headers or {}),
            status=EmailStatus.queued.value, idempotency_key=key, order_id=original.order_id,
            broadcast_id=original.broadcast_id, created_at=now, updated_at=now,
            lease_until=now + timedelta(seconds=settings.email.lease_seconds),
        )
        session.add(row)
        session.flush()
        closed = close_open_calls(conn, SEND_TASK, row_id, actor,
                                  f"email #{row_id} was sent again as #{row.id}", now)
        status = session.exec(
            select(EmailOutbox.status).where(col(EmailOutbox.id) == row_id).with_for_update()
        ).one()
        if status in OPEN_STATUSES:
            raise UserError(f"email #{row_id} is {status}: it is on its way already; send it "
                            "again once it is sent or has failed")
        session.add(ActivityLog(
            actor=actor, action="email.resend", entity="email_outbox", entity_id=str(row.id),
            details={"original_id": original.id, "kind": original.kind,
                     "to": original.to_address, "idempotency_key": key,
                     "closed_failed_jobs": closed},
            created_at=now,
        ))
        session.commit()
    except BaseException:
        session.rollback()
        raise
    log.info("email #%s: resend of #%s requested by %s%s", row.id, row_id, actor,
             f"; closed failed job(s) {closed}" if closed else "")
    try:
        enqueue_send(row.id)  # type: ignore[arg-type]
    except Exception as exc:
        log.warning("email #%s stored but not enqueued (%s); the sweeper will send it", row.id, exc)
    return Resent(row, closed)


def list_emails(
    session: Session, status: str | None = None, kind: str | None = None, limit: int = 50
) -> list[EmailOutbox]:
    """Most recent outbox rows first."""
    query = select(EmailOutbox)
    if status:
        if status not in {s.value for s in EmailStatus}:
            choices = ", ".join(s.value for s in EmailStatus)
            raise UserError(f"unknown status {status!r}; expected one of: {choices}")
        query = query.where(EmailOutbox.status == status)
    if kind:
        if kind not in KINDS:
            raise UserError(f"unknown email kind {kind!r}; expected one of: {', '.join(KINDS)}")
        query = query.where(EmailOutbox.kind == kind)
    return list(session.exec(query.order_by(col(EmailOutbox.id).desc()).limit(limit)).all())


def row_summary(row: EmailOutbox) -> dict[str, Any]:
    """One outbox row for `email list --json` and the console (no bodies)."""
    return {
        "id": row.id,
        "kind": row.kind,
        "to": row.to_address,
        "subject": row.subject,
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "provider_message_id": row.provider_message_id,
        "idempotency_key": row.idempotency_key,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "sent_at": row.sent_at,
        "next_attempt_at": row.next_attempt_at,
    }


# --- the sweeper -------------------------------------------------------------------------------


def stale_condition(now: datetime):
    return (
        col(EmailOutbox.status).in_(OPEN_STATUSES),
        or_(col(EmailOutbox.lease_until).is_(None), col(EmailOutbox.lease_until) < now),
    )


def sweep_stale(
    engine: Engine, settings: Settings, *, now: datetime | None = None, limit: int = 1000
) -> list[int]:
    """Re-enqueue outbox rows left queued/sending past their lease (their job was lost with a
    worker, or never enqueued). Each swept row is put back to `queued` with a fresh lease in
    one conditional UPDATE, so concurrent sweepers never enqueue a row twice per lease. The
    stable idempotency key means the provider never sends twice even if the old job lives on.
    """
    now = now or utcnow()
    lease = timedelta(seconds=settings.email.lease_seconds)
    with session_scope(engine) as session:
        candidates = session.exec(
            select(EmailOutbox.id).where(*stale_condition(now)).order_by(col(EmailOutbox.id))
            .limit(limit)
        ).all()
        if not candidates:
            return []
        swept = session.execute(
            update(EmailOutbox)
            .where(col(EmailOutbox.id).in_(candidates), *stale_condition(now))
            .values(
                status=EmailStatus.queued.value,
                lease_until=now + lease,
                updated_at=now,
                last_error=func.coalesce(EmailOutbox.last_error, "re-enqueued after its lease"),
            )
            .returning(EmailOutbox.id)
            .execution_options(synchronize_session=False)
        ).scalars().all()
    swept = sorted(swept)
    for row_id in swept:
        enqueue_send(row_id)
    if swept:
        shown = ", ".join(f"#{i}" for i in swept[:20]) + (" ..." if len(swept) > 20 else "")
        log.warning("outbox sweeper re-enqueued %d email(s) past their lease: %s", len(swept),
                    shown)
    return swept


# --- claims of workers that stopped or died ----------------------------------------------------

HANDED_BACK = "handed back: the worker sending it stopped or died mid-send"


def _handed_back(now: datetime, lease_seconds: float) -> dict[str, Any]:
    return {"status": EmailStatus.queued.value, "next_attempt_at": None, "updated_at": now,
            "lease_until": now + timedelta(seconds=lease_seconds), "last_error": HANDED_BACK}


def release_claim(conn: Connection, row_id: int, task_id: str, lease_seconds: float) -> bool:
    """Put back to `queued` a row that the job run `task_id` was sending when it was
    interrupted (shutdown) or lost (its worker died): the job re-enqueued for it can claim it
    at once instead of after the lease. A row since sent, or claimed by another run, stays."""
    stmt = (
        update(EmailOutbox)
        .where(col(EmailOutbox.id) == row_id,
               col(EmailOutbox.status) == EmailStatus.sending.value,
               col(EmailOutbox.task_id) == task_id)
        .values(**_handed_back(utcnow(), lease_seconds))
    )
    return conn.execute(stmt).rowcount == 1


def release_claims_of(engine: Engine, settings: Settings, worker_ids: Sequence[str]
                      ) -> list[int]:
    """Hand back and re-enqueue the rows that workers known to be dead or stopped were
    sending. One conditional UPDATE per chunk: of concurrent callers, one takes each row. The
    row's idempotency key makes a send that did reach the provider a replay, not a copy."""
    released: list[int] = []
    ids = sorted(set(worker_ids))
    for i in range(0, len(ids), 500):
        with engine.begin() as conn:
            released += conn.execute(
                update(EmailOutbox)
                .where(col(EmailOutbox.status) == EmailStatus.sending.value,
                       col(EmailOutbox.claimed_by).in_(ids[i:i + 500]))
                .values(**_handed_back(utcnow(), settings.email.lease_seconds))
                .returning(EmailOutbox.id)
            ).scalars().all()
    for row_id in sorted(released):
        enqueue_send(row_id)
    if released:
        shown = ", ".join(f"#{i}" for i in sorted(released)[:20])
        log.warning("handed back %d email(s) of dead or stopped workers: %s%s", len(released),
                    shown, " ..." if len(released) > 20 else "")
    return released
