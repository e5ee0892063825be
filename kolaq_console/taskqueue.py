"""The Huey instance, built from settings, and the three logical queues.

One Huey queue carries every job so that a plain `huey_consumer tasks.huey` runs them all. The
logical queue of a job is encoded in its priority band: webhooks 300-399, emails 200-299,
inventory 100-199. That makes per-queue depth an index read, not a scan of pickles:
SQLite `GROUP BY priority` over Huey's (queue, priority, id) index, Redis `ZCOUNT` over the
priority sorted set. It also gives the business order we want when work piles up: payments
first, then customer email, then stock bookkeeping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from huey import PriorityRedisHuey, SqliteHuey
from huey.api import Huey
from huey.consumer import Consumer
from huey.serializer import SignedSerializer
from huey.signals import SIGNAL_ERROR
from huey.storage import RedisPriorityQueue, SqliteStorage

from kolaq_console.config import Settings
from kolaq_console.consumer import KolaqConsumer
from kolaq_console.db import StorageUnavailable
from kolaq_console.errors import PermanentJobError
from kolaq_console.payloads import KolaqRedisStorage, KolaqSqliteStorage, VerifyingHueyMixin
from kolaq_console.queuebands import (
    BAND_WIDTH,
    LOGICAL_QUEUES,
    PRIORITY_BANDS,
    queue_for_priority,
)
from kolaq_console.signing import queue_signing_key

log = logging.getLogger(__name__)

# Huey's consumer defaults, which our settings replace when the command line left them alone.
_HUEY_DEFAULTS = {
    "workers": 1,
    "max_delay": 10.0,
    "shutdown_timeout": None,
    "graceful_signal": "INT",
}


def priority_for(queue: str, urgency: int = 0) -> int:
    """The Huey priority of a job on `queue`; `urgency` (0-99) orders jobs within the queue."""
    if queue not in PRIORITY_BANDS:
        raise ValueError(f"unknown logical queue {queue!r}; expected one of {LOGICAL_QUEUES}")
    if not 0 <= urgency < BAND_WIDTH:
        raise ValueError(f"urgency must be 0-{BAND_WIDTH - 1}, got {urgency}")
    return PRIORITY_BANDS[queue] + urgency


class _SettingsConsumerMixin:
    """Apply [queue] settings to consumers, including those `huey_consumer` starts.

    `huey_consumer` passes every option, at Huey's default when its flag was not given, so an
    option still at Huey's default is taken as "not chosen" and the setting fills it. Callers
    of our own that choose a value on purpose name it in `kolaq_explicit`, so that e.g.
    `workers=1` (Huey's default) is not replaced by [queue] workers."""

    kolaq_settings: Settings

    def check_before_consuming(self, check: Callable[[Settings], Any]) -> None:
        """Run `check(settings)` before any consumer starts: it raises (a ConfigError, one
        line) to refuse a configuration on which the tasks could not do their work."""
        self.__dict__.setdefault("_kolaq_checks", []).append(check)

    def check_ready(self) -> None:
        """Raise what a check registered with `check_before_consuming` raises, if any."""
        for check in self.__dict__.get("_kolaq_checks", ()):
            check(self.kolaq_settings)

    def create_consumer(self, **options: Any) -> Consumer:
        self.check_ready()
        explicit = set(options.pop("kolaq_explicit", ()))
        q = self.kolaq_settings.queue
        ours = {
            "workers": q.workers,
            "max_delay": q.max_poll_interval,
            "shutdown_timeout": q.shutdown_timeout,
            "graceful_signal": "TERM",  # supervisors (systemd, k8s) stop with SIGTERM
        }
        for key, value in ours.items():
            if key in explicit:
                continue
            if options.get(key, _HUEY_DEFAULTS[key]) == _HUEY_DEFAULTS[key]:
                options[key] = value
        options.setdefault("initial_delay", q.poll_interval)
        if not q.periodic:
            options["periodic"] = False
        return KolaqConsumer(self, outage_max_delay=q.outage_max_delay,  # type: ignore[arg-type]
                             kolaq_scheduler_interval=q.scheduler_interval, **options)


def _stop_retrying_permanent_errors(signal: str, task: Any, exc: BaseException | None = None):
    # Runs inside Huey's error handling, before it decides whether to retry.
    if isinstance(exc, PermanentJobError):
        task.retries = 0


class KolaqSqliteHuey(VerifyingHueyMixin, _SettingsConsumerMixin, SqliteHuey):
    storage_class = KolaqSqliteStorage


class KolaqRedisHuey(VerifyingHueyMixin, _SettingsConsumerMixin, PriorityRedisHuey):
    storage_class = KolaqRedisStorage


def make_huey(settings: Settings, **overrides: Any) -> Huey:
    """The queue for these settings. Payloads are HMAC-signed: a forged pickle is refused, and
    reported to the instance's `on_rejected` listeners (the job ledger records it)."""
    q = settings.queue
    options: dict[str, Any] = {
        "name": q.name,
        "results": False,  # the database (outbox, ledger) is the record, not Huey results
        "utc": True,
        "serializer": SignedSerializer(secret=queue_signing_key(settings), salt="kolaq"),
        "store_intermediate_errors": False,
    }
    options.update(overrides)
    huey: Huey
    if q.backend == "redis":
        huey = KolaqRedisHuey(url=q.redis_url, **options)
    else:
        Path(q.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
        huey = KolaqSqliteHuey(filename=q.sqlite_path, **options)
    huey.kolaq_settings = settings  # type: ignore[attr-defined]
    huey.signal(SIGNAL_ERROR)(_stop_retrying_permanent_errors)
    return huey


def task_options(settings: Settings, queue: str, *, retry: bool = True, urgency: int = 0) -> dict:
    """Keyword arguments for `huey.task()`: the queue's priority band and the retry policy."""
    q = settings.queue
    options: dict[str, Any] = {"priority": priority_for(queue, urgency)}
    if retry:
        options.update(retries=q.retries, retry_delay=q.retry_delay, retry_backoff=q.retry_backoff)
    return options


@dataclass
class QueueDepth:
    """Jobs of one logical queue; None: could not be read (unknown, never shown as 0)."""

    pending: int | None = None
    scheduled: int | None = None
    in_flight: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return asdict(self)


def ping_queue(huey: Huey) -> None:
    """Raise StorageUnavailable with a one-line reason if the queue storage cannot be reached."""
    storage = huey.storage
    try:
        if isinstance(storage, SqliteStorage):
            storage.sql("select 1", results=True)
        else:
            storage.conn.ping()
    except Exception as exc:
        where = getattr(storage, "filename", None) or _redis_location(huey)
        raise StorageUnavailable(f"queue storage {where}: {exc}") from exc


def _redis_location(huey: Huey) -> str:
    kwargs = huey.storage.conn.connection_pool.connection_kwargs
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


def pending_by_queue(huey: Huey) -> dict[str, int]:
    counts = dict.fromkeys(LOGICAL_QUEUES, 0)
    storage = huey.storage
    if isinstance(storage, SqliteStorage):
        rows = storage.sql(
            "select priority, count(*) from task where queue = ? group by priority",
            (storage.name,),
            results=True,
        )
        for priority, n in rows:
            counts[queue_for_priority(priority)] += n
    elif isinstance(storage, RedisPriorityQueue):
        # Scores are negated priorities; three O(log n) ZCOUNTs in one round trip.
        pipe = storage.conn.pipeline(transaction=False)
        names = list(PRIORITY_BANDS)
        for name in names:
            base = PRIORITY_BANDS[name]
            pipe.zcount(storage.queue_key, -(base + BAND_WIDTH - 1), -base)
        below = min(PRIORITY_BANDS.values())
        pipe.zcount(storage.queue_key, f"({-below}", "+inf")  # anything below every band
        *band_counts, other = pipe.execute()
        for name, n in zip(names, band_counts, strict=True):
            counts[name] += n
        counts["inventory"] += other
    else:  # memory storage in tests: small, so deserialising is fine
        for data in storage.enqueued_items():
            counts[queue_for_priority(huey.deserialize_task(data).priority)] += 1
    return counts


SCHEDULE_SCAN_LIMIT = 10_000


def scheduled_by_queue(huey: Huey) -> dict[str, int]:
    """Retries and delayed jobs per queue. The schedule holds only delays and retries, so it is
    read; past SCHEDULE_SCAN_LIMIT items the rest is split in the proportions of those read."""
    counts = dict.fromkeys(LOGICAL_QUEUES, 0)
    storage = huey.storage
    total = storage.schedule_size()
    for data in storage.scheduled_items(limit=SCHEDULE_SCAN_LIMIT):
        try:
            priority = huey.deserialize_task(data).priority
        except Exception:  # a payload we cannot read is still a scheduled item
            priority = None
        counts[queue_for_priority(priority)] += 1
    read = sum(counts.values())
    if total > read > 0:
        counts = {name: round(n * total / read) for name, n in counts.items()}
    return counts


def queue_depths(huey: Huey, in_flight: dict[str, int] | None = None) -> dict[str, QueueDepth]:
    """Pending and scheduled from the queue; in flight from the ledger (None: unknown)."""
    pending = pending_by_queue(huey)
    scheduled = scheduled_by_queue(huey)
    return {
        name: QueueDepth(pending[name], scheduled[name],
                         None if in_flight is None else in_flight.get(name, 0))
        for name in LOGICAL_QUEUES
    }
