"""The webhook inbox: a verified event is a committed row before it is acknowledged.

`store` inserts it under its unique (provider, event id) and commits; the server answers 2xx
only after that, then enqueues `process_webhook(row id)`. A redelivery finds the row and does
nothing. Each stored row carries a lease: a `received` row past it (its job was lost, or the
enqueue failed) is re-enqueued by `sweep_stale`; processing is guarded, so an extra job is
harmless. `replay` puts a failed, flagged or ignored event back for an operator.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kolaq_console import dispatch
from kolaq_console.errors import NotFound, UserError
from kolaq_console.models import ActivityLog, WebhookEvent, WebhookStatus, utcnow
from kolaq_console.webhooks.verify import Event

log = logging.getLogger(__name__)

TASK = "process_webhook"
REPLAYABLE = (WebhookStatus.failed.value, WebhookStatus.flagged.value,
              WebhookStatus.ignored.value)
STATUSES = tuple(s.value for s in WebhookStatus)


@dataclass(frozen=True)
class Stored:
    id: int
    created: bool  # False: a redelivery of an event we already have


@functools.lru_cache(maxsize=4)
def _insert_many_statement(dialect: str):
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = WebhookEvent.__table__  # type: ignore[attr-defined]
    return (insert(table).on_conflict_do_nothing(index_elements=["provider", "event_id"])
            .returning(table.c.provider, table.c.event_id, table.c.id))


def store(engine: Engine, event: Event, lease_seconds: float) -> Stored:
    """Insert the event (or find it) and commit."""
    return store_many(engine, [event], lease_seconds)[0]


def store_many(engine: Engine, events: list[Event], lease_seconds: float) -> list[Stored]:
    """`store` for several events in one transaction: one multi-row INSERT ... ON CONFLICT DO
    NOTHING, one commit (the server's group commit). Results in the order of `events`; of two
    copies of one event in the same batch, the first is the new one."""
    if not events:
        return []
    now = utcnow()
    lease = now + timedelta(seconds=lease_seconds)
    table = WebhookEvent.__table__  # type: ignore[attr-defined]
    keys = [(e.provider, e.event_id) for e in events]
    unique = list(dict.fromkeys(keys))
    by_key = {(e.provider, e.event_id): e for e in events}
    rows = [{"provider": p, "event_id": i, "event_type": by_key[(p, i)].event_type,
             "payload": by_key[(p, i)].payload, "status": WebhookStatus.received.value,
             "attempts": 0, "lease_until": lease, "received_at": now} for p, i in unique]
    with engine.begin() as conn:
        # One cached statement; SQLAlchemy sends the rows as one multi-row INSERT
        # ("insertmanyvalues"), so neither compiling nor round trips grow with the batch.
        created = {
            (r.provider, r.event_id): r.id
            for r in conn.execute(_insert_many_statement(conn.dialect.name), rows)
        }
        existing: dict[tuple[str, str], int] = {}
        missing = [k for k in unique if k not in created]
        for provider in {p for p, _ in missing}:
            ids = [i for p, i in missing if p == provider]
            existing.update({
                (provider, r.event_id): r.id for r in conn.execute(
                    select(table.c.event_id, table.c.id)
                    .where(table.c.provider == provider, table.c.event_id.in_(ids)))
            })
    out: list[Stored] = []
    fresh = set(created)
    for key in keys:
        if key in fresh:
            fresh.discard(key)
            out.append(Stored(created[key], True))
        else:
            out.append(Stored(created.get(key) or existing[key], False))
    return out


def enqueue(*row_ids: int) -> None:
    """One processing job for these events (a group commit's batch enqueues once)."""
    dispatch.enqueue(TASK, *row_ids)


def enqueue_or_leave(*row_ids: int) -> bool:
    """Enqueue the processing job; if the queue is down, the sweeper will (returns False)."""
    try:
        enqueue(*row_ids)
        return True
    except Exception as exc:
        log.warning("webhook event(s) %s stored but not enqueued (%s); the sweeper will "
                    "enqueue them after their lease", ", ".join(f"#{i}" for i in row_ids), exc)
        return False


def _stale(now: datetime):
    return (col(WebhookEvent.status) == WebhookStatus.received.value,
            (col(WebhookEvent.lease_until).is_(None)) | (col(WebhookEvent.lease_until) < now))


def sweep_stale(engine: Engine, lease_seconds: float, *, now: datetime | None = None,
                limit: int = 1000) -> list[int]:
    """Re-enqueue `received` events past their lease; a conditional UPDATE renews each lease
    first, so concurrent sweepers enqueue an event once per lease."""
    now = now or utcnow()
    with Session(engine) as session:
        candidates = session.exec(select(WebhookEvent.id).where(*_stale(now))
                                  .order_by(col(WebhookEvent.id)).limit(limit)).all()
        if not candidates:
            return []
        swept = session.execute(
            update(WebhookEvent)
            .where(col(WebhookEvent.id).in_(candidates), *_stale(now))
            .values(lease_until=now + timedelta(seconds=lease_seconds))
            .returning(WebhookEvent.id)
            .execution_options(synchronize_session=False)
        ).scalars().all()
        session.commit()
    swept = sorted(swept)
    for row_id in swept:
        enqueue(row_id)
    if swept:
        log.warning("webhook sweeper re-enqueued %d event(s) past their lease: %s", len(swept),
                    ", ".join(f"#{i}" for i in swept[:20]))
    return swept


def replayable(session: Session, row_id: int) -> WebhookEvent:
    """The event, if it exists and may be replayed; NotFound or UserError saying why not."""
    event = session.get(WebhookEvent, row_id)
    if event is None:
        raise NotFound(f"webhook event #{row_id} not found")
    if event.status not in REPLAYABLE:
        raise UserError(f"webhook event #{row_id} is {event.status}; only "
                        f"{', '.join(REPLAYABLE)} events can be replayed")
    return event


def replay(engine: Engine, row_id: int, *, actor: str, lease_seconds: float) -> WebhookEvent:
    """Process a failed, flagged or ignored event again (an operator's decision, audited).
    Effects stay once: an order already paid is not paid again."""
    now = utcnow()
    with Session(engine, expire_on_commit=False) as session:
        event = replayable(session, row_id)
        previous = event.status
        won = session.execute(
            update(WebhookEvent)
            .where(col(WebhookEvent.id) == row_id, col(WebhookEvent.status) == previous)
            .values(status=WebhookStatus.received.value, processed_at=None,
                    lease_until=now + timedelta(seconds=lease_seconds))
            .execution_options(synchronize_session=False)
        ).rowcount
        if not won:
            raise UserError(f"webhook event #{row_id} changed meanwhile; look at it again")
        closed = _close_failed_jobs_of(session, row_id, actor, now)
        session.add(ActivityLog(actor=actor, action="webhook.replay", entity="webhook_event",
                                entity_id=str(row_id),
                                details={"provider": event.provider, "event_id": event.event_id,
                                         "previous_status": previous, "error": event.error,
                                         "closed_failed_jobs": closed}))
        session.commit()
        session.refresh(event)
    enqueue_or_leave(row_id)
    return event


def _close_failed_jobs_of(session: Session, row_id: int, actor: str, now: datetime
                         ) -> list[int]:
    """The failed processing jobs this replay does the work of: those that carried the event
    and no other event still failed (a job carries the events of one group commit; one whose
    other events still wait for a replay stays open for them)."""
    from kolaq_console.jobs.failed import discard_calls, open_calls

    conn = session.connection()
    calls = [(i, [a for a in args if isinstance(a, int)])
             for i, args in open_calls(conn, TASK)]
    calls = [(i, ids) for i, ids in calls if row_id in ids]
    others = {e for _, ids in calls for e in ids if e != row_id}
    still_failed = set(session.execute(
        select(WebhookEvent.id).where(col(WebhookEvent.id).in_(others),
                                      col(WebhookEvent.status) == WebhookStatus.failed.value)
    ).scalars()) if others else set()
    done = [i for i, ids in calls if not still_failed.intersection(ids)]
    return discard_calls(conn, done, actor, f"webhook event #{row_id} was replayed", now)


def list_events(session: Session, status: str | None = None, provider: str | None = None,
                limit: int = 50) -> list[WebhookEvent]:
    """Newest first: by the time each was received (ids follow it, except for events stored
    after the fact, such as the demo's)."""
    query = select(WebhookEvent)
    if status:
        if status not in STATUSES:
            raise UserError(f"unknown webhook status {status!r}; expected one of: "
                            f"{', '.join(STATUSES)}")
        query = query.where(WebhookEvent.status == status)
    if provider:
        query = query.where(WebhookEvent.provider == provider)
    return list(session.exec(query.order_by(col(WebhookEvent.received_at).desc(),
                                             col(WebhookEvent.id).desc()).limit(limit)).all())


def get_event(session: Session, row_id: int) -> WebhookEvent:
    event = session.get(WebhookEvent, row_id)
    if event is None:
        raise NotFound(f"webhook event #{row_id} not found")
    return event
