"""Who or what a failed job was for, read from its arguments, and its bare reason.

The failed list shows `KB-10004 ada@example.com` beside `422 validation_error: invalid ...`
rather than `send_email` and an exception class: the operator's question is who is affected.
One query per kind of record for a whole page of jobs (no per-row queries).

`target_of` is the one place that reads which record a job's arguments name; the record
links (kolaq_console.lookup.subjects) follow the same target further, to its customer and
product.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from kolaq_console.models import EmailOutbox, FailedJob, Order, TextMessage, WebhookEvent
from kolaq_console.redact import redact

# `SomeError: text` or `module.SomeError: text` at the start of a message: the class, not the
# reason.
_CLASS_PREFIX = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Busy|Failure)\s*:\s*")


@dataclass(frozen=True)
class Subject:
    """What a job was about: an order number, a recipient, a SKU, or a record id."""

    order: str | None = None
    recipient: str | None = None
    sku: str | None = None
    email_id: int | None = None
    text_id: int | None = None
    label: str = "-"


def bare_reason(error_type: str | None, message: str | None) -> str:
    """The reason without the exception class: `403 invalid_api_key`, not
    `TransientError: 403 invalid_api_key`; the class's short name when there is no message."""
    lines = (message or "").strip().splitlines()
    first = _CLASS_PREFIX.sub("", lines[0]).strip() if lines else ""
    if first:
        return redact(first)
    return (error_type or "unknown error").rsplit(".", 1)[-1]


def _first_int(args: Sequence[Any]) -> int | None:
    for value in args or ():
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


# The record kind a task's first integer argument is the id of.
_KIND_OF_TASK = {"send_email": "email", "send_text": "text", "process_webhook": "webhook",
                 "send_email_batch": "batch", "send_broadcast": "broadcast",
                 "send_broadcast_batch": "broadcast"}


@dataclass(frozen=True)
class Target:
    """The record a job's call names: `kind` (email, text, webhook, batch, broadcast,
    product) and its id, or its SKU for a product (None: a reconcile of all products)."""

    kind: str
    key: int | str | None


def target_of(task_name: str, args: Sequence[Any] | None) -> Target | None:
    """Which record a call of this task is about, read from its arguments; None if the
    task is about no one record (or its argument is missing)."""
    task = task_name.rsplit(".", 1)[-1]
    if task == "reconcile_inventory":
        return Target("product", args[0] if args and isinstance(args[0], str) else None)
    kind, first = _KIND_OF_TASK.get(task), _first_int(args or ())
    return None if kind is None or first is None else Target(kind, first)


def _label(*parts: str | None) -> str:
    return " ".join(p for p in parts if p) or "-"


def subjects_for(session: Session, jobs: Iterable[tuple[int, str, Sequence[Any]]]
                 ) -> dict[int, Subject]:
    """{job id: Subject} for (job id, task name, args) triples."""
    wanted = [(job_id, target_of(task, args)) for job_id, task, args in jobs]

    def ids(kind: str) -> set[int]:
        return {t.key for _, t in wanted if t is not None and t.kind == kind
                and isinstance(t.key, int)}

    email_ids, text_ids, hook_ids = ids("email"), ids("text"), ids("webhook")
    emails = {r.id: r for r in session.exec(
        select(EmailOutbox).where(col(EmailOutbox.id).in_(email_ids)))} if email_ids else {}
    texts = {r.id: r for r in session.exec(
        select(TextMessage).where(col(TextMessage.id).in_(text_ids)))} if text_ids else {}
    hooks = {r.id: r for r in session.exec(
        select(WebhookEvent).where(col(WebhookEvent.id).in_(hook_ids)))} if hook_ids else {}
    order_ids = {r.order_id for r in (*emails.values(), *texts.values(), *hooks.values())
                 if r.order_id is not None}
    numbers = dict(session.exec(
        select(Order.id, Order.number).where(col(Order.id).in_(order_ids))).all()
    ) if order_ids else {}

    out: dict[int, Subject] = {}
    for job_id, target in wanted:
        kind, key = (target.kind, target.key) if target else ("", None)
        if kind == "email" and key in emails:
            e = emails[key]
            order = numbers.get(e.order_id) if e.order_id else None
            out[job_id] = Subject(order=order, recipient=e.to_address, email_id=e.id,
                                  label=_label(order, e.to_address))
        elif kind == "text" and key in texts:
            t = texts[key]
            order = numbers.get(t.order_id) if t.order_id else None
            out[job_id] = Subject(order=order, recipient=t.to_number, text_id=t.id,
                                  label=_label(order, t.to_number))
        elif kind == "webhook" and key in hooks:
            h = hooks[key]
            order = numbers.get(h.order_id) if h.order_id else None
            out[job_id] = Subject(order=order, label=_label(order, f"{h.provider} {h.event_type}"))
        elif kind == "product":
            sku = key if isinstance(key, str) else None
            out[job_id] = Subject(sku=sku, label=sku or "all products")
        elif kind in ("email", "text", "webhook"):
            noun = {"email": "email", "text": "message"}.get(kind, "event")
            out[job_id] = Subject(label=f"{noun} #{key} (gone)")
        elif kind in ("batch", "broadcast"):
            out[job_id] = Subject(label=f"{kind} #{key}")
        else:
            out[job_id] = Subject()
    return out


def subjects_of_ids(session: Session, ids: Sequence[int]) -> dict[int, Subject]:
    """Subjects of these ledger entries (their arguments read from the ledger)."""
    if not ids:
        return {}
    rows = session.exec(select(FailedJob.id, FailedJob.task_name, FailedJob.args)
                        .where(col(FailedJob.id).in_(list(ids)))).all()
    return subjects_for(session, ((i, t, a) for i, t, a in rows if i is not None))


def resends_email(task_name: str) -> bool:
    """Retrying a job of this task sends an email (so the console asks first)."""
    return task_name.rsplit(".", 1)[-1] in ("send_email", "send_email_batch", "send_broadcast",
                                                 "send_broadcast_batch")


def open_jobs_for_email(session: Session, email_id: int) -> list[int]:
    """Open ledger entries of `send_email(email_id)` (the email detail's `r`)."""
    rows = session.exec(
        select(FailedJob.id, FailedJob.args).where(
            col(FailedJob.task_name).in_(["tasks.send_email", "send_email"]),
            col(FailedJob.status).in_(["failed", "interrupted"]))
        .order_by(col(FailedJob.id).desc())
    ).all()
    return [i for i, args in rows if i is not None and _first_int(args) == email_id]
