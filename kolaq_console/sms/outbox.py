"""SMS and WhatsApp messages are rows before they are jobs, as emails are.

`queue_message` validates (E.164 number, consent, template, segment limit), inserts the row
(status `queued`, a deterministic key such as `sms/order_confirmation/KB-1001`), commits, then
enqueues a send job carrying only the row id. The same logical message queued twice returns the
existing row. Bad input raises UserError/NotFound and writes nothing.

Longer than ~400 lines for now (issue 13's module, not split by the sms work): queueing,
claiming, resending and listing messages share the row's state machine; a candidate to split
like the email outbox.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, event, func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, col, select

from kolaq_console import channel_consent, dispatch
from kolaq_console.config import Settings
from kolaq_console.db import session_scope
from kolaq_console.errors import NotFound, UserError
from kolaq_console.models import ActivityLog, Customer, Order, TextMessage, TextStatus, utcnow
from kolaq_console.sms import kinds
from kolaq_console.sms.phone import normalise_number
from kolaq_console.sms.segments import MAX_BODY_CHARS, Segments, count_segments

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 256
OPEN_STATUSES = (TextStatus.queued.value, TextStatus.sending.value)
STATUSES = tuple(s.value for s in TextStatus)


@dataclass
class MessageDraft:
    """A validated message not stored yet (what a preview shows)."""

    channel: str
    kind: str
    to: str
    from_number: str
    body: str
    idempotency_key: str
    segments: Segments | None = None
    content_sid: str | None = None
    content_variables: dict[str, str] = field(default_factory=dict)
    order_id: int | None = None
    customer_id: int | None = None


@dataclass
class Queued:
    row: TextMessage
    created: bool  # False: the same logical message was already queued; this is that row


def _digest(*parts: str, length: int = 20) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]


def check_channel(channel: str) -> str:
    if channel not in kinds.CHANNELS:
        raise UserError(f"unknown channel {channel!r}; expected one of: "
                        f"{', '.join(kinds.CHANNELS)}")
    return channel


def sender(settings: Settings, channel: str) -> str:
    """The configured sender of `channel` in E.164, or "" when none is set (dev)."""
    s = settings.sms
    raw = (s.whatsapp_from or s.from_number) if channel == "whatsapp" else s.from_number
    if not raw:
        if s.transport == "twilio":
            name = "whatsapp_from or from_number" if channel == "whatsapp" else "from_number"
            raise UserError(f"[sms] {name} is not set: the twilio transport needs the shop's "
                            "sending number")
        return ""
    return normalise_number(raw, settings.shop.country, f"[sms] sender {raw!r}")


# --- building each kind ------------------------------------------------------------------------


def _order(session: Session, number: str | None) -> tuple[Order, Customer | None]:
    if not number:
        raise UserError("this message kind needs an order: give --order NUMBER")
    order = session.exec(select(Order).where(Order.number == number)).first()
    if order is None:
        raise NotFound(f"order {number!r} not found")
    return order, session.get(Customer, order.customer_id)


def _order_values(settings: Settings, kind: str, order: Order,
                  customer: Customer | None) -> tuple[dict[str, str], str]:
    """The kind's values and the tail of its key."""
    values = {
        "shop": settings.shop.name,
        "customer_name": kinds.first_name(customer.name if customer else ""),
        "order_number": order.number,
    }
    if kind == "order_confirmation":
        values["total"] = kinds.money(order.total_minor, order.currency or settings.shop.currency)
        return values, order.number
    if kind == "shipping_notification":
        if not order.tracking_number or not order.carrier:
            raise UserError(f"order {order.number} has no carrier/tracking number yet; "
                            "a shipping notification needs both")
        values.update(carrier=order.carrier, tracking_number=order.tracking_number,
                      tracking_url=order.tracking_url or "")
        return values, f"{order.number}/{order.tracking_number}"
    from kolaq_console.emails.composers.orders import STATUS_TEXT

    label, message = STATUS_TEXT.get(order.status, (order.status, ""))
    values.update(status=label, status_message=message or f"Your order is now {order.status}.")
    return values, f"{order.number}/{order.status}"


