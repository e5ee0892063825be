"""Periodic work on the shop's clock, once per slot however many consumers run it.

Huey (utc=True) hands `validate_datetime` a naive UTC timestamp each minute and matches its
crontabs against it, so a plain `crontab(hour=2)` fires at 02:00 UTC, which is 03:00 in Lagos.
`ShopCrontab` converts that timestamp to the shop's zone first, then matches the cron there.

Every consumer with periodic tasks enabled enqueues every periodic task, so each run first
claims its slot: a `schedule_runs` row, unique on (job, slot). The slot is the most recent
matching local minute (e.g. "2026-01-05T08:00"), so a run that starts late, a retry, and the
catch-up all name the same slot. Daylight saving: a local time skipped in spring never
matches (the catch-up then runs the day's latest earlier slot, if any); a local time that
happens twice in autumn is one slot, run once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, update
from sqlmodel import col, select

from kolaq_console.config import ConfigError
from kolaq_console.cron import Cron, CronError, parse_cron
from kolaq_console.db import session_scope
from kolaq_console.models import ScheduleRun, utcnow
from kolaq_console.sqlutil import insert_or_ignore

log = logging.getLogger(__name__)


def as_utc(timestamp: datetime) -> datetime:
    """Huey's naive UTC timestamps (and aware ones) as aware UTC."""
    if timestamp.tzinfo is None:
        return timestamp.replace(tzinfo=UTC)
    return timestamp.astimezone(UTC)


def slot_key(local: datetime) -> str:
    return local.strftime("%Y-%m-%dT%H:%M")


class ShopCrontab:
    """A `validate_datetime` for `huey.periodic_task` that matches on the shop's wall clock."""

    def __init__(self, expr: str, zone: ZoneInfo, setting: str = "crontab") -> None:
        try:
            self.cron: Cron = parse_cron(expr)
        except CronError as exc:
            raise ConfigError(f"{setting}: {exc} (got {expr!r})") from None
        self.zone = zone
        self.setting = setting

    def __call__(self, timestamp: datetime) -> bool:
        return self.cron.matches(as_utc(timestamp).astimezone(self.zone))

    def __repr__(self) -> str:
        return f"ShopCrontab({self.cron.expr!r}, {self.zone.key})"

    def local(self, now: datetime) -> datetime:
        return as_utc(now).astimezone(self.zone)

    def latest_slot(self, now: datetime) -> datetime | None:
        """The most recent matching local minute at or before `now` on the same local day.

        Walks back over UTC minutes (so DST gaps and repeats come out right); at most 1440
        cheap set lookups.
        """
        start = as_utc(now).replace(second=0, microsecond=0)
        today = start.astimezone(self.zone).date()
        minute = start
        while True:
            local = minute.astimezone(self.zone)
            if local.date() != today:
                return None
            if self.cron.matches(local):
                return local
            minute -= timedelta(minutes=1)


def local_date(now: datetime, zone: ZoneInfo) -> date:
    return as_utc(now).astimezone(zone).date()


# --- once per slot ---------------------------------------------------------------------------


def claim_slot(engine: Any, job: str, slot: str, stale_after: float,
               now: datetime | None = None) -> bool:
    """Claim (job, slot) for this run. False if another run has it: finished, or started less
    than `stale_after` seconds ago. A claim older than that with no finish is a crashed run's,
    and is taken over."""
    now = now or utcnow()
    with session_scope(engine) as session:
        values = {"job": job, "slot": slot, "details": {}, "started_at": now}
        if insert_or_ignore(session, ScheduleRun.__table__, values):  # type: ignore[arg-type]
            return True
        taken = session.execute(
            update(ScheduleRun)
            .where(
                col(ScheduleRun.job) == job,
                col(ScheduleRun.slot) == slot,
                col(ScheduleRun.finished_at).is_(None),
                col(ScheduleRun.started_at) < now - timedelta(seconds=stale_after),
            )
            .values(started_at=now, details={"taken_over": True})
        )
        if taken.rowcount:
            log.warning("%s slot %s: taking over a claim left by a crashed run", job, slot)
        return bool(taken.rowcount)


def finish_slot(engine: Any, job: str, slot: str, details: dict[str, Any]) -> None:
    with session_scope(engine) as session:
        session.execute(
            update(ScheduleRun)
            .where(col(ScheduleRun.job) == job, col(ScheduleRun.slot) == slot)
            .values(finished_at=utcnow(), details=details)
        )


def release_slot(engine: Any, job: str, slot: str) -> None:
    """Forget an unfinished claim (the run failed) so that a retry can claim it again."""
    with session_scope(engine) as session:
        session.execute(
            delete(ScheduleRun).where(
                col(ScheduleRun.job) == job,
                col(ScheduleRun.slot) == slot,
                col(ScheduleRun.finished_at).is_(None),
            )
        )


def slot_rows(session: Any, job: str, day: date) -> list[ScheduleRun]:
    """The job's runs whose slot falls on this local day."""
    return list(session.exec(
        select(ScheduleRun)
        .where(col(ScheduleRun.job) == job,
               col(ScheduleRun.slot).startswith(day.isoformat()))
        .order_by(col(ScheduleRun.id))
    ).all())


@dataclass
class SlotOutcome:
    job: str
    slot: str | None
    ran: bool
    reason: str = ""
    result: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.job, "slot": self.slot, "ran": self.ran, "reason": self.reason,
                "result": self.result}


def run_in_slot(engine: Any, job: str, schedule: ShopCrontab,
                work: Callable[[], dict[str, Any]], *, stale_after: float,
                now: datetime | None = None) -> SlotOutcome:
    """Run `work` once for the latest slot of `schedule` today, unless some run already has.

    A failing run releases its claim and re-raises, so the task's retry can claim it again.
    """
    now = now or utcnow()
    local = schedule.latest_slot(now)
    if local is None:
        return SlotOutcome(job, None, False, "no slot yet today")
    slot = slot_key(local)
    if not claim_slot(engine, job, slot, stale_after, now):
        log.info("%s slot %s: already claimed, skipping", job, slot)
        return SlotOutcome(job, slot, False, "already run")
    log.info("%s slot %s: claimed, running", job, slot)
    try:
        result = work()
    except BaseException:
        release_slot(engine, job, slot)
        raise
    finish_slot(engine, job, slot, result)
    return SlotOutcome(job, slot, True, "ran", result)
