"""The audit trail (activity_log) for people: newest first, narrowed by actor, action and
subject, each entry naming the record it is about (kind + key) so the console can follow it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, or_, select

from kolaq_console.models import ActivityLog

LIMIT = 200
# activity_log.entity -> the kind of record the console can open
RECORD_KINDS = {"product": "product", "order": "order", "customer": "customer",
                "email_outbox": "email", "failed_jobs": "job"}


@dataclass(frozen=True)
class ActivityEntry:
    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str | None
    details: dict[str, Any]

    @property
    def subject(self) -> str:
        """`product KB-ORNG-375`, `order KB-10004`, or the entity alone."""
        return f"{self.entity} {self.entity_id}" if self.entity_id else self.entity

    @property
    def record(self) -> tuple[str, str] | None:
        """(kind, key) of the record this entry is about, when the console has one to open
        (`failed_jobs` entries about many jobs name none)."""
        kind = RECORD_KINDS.get(self.entity)
        if kind is None or not self.entity_id or "," in self.entity_id:
            return None
        return kind, self.entity_id

    def summary(self) -> str:
        return ", ".join(f"{k} {_plain(v)}" for k, v in list((self.details or {}).items())[:4])


def _plain(value: Any, most: int = 5) -> str:
    """A detail for people: `ids 2, 3` rather than Python's `{'ids': [2, 3]}`."""
    if isinstance(value, dict):
        return " ".join(f"{k} {_plain(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        shown = ", ".join(_plain(v) for v in value[:most])
        return (shown + (f" (+{len(value) - most})" if len(value) > most else "")) or "-"
    return "-" if value is None else str(value)


def list_activity(session: Session, *, actor: str | None = None, action: str | None = None,
                  subject: str | None = None, limit: int = LIMIT) -> list[ActivityEntry]:
    """Newest first. `actor`: exactly (case-insensitive); `action`: a prefix
    (`inventory` matches inventory.adjust); `subject`: the entity's kind or a part of its
    key (`product`, `KB-10004`)."""
    query = select(ActivityLog)
    if actor:
        query = query.where(col(ActivityLog.actor).ilike(actor))
    if action:
        query = query.where(col(ActivityLog.action).startswith(action.lower()))
    if subject:
        query = query.where(or_(col(ActivityLog.entity) == subject.lower(),
                                col(ActivityLog.entity_id).ilike(f"%{subject}%")))
    # by time (indexed), not id: entries written later may tell of earlier moments (imports)
    newest = (col(ActivityLog.created_at).desc(), col(ActivityLog.id).desc())
    rows = session.exec(query.order_by(*newest).limit(limit)).all()
    return [ActivityEntry(r.id or 0, r.created_at, r.actor, r.action, r.entity, r.entity_id,
                          r.details or {}) for r in rows]
