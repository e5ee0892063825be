"""One provider rate limiter shared by every worker thread and process.

It lives in the queue's own storage, so whatever runs the queue also shares the limit: a hash
in Redis (updated by one Lua script, on the Redis server's clock) for the redis backend, a row
in a small table of the SqliteHuey file (updated inside `BEGIN IMMEDIATE`) for sqlite.

The algorithm is GCRA ("virtual scheduling"): the state holds the theoretical arrival time
`tat` of the next request. A caller reserves the slot `max(tat, now)`, moves `tat` one interval
on and sleeps until its slot, so requests from every worker leave evenly spaced, at most
`rate` per second, whatever the number of threads. The interval carries a 5 % allowance so that
scheduling jitter between the reservation and the request reaching the provider does not push
two requests into the provider's one-second window.

`rate_limit_per_second = 0` turns client-side pacing off (a plan without a per-second limit,
the local stand-in): there is nothing to reserve, so `acquire` makes no round trip per request
and provider-advertised limits are not followed; blocks still hold every worker, see
`SharedBlocks`.

It adapts to the provider:
- `ratelimit-limit` lower than the configured rate lowers the rate for every worker (for a
  minute, renewed by each response that says so);
- `ratelimit-remaining: 0` makes the next request wait at least one interval from now;
- a 429's `retry-after`, or an exhausted daily/monthly quota, blocks every worker until then
  (`block`). A caller whose wait for a block exceeds `max_block_wait` is told so instead of
  reserving, so the job can be rescheduled rather than hold a worker thread for hours.

A little over 400 lines: the same limiter twice (a Lua script for Redis, a transaction for
SQLite) so both queue backends share one contract and one test suite.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kolaq_console.config import Settings

JITTER_ALLOWANCE = 0.05
LEARNED_RATE_TTL = 60.0
STATE_TTL_SECONDS = 2 * 24 * 3600


@dataclass(frozen=True)
class Grant:
    """The limiter's answer. `ok`: a slot is reserved, sleep `wait` seconds then send.
    Not `ok`: every worker is blocked for `wait` more seconds (`reason` says why)."""

    ok: bool
    wait: float
    reason: str = ""


class RateLimiter(Protocol):
    paced: bool  # requests are spaced (a rate is set): each acquire reserves a slot

    def acquire(self, max_block_wait: float) -> Grant: ...

    def block(self, seconds: float, reason: str) -> None: ...

    def observe(self, headers: Mapping[str, str]) -> None: ...

    def state(self) -> dict[str, float | str]: ...


def interval_for(rate_per_second: float) -> float:
    """Seconds between two requests at `rate_per_second`; 0 (no limit) gives 0."""
    return (1.0 + JITTER_ALLOWANCE) / rate_per_second if rate_per_second > 0 else 0.0


def observation_matters(base_interval: float, limit: int | None, remaining: int | None) -> bool:
    """Would a response with these ratelimit-* headers change the shared state? Only a limit
    below the configured rate, or nothing remaining, does; anything else is skipped without a
    round trip (the state would be written back unchanged). Unpaced limiters follow neither."""
    if base_interval <= 0:
        return False
    if limit is not None and limit > 0 and interval_for(limit) > base_interval:
        return True
    return remaining is not None and remaining <= 0


BLOCK_REFRESH_SECONDS = 1.0


class SharedBlocks:
    """`acquire` of an unpaced limiter (rate 0): no reservation, so no round trip per request.
    Blocks (a 429's retry-after, an exhausted quota) are still shared: `block` writes them to
    the shared state for every process and notes them here at once; the shared state is
    re-read at most every `refresh` seconds, so another process's block holds this one within
    that time (a request sent meanwhile meets the provider's 429 and blocks too)."""

    def __init__(self, read_blocked: Callable[[], tuple[float, str]],
                 refresh: float = BLOCK_REFRESH_SECONDS) -> None:
        self._read_blocked = read_blocked  # (seconds still blocked, reason), from the store
        self.refresh = refresh
        self._lock = threading.Lock()
        self._until = 0.0  # time.monotonic() of the end of the known block
        self._reason = ""
        self._next_read = 0.0

    def acquire(self, max_block_wait: float) -> Grant:
        now = time.monotonic()
        if now >= self._next_read:
            with self._lock:  # one reader per refresh; the others use what is known
                read = now >= self._next_read
                if read:
                    self._next_read = now + self.refresh
            if read:
                try:
                    blocked, reason = self._read_blocked()
                except BaseException:
                    self._next_read = 0.0
                    raise
                self.note(blocked, reason, now)
        with self._lock:
            blocked, reason = self._until - now, self._reason
        if blocked > max_block_wait:
            return Grant(False, blocked, reason)
        return Grant(True, max(0.0, blocked))

    def note(self, seconds: float, reason: str, now: float | None = None) -> None:
        until = (time.monotonic() if now is None else now) + seconds
        with self._lock:
            if until > self._until:
                self._until, self._reason = until, reason


def parse_rate_headers(headers: Mapping[str, str]) -> tuple[int | None, int | None]:
    """(ratelimit-limit, ratelimit-remaining) when present and numeric."""
    lower = {k.lower(): v for k, v in headers.items()}

    def number(name: str) -> int | None:
        try:
            return int(float(lower[name]))
        except (KeyError, ValueError, TypeError):
            return None

    return number("ratelimit-limit"), number("ratelimit-remaining")


def retry_after_seconds(headers: Mapping[str, str], default: float = 1.0) -> float:
    """The `retry-after` header in seconds (numeric form; HTTP dates fall back to `default`)."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        value = float(lower["retry-after"])
    except (KeyError, ValueError, TypeError):
        return default
    return value if math.isfinite(value) and value >= 0 else default


# --- the decision, shared by the SQLite limiter and (in Lua) by the Redis one ----------------


@dataclass
class _State:
    tat: float = 0.0
    learned_interval: float = 0.0
    learned_until: float = 0.0
    blocked_until: float = 0.0
    blocked_reason: str = ""

    def interval(self, base: float, now: float) -> float:
        if self.learned_interval > base and self.learned_until > now:
            return self.learned_interval
        return base

    def acquire(self, now: float, base: float, max_block_wait: float) -> Grant:
        blocked = self.blocked_until - now
        if blocked > max_block_wait:
            return Grant(False, blocked, self.blocked_reason)
        start = max(self.tat, now, self.blocked_until)
        self.tat = start + self.interval(base, now)
        return Grant(True, start - now)

    def block(self, now: float, seconds: float, reason: str) -> None:
        if now + seconds > self.blocked_until:
            self.blocked_until = now + seconds
            self.blocked_reason = reason

    def observe(self, now: float, base: float, limit: int | None, remaining: int | None) -> None:
        if limit is not None and limit > 0:
            learned = interval_for(limit)
            if learned > base:
                self.learned_interval, self.learned_until = learned, now + LEARNED_RATE_TTL
        if remaining is not None and remaining <= 0:
            self.blocked_until = max(self.blocked_until, now + self.interval(base, now))


# --- SQLite ------------------------------------------------------------------------------------

_SQLITE_SCHEMA = """
create table if not exists kolaq_rate_limit (
    name text primary key,
    tat real not null default 0,
    learned_interval real not null default 0,
    learned_until real not null default 0,
    blocked_until real not null default 0,
    blocked_reason text not null default ''
)
"""


class SqliteRateLimiter:
    """State in a table of the SqliteHuey file; `BEGIN IMMEDIATE` serialises every process."""

    def __init__(self, path: str, name: str, rate_per_second: float) -> None:
        self.path = path
        self.name = name
        self.base_interval = interval_for(rate_per_second)
        self.paced = rate_per_second > 0
        self.blocks = SharedBlocks(self._blocked) if rate_per_second <= 0 else None
        self._local = threading.local()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as conn:
            conn.execute(_SQLITE_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("pragma journal_mode=wal")
            self._local.conn = conn
        return conn

    def _transaction(self):
        limiter = self

        class _Tx:
            def __enter__(self) -> sqlite3.Connection:
                self.conn = limiter._conn()
                self.conn.execute("begin immediate")
                return self.conn

            def __exit__(self, exc_type, *_: object) -> None:
                self.conn.execute("rollback" if exc_type else "commit")

        return _Tx()

    def _update(self, change) -> object:
        with self._transaction() as conn:
            row = conn.execute(
                "select tat, learned_interval, learned_until, blocked_until, blocked_reason "
                "from kolaq_rate_limit where name = ?",
                (self.name,),
            ).fetchone()
            state = _State(*row) if row else _State()
            result = change(state, time.time())
            conn.execute(
                "insert or replace into kolaq_rate_limit values (?, ?, ?, ?, ?, ?)",
                (self.name, state.tat, state.learned_interval, state.learned_until,
                 state.blocked_until, state.blocked_reason),
            )
            return result

    def acquire(self, max_block_wait: float) -> Grant:
        if self.blocks is not None:
            return self.blocks.acquire(max_block_wait)
        return self._update(lambda s, now: s.acquire(now, self.base_interval, max_block_wait))  # type: ignore[return-value]

    def block(self, seconds: float, reason: str) -> None:
        self._update(lambda s, now: s.block(now, seconds, reason))
        if self.blocks is not None:
            self.blocks.note(seconds, reason)

    def observe(self, headers: Mapping[str, str]) -> None:
        limit, remaining = parse_rate_headers(headers)
        if not observation_matters(self.base_interval, limit, remaining):
            return
        self._update(lambda s, now: s.observe(now, self.base_interval, limit, remaining))

    def _blocked(self) -> tuple[float, str]:
        state = self.state()
        return float(state["blocked_for"]), str(state["blocked_reason"])

    def state(self) -> dict[str, float | str]:
        def read(s: _State, now: float) -> dict[str, float | str]:
            return {
                "interval": s.interval(self.base_interval, now),
                "next_slot_in": max(0.0, s.tat - now),
                "blocked_for": max(0.0, s.blocked_until - now),
                "blocked_reason": s.blocked_reason if s.blocked_until > now else "",
            }

        return self._update(read)  # type: ignore[return-value]


# --- Redis -------------------------------------------------------------------------------------

# One script for every operation, on the server's clock (TIME), so processes on different
# machines agree. Numbers go back as strings: Redis truncates Lua numbers to integers.
_REDIS_SCRIPT = """
local key = KEYS[1]
local op = ARGV[1]
local base = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local h = redis.call('HMGET', key, 'tat', 'li', 'lu', 'bu', 'br')
local tat = tonumber(h[1]) or 0
local li = tonumber(h[2]) or 0
local lu = tonumber(h[3]) or 0
local bu = tonumber(h[4]) or 0
local br = h[5] or ''
local interval = base
if li > base and lu > now then interval = li end
local result = {'1', '0', ''}
if op == 'acquire' then
  local max_wait = tonumber(ARGV[3])
  if bu - now > max_wait then
    return {'0', tostring(bu - now), br}
  end
  local start = math.max(tat, now, bu)
  tat = start + interval
  result = {'1', tostring(start - now), ''}
elseif op == 'block' then
  local untilt = now + tonumber(ARGV[3])
  if untilt > bu then bu = untilt; br = ARGV[4] end
elseif op == 'observe' then
  local limit = tonumber(ARGV[3])
  local remaining = tonumber(ARGV[4])
  if limit and limit > 0 then
    local learned = (1 + tonumber(ARGV[5])) / limit
    if learned > base then li = learned; lu = now + tonumber(ARGV[6]) end
  end
  if li > base and lu > now then interval = li else interval = base end
  if remaining and remaining <= 0 then bu = math.max(bu, now + interval) end
elseif op == 'state' then
  return {tostring(interval), tostring(math.max(0, tat - now)), tostring(math.max(0, bu - now)),
          (bu > now) and br or ''}
end
redis.call('HSET', key, 'tat', tostring(tat), 'li', tostring(li), 'lu', tostring(lu),
           'bu', tostring(bu), 'br', br)
redis.call('EXPIRE', key, tonumber(ARGV[#ARGV]))
return result
"""


class RedisRateLimiter:
    """State in one Redis hash, changed only by one atomic Lua script."""

    def __init__(self, client, name: str, rate_per_second: float,
                 provider: str = "email") -> None:
        self.client = client
        self.key = f"kolaq.ratelimit.{name}.{provider}"
        self.base_interval = interval_for(rate_per_second)
        self.paced = rate_per_second > 0
        self.blocks = SharedBlocks(self._blocked) if rate_per_second <= 0 else None
        self._script = client.register_script(_REDIS_SCRIPT)

    def _run(self, op: str, *args: object) -> list[str]:
        argv = [op, repr(self.base_interval), *args, STATE_TTL_SECONDS]
        return [
            v.decode() if isinstance(v, bytes) else str(v)
            for v in self._script(keys=[self.key], args=argv)
        ]

    def acquire(self, max_block_wait: float) -> Grant:
        if self.blocks is not None:
            return self.blocks.acquire(max_block_wait)
        ok, wait, reason = self._run("acquire", repr(float(max_block_wait)))
        return Grant(ok == "1", float(wait), reason)

    def block(self, seconds: float, reason: str) -> None:
        self._run("block", repr(float(seconds)), reason)
        if self.blocks is not None:
            self.blocks.note(seconds, reason)

    def observe(self, headers: Mapping[str, str]) -> None:
        limit, remaining = parse_rate_headers(headers)
        if not observation_matters(self.base_interval, limit, remaining):
            return
        self._run(
            "observe",
            "" if limit is None else str(limit),
            "" if remaining is None else str(remaining),
            repr(JITTER_ALLOWANCE),
            repr(LEARNED_RATE_TTL),
        )

    def _blocked(self) -> tuple[float, str]:
        _, _, blocked, reason = self._run("state")
        return float(blocked), reason

    def state(self) -> dict[str, float | str]:
        interval, next_slot, blocked, reason = self._run("state")
        return {
            "interval": float(interval),
            "next_slot_in": float(next_slot),
            "blocked_for": float(blocked),
            "blocked_reason": reason,
        }


def make_limiter(settings: Settings, provider: str = "email",
                 rate: float | None = None) -> RateLimiter:
    """The limiter of `provider` ("email": Resend at [email] rate_limit_per_second; "sms":
    Twilio at `rate`) in this deployment's queue storage (one per process is enough)."""
    rate = settings.email.rate_limit_per_second if rate is None else rate
    q = settings.queue
    if q.backend == "redis":
        import redis

        client = redis.Redis.from_url(q.redis_url, socket_timeout=10, socket_connect_timeout=5)
        return RedisRateLimiter(client, q.name, rate, provider)
    name = q.name if provider == "email" else f"{q.name}.{provider}"
    return SqliteRateLimiter(q.sqlite_path, name, rate)
