"""A lease lock in the database: one holder at a time, expiring if the holder dies.

Huey's `lock_task` would do for mutual exclusion, but its TTL needs Redis >= 7.4 (we run 7.0)
and it would lock only within one queue backend. A `system_state` row works on SQLite and
PostgreSQL, whichever queue runs the job, and for the CLI too:

    key = "lease:<name>", value = {"owner": ..., "expires_at": <unix seconds>}

Acquire is one conditional statement (INSERT ... ON CONFLICT DO UPDATE ... WHERE expired or
ours), so two contenders can never both win: PostgreSQL checks that WHERE clause against the
latest committed row, waiting for a concurrent winner to commit, and SQLite runs writers one at
a time. The statements are built once per dialect and run on the session's connection (Core,
no ORM bookkeeping): a reconciliation takes, renews and gives back its lease every run.

The holder renews the lease as it works and renews it inside its final write transaction
(`renew(session)`), so a holder whose lease lapsed and was taken over cannot commit stale work
(a fencing check). Expiry uses the hosts' clocks: keep them in sync (NTP), as any lease
needs.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from functools import cache
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Engine
from sqlalchemy.sql.dml import Insert, Update
from sqlmodel import Session, col, select

from kolaq_console.db import session_scope
from kolaq_console.errors import KolaqError
from kolaq_console.models import SystemState, utcnow
from kolaq_console.sqlutil import upsert_insert


class LeaseBusy(KolaqError):
    """Another holder has the lease (retry later)."""


class LeaseLost(KolaqError):
    """The lease expired and someone else took it: the work done under it must not commit."""


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


_state = SystemState.__table__  # type: ignore[attr-defined]
_owner = _state.c.value["owner"].as_string()


@cache
def acquire_stmt(dialect: str) -> Insert:
    """Insert the lease, or take it over where it expired or is already ours; RETURNING the
    key when we hold it."""
    stmt = upsert_insert(dialect, _state).values(key=bindparam("b_key"), value=bindparam("b_value"),
                                        updated_at=bindparam("b_now"))
    free = ((_state.c.value["expires_at"].as_float() < bindparam("b_now_ts"))
            | (_owner == bindparam("b_owner")))
    return stmt.on_conflict_do_update(
        index_elements=[_state.c.key],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        where=free,
    ).returning(_state.c.key)


_SET_IF_OURS: Update = (
    update(_state)
    .where(_state.c.key == bindparam("b_key"), _owner == bindparam("b_owner"))
    .values(value=bindparam("b_value"), updated_at=bindparam("b_now"))
)


def give_back_stmt() -> Update:
    """Set the lease's value if we still hold it (rowcount 0: we lost it)."""
    return _SET_IF_OURS


class Lease:
    def __init__(self, engine: Engine, name: str, ttl: float, owner: str | None = None) -> None:
        self.engine = engine
        self.key = f"lease:{name}"
        self.name = name
        self.ttl = ttl
        self.owner = owner or default_owner()
        self.held = False

    def _value(self) -> dict[str, Any]:
        return {"owner": self.owner, "expires_at": time.time() + self.ttl}

    def acquire(self, session: Session | None = None) -> bool:
        """Take the lease if it is free, expired or already ours. Given a session, this is part
        of that transaction (and counts as held once it commits)."""
        if session is None:
            with session_scope(self.engine) as own:
                return self.acquire(own)
        conn = session.connection()
        self.held = conn.execute(acquire_stmt(conn.dialect.name),
                                 self.acquire_params()).first() is not None
        return self.held

    def acquire_params(self) -> dict[str, Any]:
        """The parameters of `acquire_stmt` (for callers that run it inside a statement of
        their own: incremental_pg.postgres_start)."""
        return {"b_key": self.key, "b_value": self._value(), "b_now": utcnow(),
                "b_now_ts": time.time(), "b_owner": self.owner}

    def _set_if_ours(self, session: Session, value: dict[str, Any]) -> int:
        return session.connection().execute(_SET_IF_OURS, self._set_params(value)).rowcount

    def _set_params(self, value: dict[str, Any]) -> dict[str, Any]:
        return {"b_key": self.key, "b_owner": self.owner, "b_value": value, "b_now": utcnow()}

    def give_back_params(self) -> dict[str, Any]:
        """The parameters of `give_back_stmt()` (for callers that run it in a round trip of
        their own: incremental_pg.postgres_fold), as SQLAlchemy would bind them."""
        return self._set_params({"owner": None, "expires_at": 0})

    def renew(self, session: Session | None = None) -> None:
        """Extend the lease; raise LeaseLost if it is no longer ours. Given a session, the
        renewal is part of that transaction (use it in the transaction that commits the work)."""
        if session is None:
            with session_scope(self.engine) as own:
                self.renew(own)
            return
        if not self._set_if_ours(session, self._value()):
            self.held = False
            raise LeaseLost(f"lease {self.name!r} expired and was taken by another run")

    def give_back(self, session: Session) -> None:
        """In the transaction that commits the holder's work: give the lease back, raising
        LeaseLost if it is no longer ours (fencing: that transaction then rolls back, and the
        lease row with it). Renewal and release in one statement."""
        if not self._set_if_ours(session, {"owner": None, "expires_at": 0}):
            self.held = False
            raise LeaseLost(f"lease {self.name!r} expired and was taken by another run")

    def release(self, session: Session | None = None) -> None:
        """Give the lease up. Given a session, the release is part of that transaction; the
        caller sets `held = False` once it has committed."""
        if session is None:
            if not self.held:
                return
            with session_scope(self.engine) as own:
                self.release(own)
            self.held = False
            return
        self._set_if_ours(session, {"owner": None, "expires_at": 0})

    def busy(self) -> LeaseBusy:
        holder = self.holder() or {}
        left = max(0.0, holder.get("expires_at", 0) - time.time())
        return LeaseBusy(
            f"{self.name} is already running (held by {holder.get('owner', 'another run')}, "
            f"lease expires in {left:.0f} s)"
        )

    def holder(self) -> dict[str, Any] | None:
        """The current holder's value if the lease is live, else None."""
        with Session(self.engine) as session:
            value = session.exec(
                select(SystemState.value).where(col(SystemState.key) == self.key)
            ).first()
        if value and value.get("owner") and value.get("expires_at", 0) >= time.time():
            return value
        return None

    def __enter__(self) -> Lease:
        if not self.acquire():
            raise self.busy()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
