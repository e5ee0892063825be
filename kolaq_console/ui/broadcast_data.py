"""What the broadcasts screen reads, in one call per poll, and the operator's actions on it.
No Textual here: these run in worker threads and are tested alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from kolaq_console.broadcasts import audience as audiences
from kolaq_console.broadcasts import progress
from kolaq_console.config import Settings
from kolaq_console.errors import KolaqError
from kolaq_console.models import Broadcast, BroadcastStatus, Product


@dataclass
class Reach:
    """The composer's audience: its count net of unsubscribed and suppressed addresses, or
    why it cannot be counted (an unknown audience or SKU)."""

    audience: str
    count: int | None = None
    problem: str | None = None


@dataclass
class BroadcastsView:
    broadcasts: list[progress.Progress]
    followed: progress.Progress | None
    reach: Reach
    skus: list[str] = field(default_factory=list)


LIMIT = 100


def reach(session: Session, settings: Settings, audience: str) -> Reach:
    try:
        who = audiences.parse(audience)
        return Reach(who.name, audiences.count(session, settings, who))
    except KolaqError as exc:
        return Reach(audience.strip(), problem=str(exc))


def followed_id(rows: list[progress.Progress], chosen: int | None) -> int | None:
    """The broadcast the progress panel follows: the chosen one, else the newest running."""
    if chosen is not None:
        return chosen
    for p in rows:
        if p.status in (BroadcastStatus.sending.value, BroadcastStatus.paused.value):
            return p.id
    return None


def load(engine: Engine, settings: Settings, *, audience: str, chosen: int | None,
         now: datetime, with_skus: bool = False) -> BroadcastsView:
    with Session(engine) as session:
        rows = [progress.of(session, b, now) for b in session.execute(
            select(Broadcast).order_by(col(Broadcast.id).desc()).limit(LIMIT)).scalars()]
        follow = followed_id(rows, chosen)
        followed = next((p for p in rows if p.id == follow), None)
        if follow is not None and followed is None:
            followed = progress.progress(session, follow, now)
        skus = list(session.execute(select(Product.sku).order_by(Product.sku)).scalars()
                    ) if with_skus else []
        return BroadcastsView(rows, followed, reach(session, settings, audience), skus)


def latest_draft(engine: Engine) -> Broadcast | None:
    with Session(engine, expire_on_commit=False) as session:
        return session.execute(
            select(Broadcast).where(col(Broadcast.status) == BroadcastStatus.draft.value)
            .order_by(col(Broadcast.id).desc()).limit(1)
        ).scalar_one_or_none()
