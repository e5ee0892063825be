"""Queue depths read straight from Huey's storage (sqlite3 or redis-py), without importing Huey:
`status --json`'s fast path. The same reads as taskqueue.pending_by_queue/scheduled_by_queue,
except that a non-empty schedule is not read (telling its queues apart means unpickling each
signed payload with Huey): then `peek` returns None and the caller takes the full path.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from urllib.parse import quote

from kolaq_console.queuebands import BAND_WIDTH, LOGICAL_QUEUES, PRIORITY_BANDS, queue_for_priority

Depths = dict[str, tuple[int, int]]  # logical queue -> (pending, scheduled)


def _empty_schedule(pending: dict[str, int]) -> Depths:
    return {name: (pending[name], 0) for name in LOGICAL_QUEUES}


def peek_sqlite(path: str, name: str, timeout: float = 5.0) -> Depths | None:
    """A SqliteHuey queue file; None when it is missing or its schedule is not empty."""
    file = Path(path)
    if not file.is_file():
        return None  # the full path words the problem
    uri = f"file:{quote(str(file.resolve()))}?mode=rw"  # never creates the file
    conn = sqlite3.connect(uri, uri=True, timeout=timeout)
    try:
        scheduled = conn.execute("select count(id) from schedule where queue=?",
                                 (name,)).fetchone()[0]
        if scheduled:
            return None
        pending = dict.fromkeys(LOGICAL_QUEUES, 0)
        for priority, n in conn.execute(
                "select priority, count(*) from task where queue = ? group by priority", (name,)):
            pending[queue_for_priority(priority)] += n
    finally:
        conn.close()
    return _empty_schedule(pending)


def peek_redis(url: str, name: str) -> Depths | None:
    """A PriorityRedisHuey queue: one round trip for the bands and the schedule's size."""
    import redis  # only for a Redis queue

    key = re.sub("[^A-Za-z0-9_]", "", name)  # huey's RedisStorage.clean_name
    client = redis.Redis.from_url(url)
    try:
        client.ping()
        pipe = client.pipeline(transaction=False)
        names = list(PRIORITY_BANDS)
        for band in names:
            base = PRIORITY_BANDS[band]
            pipe.zcount(f"huey.redis.{key}", -(base + BAND_WIDTH - 1), -base)
        pipe.zcount(f"huey.redis.{key}", f"({-min(PRIORITY_BANDS.values())}", "+inf")
        pipe.zcard(f"huey.schedule.{key}")
        *band_counts, other, scheduled = pipe.execute()
    finally:
        client.close()
    if scheduled:
        return None
    pending = dict(zip(names, (int(n) for n in band_counts), strict=True))
    pending["inventory"] += int(other)
    return _empty_schedule(pending)
