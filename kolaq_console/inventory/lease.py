"""A lease lock in the database: one holder at a time, expiring if the holder dies.

Huey's `lock_task` would do for mutual exclusion, but its TTL needs Redis >= 7.4 (we run 7.0)
and it would lock only within one queue backend. A `system_state` row works on SQLite and
PostgreSQL, whichever queue runs the job, and for the CLI too:

    key = "lease:<name>", value = {"owner": ..., "expires_at": <unix seconds>}

Acquire is one conditional statement (insert if absent, else update where expired or ours),
so two contenders can never both win: PostgreSQL re-checks the WHERE clause against the row a
concurrent winner committed, SQLite runs writers one at a time. The holder renews the lease as
it works and renews it inside its final write transaction (`renew(session)`), so a holder
whose lease lapsed and was taken over cannot commit stale work (a fencing check). Expiry
uses the hosts' clocks: keep them in sync (NTP), as any lease needs.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kolaq_console.db import session_scope
from kolaq_console.errors import KolaqError
from kolaq_console.models import SystemState, utcnow
from kolaq_console.sqlutil import insert_or_ignore


class LeaseBusy(KolaqError):
    """Another holder has the lease (retry later)."""


class LeaseLost(KolaqError):
    """The lease expired and someone else took it: the work done under it must not commit."""


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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
        if insert_or_ignore(session, SystemState.__table__,  # type: ignore[arg-type]
                            {"key": self.key, "value": self._value(), "updated_at": utcnow()}):
            self.held = True
            return True
        value = col(SystemState.value)
        result = session.execute(
            update(SystemState)
            .where(
                col(SystemState.key) == self.key,
                (value["expires_at"].as_float() < time.time())
                | (value["owner"].as_string() == self.owner),
            )
            .values(value=self._value(), updated_at=utcnow())
        )
        self.held = bool(result.rowcount)
        return self.held

    def renew(self, session: Session | None = None) -> None:
        """Extend the lease; raise LeaseLost if it is no longer ours. Given a session, the
        renewal is part of that transaction (use it in the transaction that commits the work)."""
        if session is None:
            with session_scope(self.engine) as own:
                self.renew(own)
            return
        result = session.execute(
            update(SystemState)
            .where(col(SystemState.key) == self.key,
                   col(SystemState.value)["owner"].as_string() == self.owner)
            .values(value=self._value(), updated_at=utcnow())
        )
        if not result.rowcount:
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
        session.execute(
            update(SystemState)
            .where(col(SystemState.key) == self.key,
                   col(SystemState.value)["owner"].as_string() == self.owner)
            .values(value={"owner": None, "expires_at": 0}, updated_at=utcnow())
        )

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
