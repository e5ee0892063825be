"""The low-stock check's way into the email outbox (kind `low_stock`).

`send_low_stock_alert` runs inside the check's transaction, so the alert's guard row and its
outbox row commit together or not at all; the send job is enqueued only after that commit
(a rolled-back check enqueues nothing; a crash between commit and enqueue leaves the row for
the outbox sweeper).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event
from sqlmodel import Session

from kolaq_console.config import Settings
from kolaq_console.emails import enqueue_send, queue_email

log = logging.getLogger(__name__)

KIND = "low_stock"
_PENDING = "kolaq.inventory.enqueue_after_commit"
_PENDING_TEXTS = "kolaq.inventory.enqueue_texts_after_commit"


def email_context(products: Sequence[Any], *, follow_up: bool = False,
                  as_of: str | None = None) -> dict[str, Any]:
    """The `low_stock` email context for a list of LowStockItem (`as_of`: the shop's date)."""
    return {
        "follow_up": follow_up,
        **({"as_of": as_of} if as_of else {}),
        "products": [
            {"sku": p.sku, "name": p.name, "stock": p.stock, "threshold": p.threshold,
             "units_sold_7d": p.sold_7d, "days_of_cover": p.days_of_cover}
            for p in products
        ],
    }


def send_low_stock_alert(session: Session, settings: Settings, products: Sequence[Any],
                         idempotency_key: str, *, follow_up: bool = False,
                         as_of: str | None = None, to: str | None = None) -> int:
    """Queue the alert email (to the admin, unless `to`) in the caller's transaction; returns
    the outbox row id."""
    row = queue_email(
        session, settings, KIND, to=to,
        context=email_context(products, follow_up=follow_up, as_of=as_of),
        idempotency_key=idempotency_key, commit=False, enqueue=False,
    )
    assert row.id is not None
    _enqueue_after_commit(session, row.id)
    if to is None:  # the admin's alert (not a copy sent elsewhere): by text too if configured
        _queue_admin_texts(session, settings, products, idempotency_key)
    return row.id


def _queue_admin_texts(session: Session, settings: Settings, products: Sequence[Any],
                       idempotency_key: str) -> None:
    """The same alert by SMS/WhatsApp to [sms] admin_phone when [notifications] low_stock
    lists those channels; one that cannot be sent (no number, no template) is logged and
    skipped: the email still goes."""
    from kolaq_console.errors import UserError
    from kolaq_console.sms import outbox as texts

    context = {"products": [{"sku": p.sku, "stock": p.stock, "threshold": p.threshold}
                            for p in products]}
    for channel in settings.notifications.channels(KIND):
        if channel == "email":
            continue
        try:
            draft = texts.build_message(session, settings, KIND, channel=channel,
                                        context=context,
                                        idempotency_key=f"{channel}/{idempotency_key}")
        except UserError as exc:
            log.warning("low-stock alert by %s not queued: %s", channel, exc)
            continue
        queued = texts.store(session, settings, draft)
        if queued.created:
            session.info.setdefault(_PENDING_TEXTS, []).append(queued.row.id)
            _enqueue_after_commit(session, None)


def _enqueue_after_commit(session: Session, outbox_id: int | None) -> None:
    if not session.info.get(_PENDING + ".listening"):
        session.info[_PENDING + ".listening"] = True
        event.listen(session, "after_commit", _after_commit, once=True)
        event.listen(session, "after_rollback", _after_rollback, once=True)
    if outbox_id is not None:
        session.info.setdefault(_PENDING, []).append(outbox_id)


def _after_commit(session: Session) -> None:
    session.info.pop(_PENDING + ".listening", None)
    for outbox_id in session.info.pop(_PENDING, []):
        try:
            enqueue_send(outbox_id)
        except Exception:  # the row is committed; the outbox sweeper will send it
            log.exception("could not enqueue outbox row %s; the sweeper will pick it up",
                          outbox_id)
    text_ids = session.info.pop(_PENDING_TEXTS, [])
    if text_ids:
        from kolaq_console.sms.outbox import enqueue_after_commit

        enqueue_after_commit(text_ids)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING + ".listening", None)
    session.info.pop(_PENDING, None)
    session.info.pop(_PENDING_TEXTS, None)
