"""The body an outbox row sends: its own, or, for a broadcast copy, the broadcast's one
rendering with the copy's unsubscribe token put in (a string replace: no template runs).

A broadcast copy stores only its recipient's part (address, token, headers, key) and empty
html/text; storing ~6 KB of the same HTML per copy, and rewriting it on every status change,
was a third of the worker's CPU per email (bench/README.md). The rendering is written once per
broadcast and never changes, so every attempt and every "send again" of a copy sends byte for
byte the same body. Rows stored before that keep their own bodies and are sent as they are.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from kolaq_console.models import BroadcastRendering

_R = BroadcastRendering.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Rendering:
    subject: str
    html: str
    text: str
    slot: str

    def body(self, token: str) -> tuple[str, str]:
        """(html, text) of the copy whose unsubscribe token is `token`."""
        return self.html.replace(self.slot, token), self.text.replace(self.slot, token)


def assembled(broadcast_id: int | None, token: str | None) -> bool:
    """Is a row with these values a copy whose body is put together at send time?"""
    return broadcast_id is not None and token is not None


@functools.lru_cache(maxsize=1)
def _renderings_statement():
    return (select(_R.c.broadcast_id, _R.c.subject, _R.c.html, _R.c.text, _R.c.slot)
            .where(_R.c.broadcast_id.in_(bindparam("ids", expanding=True))))


def renderings(conn: Connection | Session, broadcast_ids: Iterable[int]) -> dict[int, Rendering]:
    """The stored renderings of these broadcasts (those that have one)."""
    ids = sorted(set(broadcast_ids))
    if not ids:
        return {}
    rows = conn.execute(_renderings_statement(), {"ids": ids}).all()
    return {r.broadcast_id: Rendering(r.subject, r.html, r.text, r.slot) for r in rows}


def body_of(conn: Connection | Session, row) -> tuple[str, str]:
    """(html, text) that outbox row `row` sends (what the CLI and the console show)."""
    if not assembled(row.broadcast_id, row.unsubscribe_token):
        return row.html, row.text
    rendering = renderings(conn, [row.broadcast_id]).get(row.broadcast_id)
    if rendering is None:  # the rendering is written before any copy: a damaged database
        raise LookupError(f"email #{row.id}: the rendering of broadcast #{row.broadcast_id} "
                          "is missing")
    return rendering.body(row.unsubscribe_token)