def _low_stock_values(settings: Settings, products: Any) -> dict[str, str]:
    if not isinstance(products, Sequence) or isinstance(products, str) or not products:
        raise UserError("low_stock message needs a non-empty list of products")
    for i, p in enumerate(products):
        if not isinstance(p, Mapping) or any(k not in p for k in ("sku", "stock", "threshold")):
            raise UserError(f"low_stock product #{i + 1} lacks sku, stock or threshold")
    values = {"shop": settings.shop.name, "count": str(len(products))}
    # As many products as fit the segment limit, the rest counted ("+3 more").
    for shown in range(len(products), 0, -1):
        values["products"] = kinds.low_stock_summary(list(products), shown)
        if count_segments(kinds.render("low_stock", values)).segments <= \
                settings.sms.max_segments:
            break
    return values


def build_message(
    session: Session,
    settings: Settings,
    kind: str,
    *,
    channel: str | None = None,
    to: str | None = None,
    order_number: str | None = None,
    body: str | None = None,
    context: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> MessageDraft:
    """Validate and render one message; raises UserError/NotFound, writes nothing.

    - order kinds need `order_number`; the recipient is the order's customer's phone (or `to`),
      and the customer must have consented to the channel;
    - `low_stock`: `context={"products": [{sku, stock, threshold}, ...]}`, to [sms] admin_phone;
    - `generic`: `to` and `body` (the text as given).
    """
    kinds.check_kind(kind)
    channel = check_channel(channel or settings.sms.channel)
    region = settings.shop.country
    ctx = dict(context or {})
    order_id = customer_id = None
    customer: Customer | None = None

    if kind in kinds.ORDER_KINDS:
        order, customer = _order(session, order_number)
        order_id, customer_id = order.id, customer.id if customer else None
        number = to or (customer.phone if customer else None)
        if not number:
            who = customer.email if customer else f"order {order.number}"
            raise UserError(f"{who} has no phone number; cannot send {kind} by {channel}")
        recipient = normalise_number(number, region, "recipient number")
        values, tail = _order_values(settings, kind, order, customer)
        key = f"{channel}/{kind}/{tail}"
    elif kind == "low_stock":
        raw = to or settings.sms.admin_phone
        if not raw:
            raise UserError("[sms] admin_phone is not set: nowhere to send the low-stock alert")
        recipient = normalise_number(raw, region, "admin phone" if not to else "recipient number")
        values = _low_stock_values(settings, ctx.get("products"))
        today = utcnow().astimezone(settings.shop.zone).date().isoformat()
        key = f"{channel}/low_stock/{today}"
    else:  # generic
        recipient = normalise_number(to, region, "recipient number (--to)")
        text = (body if body is not None else ctx.get("body") or "").strip()
        if not text:
            raise UserError("a generic message needs a body (--body-file)")
        values = {"shop": settings.shop.name, "body": text}
        key = f"{channel}/generic/{_digest(recipient, text)}"

    reason = channel_consent.refusal(session, channel, recipient, customer)
    if reason:
        raise UserError(f"not sending {kind} by {channel}: {reason}")

    text = kinds.render(kind, values)
    if len(text) > MAX_BODY_CHARS:
        raise UserError(f"{kind} body is {len(text)} characters; Twilio takes at most "
                        f"{MAX_BODY_CHARS}")
    segments = content_sid = None
    variables: dict[str, str] = {}
    if channel == "sms":
        segments = count_segments(text)
        if segments.segments > settings.sms.max_segments:
            raise UserError(f"{kind} SMS body is {segments.describe()}; the limit is "
                            f"[sms] max_segments = {settings.sms.max_segments}")
    else:
        template = settings.sms.whatsapp_templates.get(kind)
        if template is None:
            raise UserError(
                f"WhatsApp needs an approved template for {kind}: add "
                f"[sms.whatsapp_templates.{kind}] content_sid and variables to the config "
                "(a message the shop starts is never sent to WhatsApp as free text)")
        content_sid = template.content_sid
        variables = {str(i): values.get(name, "") for i, name in
                     enumerate(template.variables, start=1)}
    key = idempotency_key or key
    if not key or len(key) > MAX_KEY_LENGTH:
        raise UserError(f"idempotency key must be 1-{MAX_KEY_LENGTH} characters")
    return MessageDraft(
        channel=channel, kind=kind, to=recipient, from_number=sender(settings, channel),
        body=text, idempotency_key=key, segments=segments, content_sid=content_sid,
        content_variables=variables, order_id=order_id, customer_id=customer_id,
    )


# --- queueing ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _insert_statement(dialect: str):
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = TextMessage.__table__  # type: ignore[attr-defined]
    return (insert(table).on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(table.c.id))


def by_key(session: Session, key: str) -> TextMessage | None:
    return session.exec(select(TextMessage).where(TextMessage.idempotency_key == key)).first()


def draft_values(draft: MessageDraft, settings: Settings, now: datetime) -> dict[str, Any]:
    return {
        "channel": draft.channel,
        "kind": draft.kind,
        "to_number": draft.to,
        "from_number": draft.from_number,
        "body": draft.body,
        "encoding": draft.segments.encoding if draft.segments else None,
        "segments": draft.segments.segments if draft.segments else None,
        "content_sid": draft.content_sid,
        "content_variables": draft.content_variables,
        "status": TextStatus.queued.value,
        "attempts": 0,
        "idempotency_key": draft.idempotency_key,
        "order_id": draft.order_id,
        "customer_id": draft.customer_id,
        "created_at": now,
        "updated_at": now,
        # Not sent by then (never enqueued, or its job lost): the sweeper sends it.
        "lease_until": now + timedelta(seconds=settings.sms.lease_seconds),
    }


def store(session: Session, settings: Settings, draft: MessageDraft) -> Queued:
    """Insert the draft's row in the caller's transaction (or find its twin by key)."""
    values = draft_values(draft, settings, utcnow())
    stmt = _insert_statement(session.get_bind().dialect.name)
    new_id = session.connection().execute(stmt, values).scalar()
    if new_id is not None:
        row = TextMessage(id=new_id, **values)
        make_transient_to_detached(row)
        session.add(row)
        return Queued(row, True)
    row = by_key(session, draft.idempotency_key)
    assert row is not None
    return Queued(row, False)


def enqueue_send(row_id: int, *, delay: float | None = None) -> None:
    """Put the send job of message `row_id` on the queue (tasks.send_text)."""
    dispatch.enqueue("send_text", row_id, delay=delay)


def enqueue_after_commit(row_ids: Sequence[int]) -> None:
    for row_id in row_ids:
        try:
            enqueue_send(row_id)
        except Exception as exc:  # queue down: the row is safe, the sweeper sends it
            log.warning("message #%s stored but not enqueued (%s); the sweeper will send it "
                        "after its lease", row_id, exc)


_AFTER_COMMIT = "kolaq.sms.enqueue_after_commit"


def enqueue_when_committed(session: Session, row_ids: Sequence[int]) -> None:
    """Enqueue these new rows' send jobs when the caller's transaction commits (nothing if it
    rolls back; a crash in between leaves them to the sweeper)."""
    if not row_ids:
        return
    pending = session.info.get(_AFTER_COMMIT)
    if pending is None:
        pending = session.info[_AFTER_COMMIT] = []

        def committed(sess: Session) -> None:
            enqueue_after_commit(sess.info.pop(_AFTER_COMMIT, []))

        def rolled_back(sess: Session) -> None:
            sess.info.pop(_AFTER_COMMIT, None)

        event.listen(session, "after_commit", committed, once=True)
        event.listen(session, "after_rollback", rolled_back, once=True)
    pending.extend(row_ids)


def queue_message(
    session: Session,
    settings: Settings,
    kind: str,
    *,
    channel: str | None = None,
    to: str | None = None,
    order_number: str | None = None,
    body: str | None = None,
    context: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    commit: bool = True,
) -> Queued:
    """Validate, store, commit and enqueue one message (see `build_message`). The same logical
    message queued again returns the existing row and sends nothing more. `commit=False` only
    flushes into the caller's transaction: call `enqueue_after_commit([row.id])` after your
    commit (or leave it to the sweeper, one lease later)."""
    draft = build_message(session, settings, kind, channel=channel, to=to,
                          order_number=order_number, body=body, context=context,
                          idempotency_key=idempotency_key)
    queued = store(session, settings, draft)
    if commit:
        session.commit()
        if queued.created:
            enqueue_after_commit([queued.row.id])  # type: ignore[list-item]
    if queued.created:
        log.info("message #%s queued: %s %s to %s (key %s)", queued.row.id, draft.channel, kind,
                 draft.to, draft.idempotency_key)
    return queued


# --- reading -----------------------------------------------------------------------------------


def list_messages(
    session: Session, *, status: str | None = None, channel: str | None = None,
    kind: str | None = None, order_id: int | None = None, customer_id: int | None = None,
    limit: int = 50,
) -> list[TextMessage]:
    """Most recent messages first."""
    query = select(TextMessage)
    if status:
        if status not in STATUSES:
            raise UserError(f"unknown status {status!r}; expected one of: {', '.join(STATUSES)}")
        query = query.where(TextMessage.status == status)
    if channel:
        query = query.where(TextMessage.channel == check_channel(channel))
    if kind:
        query = query.where(TextMessage.kind == kinds.check_kind(kind))
    if order_id is not None:
        query = query.where(TextMessage.order_id == order_id)
    if customer_id is not None:
        query = query.where(TextMessage.customer_id == customer_id)
    return list(session.exec(query.order_by(col(TextMessage.id).desc()).limit(limit)).all())


def get_message(session: Session, row_id: int) -> TextMessage:
    row = session.get(TextMessage, row_id)
    if row is None:
        raise NotFound(f"message #{row_id} not found")
    return row


def row_summary(row: TextMessage) -> dict[str, Any]:
    """One message for `sms list --json` and the console."""
    return {
        "id": row.id,
        "channel": row.channel,
        "kind": row.kind,
        "to": row.to_number,
        "status": row.status,
        "delivery_status": row.delivery_status,
        "segments": row.segments,
        "encoding": row.encoding,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "error_code": row.error_code,
        "provider_message_id": row.provider_message_id,
        "idempotency_key": row.idempotency_key,
        "order_id": row.order_id,
        "content_sid": row.content_sid,
        "body": row.body,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "sent_at": row.sent_at,
        "delivery_updated_at": row.delivery_updated_at,
        "next_attempt_at": row.next_attempt_at,
    }


# --- operators' actions ------------------------------------------------------------------------


def _audit(session: Session, settings: Settings, actor: str | None, action: str,
           row: TextMessage, **details: Any) -> None:
    session.add(ActivityLog(actor=actor or settings.operator(), action=action,
                            entity="text_message", entity_id=str(row.id),
                            details={"channel": row.channel, "kind": row.kind,
                                     "to": row.to_number, **details}))


def resend_message(session: Session, settings: Settings, row_id: int,
                   actor: str | None = None) -> TextMessage:
    """"Send again": a new row (same content, new key), logged, committed and enqueued. The
    recipient's consent is checked again; the original row is left as it was."""
    original = get_message(session, row_id)
    customer = session.get(Customer, original.customer_id) if original.customer_id else None
    reason = channel_consent.refusal(session, original.channel, original.to_number, customer)
    if reason:
        raise UserError(f"not sending message #{row_id} again: {reason}")
    base = original.idempotency_key.split("/again-")[0]
    suffix = f"/again-{uuid.uuid4().hex[:12]}"
    now = utcnow()
    row = TextMessage(
        channel=original.channel, kind=original.kind, to_number=original.to_number,
        from_number=original.from_number, body=original.body, encoding=original.encoding,
        segments=original.segments, content_sid=original.content_sid,
        content_variables=dict(original.content_variables or {}),
        status=TextStatus.queued.value, idempotency_key=base[: MAX_KEY_LENGTH - len(suffix)]
        + suffix, order_id=original.order_id, customer_id=original.customer_id,
        created_at=now, updated_at=now,
        lease_until=now + timedelta(seconds=settings.sms.lease_seconds),
    )
    session.add(row)
    session.flush()
    _audit(session, settings, actor, "message.resend", row, original_id=original.id)
    session.commit()
    enqueue_after_commit([row.id])  # type: ignore[list-item]
    return row


def retry_message(session: Session, settings: Settings, row_id: int, actor: str | None = None,
                  *, accept_duplicate: bool = False) -> TextMessage:
    """Put a `failed` or `unknown` row back to `queued` and enqueue it. An `unknown` row may
    already have reached the recipient, so it needs `accept_duplicate` (the operator decided)
    and is sent without looking in Twilio's list again."""
    row = get_message(session, row_id)
    if row.status not in (TextStatus.failed.value, TextStatus.unknown.value):
        raise UserError(f"message #{row_id} is {row.status}; only failed or unknown messages "
                        "can be retried (use resend to send a sent message again)")
    if row.status == TextStatus.unknown.value and not accept_duplicate:
        raise UserError(f"message #{row_id} may already have been delivered; retrying it may "
                        "send it twice (confirm with --yes, or mark it sent)")
    previous = row.status
    now = utcnow()
    row.status, row.next_attempt_at, row.updated_at = TextStatus.queued.value, None, now
    row.lease_until = now + timedelta(seconds=settings.sms.lease_seconds)
    if previous == TextStatus.unknown.value:
        row.doubt_since = None  # the operator accepted the risk: do not look again
    session.add(row)
    _audit(session, settings, actor, "message.retry", row, previous=previous)
    session.commit()
    enqueue_after_commit([row_id])
    return row


def mark_sent_by_operator(session: Session, settings: Settings, row_id: int,
                          actor: str | None = None) -> TextMessage:
    """An operator checked that an `unknown` message did go out: record it as sent."""
    row = get_message(session, row_id)
    if row.status != TextStatus.unknown.value:
        raise UserError(f"message #{row_id} is {row.status}; only unknown messages can be "
                        "marked sent")
    now = utcnow()
    row.status, row.sent_at, row.updated_at, row.doubt_since = (
        TextStatus.sent.value, now, now, None)
    row.last_error = f"marked sent by {actor or settings.operator()}"
    session.add(row)
    _audit(session, settings, actor, "message.mark_sent", row)
    session.commit()
    return row


def reopen_failed(conn: Connection, row_id: int, lease_seconds: float) -> bool:
    """Put a `failed` row back to `queued` for an operator's retry of its send job (the job
    ledger calls this). `unknown` rows are not reopened here: they need a decision."""
    now = utcnow()
    stmt = (
        update(TextMessage)
        .where(col(TextMessage.id) == row_id, col(TextMessage.status) == TextStatus.failed.value)
        .values(status=TextStatus.queued.value, next_attempt_at=None, updated_at=now,
                lease_until=now + timedelta(seconds=lease_seconds))
    )
    return conn.execute(stmt).rowcount == 1


# --- rows of lost jobs and dead workers --------------------------------------------------------

HANDED_BACK = "handed back: its worker stopped or died mid-send; looked up before sending again"


def _handed_back(now: datetime, lease_seconds: float) -> dict[str, Any]:
    """Back to `queued` at once, in doubt: the lost attempt's call may have reached Twilio."""
    t = TextMessage.__table__  # type: ignore[attr-defined]
    return {"status": TextStatus.queued.value, "next_attempt_at": None, "updated_at": now,
            "lease_until": now + timedelta(seconds=lease_seconds), "last_error": HANDED_BACK,
            "doubt_since": func.coalesce(t.c.doubt_since, t.c.attempt_started_at)}


def release_claim(conn: Connection, row_id: int, task_id: str, lease_seconds: float) -> bool:
    """Hand back the row the job run `task_id` was sending when it was interrupted or lost
    with its worker (the ledger calls this before re-enqueueing the job)."""
    stmt = (
        update(TextMessage)
        .where(col(TextMessage.id) == row_id,
               col(TextMessage.status) == TextStatus.sending.value,
               col(TextMessage.task_id) == task_id)
        .values(**_handed_back(utcnow(), lease_seconds))
    )
    return conn.execute(stmt).rowcount == 1


def release_claims_of(engine: Engine, settings: Settings, worker_ids: Sequence[str]
                      ) -> list[int]:
    """Hand back and re-enqueue the messages that workers known dead or stopped were sending;
    each next attempt looks in Twilio's list first. One conditional UPDATE per chunk."""
    released: list[int] = []
    ids = sorted(set(worker_ids))
    for i in range(0, len(ids), 500):
        with engine.begin() as conn:
            released += conn.execute(
                update(TextMessage)
                .where(col(TextMessage.status) == TextStatus.sending.value,
                       col(TextMessage.claimed_by).in_(ids[i:i + 500]))
                .values(**_handed_back(utcnow(), settings.sms.lease_seconds))
                .returning(TextMessage.id)
            ).scalars().all()
    enqueue_after_commit(sorted(released))
    if released:
        log.warning("handed back %d message(s) of dead or stopped workers: %s", len(released),
                    ", ".join(f"#{i}" for i in sorted(released)[:20]))
    return released


# --- the sweeper -------------------------------------------------------------------------------


def _stale(now: datetime):
    return (col(TextMessage.status).in_(OPEN_STATUSES),
            or_(col(TextMessage.lease_until).is_(None), col(TextMessage.lease_until) < now))


def sweep_stale(engine: Engine, settings: Settings, *, now: datetime | None = None,
                limit: int = 1000) -> list[int]:
    """Re-enqueue messages left queued/sending past their lease (their job was lost, or never
    enqueued). A `sending` row goes back with `doubt_since` set, so its next attempt first
    asks Twilio whether the lost one went out. One conditional UPDATE per sweep, so two
    sweepers never enqueue a row twice per lease."""
    now = now or utcnow()
    lease = timedelta(seconds=settings.sms.lease_seconds)
    with session_scope(engine) as session:
        ids = session.exec(select(TextMessage.id).where(*_stale(now))
                           .order_by(col(TextMessage.id)).limit(limit)).all()
        if not ids:
            return []
        t = TextMessage
        swept = session.execute(
            update(t)
            .where(col(t.id).in_(ids), *_stale(now))
            .values(
                doubt_since=func.coalesce(t.doubt_since, doubt_of_lapsed_attempt()),
                status=TextStatus.queued.value,
                lease_until=now + lease,
                updated_at=now,
                last_error=func.coalesce(t.last_error, "re-enqueued after its lease"),
            )
            .returning(t.id)
            .execution_options(synchronize_session=False)
        ).scalars().all()
    swept = sorted(swept)
    enqueue_after_commit(swept)
    if swept:
        shown = ", ".join(f"#{i}" for i in swept[:20]) + (" ..." if len(swept) > 20 else "")
        log.warning("message sweeper re-enqueued %d message(s) past their lease: %s",
                    len(swept), shown)
    return swept


def doubt_of_lapsed_attempt():
    """SQL: a lapsed `sending` row's call may have gone out, so its start opens the window in
    which Twilio's list is searched (old values: UPDATE ... SET reads the row before)."""
    t = TextMessage.__table__  # type: ignore[attr-defined]
    return case((t.c.status == TextStatus.sending.value, t.c.attempt_started_at), else_=None)
