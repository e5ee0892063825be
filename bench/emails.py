"""Emails per second (queue -> send -> row updated) next to raw Huey no-op tasks/s.

Both sides run on the same Redis, each consumed by ONE worker process with the same number of
threads and the same poll settings (taken from [queue]), started once and alternated round by
round (A B, B A, ...) so the machine's noise falls on both:
- emails: `kolaq-console worker -w N` sends through the real resend SDK to the local stand-in
  and marks each outbox row sent. The client-side rate limit is FORCED OFF
  (KOLAQ_EMAIL__RATE_LIMIT_PER_SECOND=0, whatever config.toml says; --rate-limit R puts one
  back), so this measures the pipeline, not the provider's quota (the stand-in has none);
- no-op: `huey_consumer` running a task that only records its completion time in Redis.

Each round measures two things per side:
- end to end: this process queues (emails: `outbox.add`: validate, render, insert, commit,
  enqueue; no-op: enqueue) while the worker runs; from the first queue call to the last
  completion (the sent_at of the last row; the no-op's recorded time);
- drain: the items are queued first into a staging queue (emails: rows committed), then moved
  into the worker's queue in one Redis RENAME; from the move to the last completion.
The steady rate (completions between the 10th and 90th percentile, by their timestamps) is
printed too: it leaves out the consumer's wake-up and the last stragglers.
Also printed: CPU milliseconds per item of each process (Linux /proc), which says where the
time goes on a machine whose cores all these processes share.

    PYTHONPATH=$PWD .venv/bin/python bench/emails.py [--quick] [--emails N] [--rounds R]
        [--workers N] [--postgres | --database-url URL] [--rate-limit R]

Longer than ~400 lines: a benchmark run as one file (`python bench/emails.py`), its worker
processes and measuring together.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the Resend stand-in lives with the tests

KEY = "test-key-not-real"
NOOP_MODULE = '''
import os
import time
from huey import PriorityRedisHuey
huey = PriorityRedisHuey(os.environ["BENCH_NAME"], url=os.environ["BENCH_REDIS_URL"],
                         results=False)
DONE = os.environ["BENCH_NAME"] + ".done"

@huey.task()
def noop(i):
    huey.storage.conn.rpush(DONE, repr(time.time()))
'''
POLL = 0.02  # how often this process looks for the end of a round (timestamps give the figure)


# --- helpers ---------------------------------------------------------------------------------


def wait_for(predicate, timeout: float, what: str, every: float = POLL) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(every)


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    fh = log.open("ab")
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_for_log(log: Path, text: str, timeout: float = 30) -> None:
    wait_for(lambda: text in log.read_text(errors="replace"), timeout, f"{text!r} in {log}")


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU of a process (Linux); None where /proc cannot tell."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return None


class CpuMeter:
    """CPU used by named processes between `start()` and `stop()`. A name maps to a pid
    (None = this process) or to a callable listing pids (e.g. the PostgreSQL backends of the
    bench database); a process that appeared meanwhile counts from its start."""

    def __init__(self, pids: dict[str, Any]) -> None:
        self.pids = pids
        self._before: dict[str, dict[int | None, float]] = {}

    def _read(self, target) -> dict[int | None, float]:
        pids = target() if callable(target) else [target]
        found = {pid: cpu_seconds(pid) for pid in pids}
        return {pid: t for pid, t in found.items() if t is not None}

    def start(self) -> None:
        self._before = {name: self._read(target) for name, target in self.pids.items()}

    def stop(self) -> dict[str, float]:
        used = {}
        for name, target in self.pids.items():
            now, before = self._read(target), self._before.get(name, {})
            if now:
                used[name] = sum(t - before.get(pid, 0.0) for pid, t in now.items())
        return used


def postgres_backends(database: str):
    """A callable listing the pids of the server processes serving `database` (same host)."""
    def pids() -> list[int]:
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"postgres: ") and f" {database} ".encode() in cmdline:
                found.append(int(proc.name))
        return found
    return pids


@dataclass
class Round:
    n: int
    elapsed: float  # seconds from the start to the last completion
    steady: float  # items/s between the 10th and 90th percentile completions
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process

    @property
    def rate(self) -> float:
        return self.n / self.elapsed


def measure(n: int, t0: float, times: list[float], cpu: dict[str, float]) -> Round:
    times = sorted(times)
    lo, hi = len(times) // 10, len(times) * 9 // 10 - 1
    span = times[hi] - times[lo]
    steady = (hi - lo) / span if span > 0 else float("nan")
    return Round(n, times[-1] - t0, steady, cpu)


def stage(live, staging, task) -> None:
    """Put `task` (of Huey `live`) in the queue of `staging`, to be moved over later."""
    staging.storage.enqueue(live.serialize_task(task), task.priority)


def machine_probe(conn) -> str:
    """How fast this shared machine is right now: a Redis round trip and a pure-Python loop.
    Absolute figures move with it (other jobs, CPU steal); the paired ratios much less."""
    conn.ping()
    t = time.perf_counter()
    for _ in range(2000):
        conn.ping()
    ping = (time.perf_counter() - t) / 2000
    t = time.process_time()
    x = 0
    for i in range(1_000_000):
        x += i
    loop = time.process_time() - t
    return f"Redis PING {ping * 1e6:.0f} us, 1M-iteration Python loop {loop * 1000:.0f} ms"


def redis_pid(conn) -> int | None:
    try:
        host = conn.connection_pool.connection_kwargs.get("host", "127.0.0.1")
        if host not in ("127.0.0.1", "localhost", "::1"):
            return None
        return int(conn.info("server")["process_id"])
    except Exception:
        return None


# --- the no-op side --------------------------------------------------------------------------


class NoopSide:
    label = "no-op"

    def __init__(self, args, workdir: Path, settings, stack: ExitStack) -> None:
        import redis

        self.name = f"kolaq-bench-noop-{uuid.uuid4().hex[:8]}"
        module = workdir / "bench_noop_tasks.py"
        module.write_text(NOOP_MODULE)
        os.environ.update(BENCH_NAME=self.name, BENCH_REDIS_URL=args.redis_url)
        sys.path.insert(0, str(workdir))
        import bench_noop_tasks as noop_tasks
        from huey import PriorityRedisHuey

        self.tasks = noop_tasks
        self.staging = PriorityRedisHuey(self.name + "-staging", url=args.redis_url,
                                         results=False)
        self.conn = redis.Redis.from_url(args.redis_url)
        env = {**os.environ, "PYTHONPATH": str(workdir)}
        q = settings.queue
        consumer = str(Path(sys.executable).parent / "huey_consumer")
        log = workdir / "noop-worker.log"
        # The shape of `kolaq-console worker`: threads, poll interval and ceiling, no periodic.
        self.proc = start([consumer, "bench_noop_tasks.huey", "-w", str(args.workers), "-k",
                           "thread", "-d", str(q.poll_interval), "-m", str(q.max_poll_interval),
                           "-n"], env, log)
        stack.callback(self.close)
        wait_for_log(log, "bench_noop_tasks.noop")
        self.pids = {"producer": None, "worker": self.proc.pid}

    def close(self) -> None:
        stop(self.proc)
        keys = self.conn.keys(f"*{self.name}*")
        if keys:
            self.conn.delete(*keys)

    def _times(self) -> list[float]:
        return [float(t) for t in self.conn.lrange(self.tasks.DONE, 0, -1)]

    def _wait(self, n: int) -> None:
        wait_for(lambda: self.conn.llen(self.tasks.DONE) >= n, 300, "no-op tasks")

    def end_to_end(self, n: int, meter: CpuMeter) -> Round:
        self.conn.delete(self.tasks.DONE)
        meter.start()
        t0 = time.time()
        for i in range(n):
            self.tasks.noop(i)
        self._wait(n)
        return measure(n, t0, self._times(), meter.stop())

    def drain(self, n: int, meter: CpuMeter) -> Round:
        self.conn.delete(self.tasks.DONE)
        for i in range(n):
            stage(self.tasks.huey, self.staging, self.tasks.noop.s(i))
        meter.start()
        t0 = time.time()
        self.conn.rename(self.staging.storage.queue_key, self.tasks.huey.storage.queue_key)
        self._wait(n)
        return measure(n, t0, self._times(), meter.stop())


# --- the email side --------------------------------------------------------------------------


class EmailSide:
    label = "emails"

    def __init__(self, args, workdir: Path, settings, env: dict[str, str], stub_pid,
                 stack: ExitStack) -> None:
        from kolaq_console import runtime
        from kolaq_console.db import make_engine
        from kolaq_console.schema import upgrade
        from kolaq_console.taskqueue import make_huey

        self.settings = settings
        runtime.configure(settings)
        self.engine = make_engine(settings.database.url)
        upgrade(self.engine)
        import tasks  # builds its Huey from the settings configured above

        self.tasks = tasks
        self.staging = make_huey(settings.model_copy(update={"queue": settings.queue.model_copy(
            update={"name": settings.queue.name + "-staging"})}))
        self.conn = tasks.huey.storage.conn
        log = workdir / "email-worker.log"
        self.proc = start([sys.executable, "-m", "kolaq_console", "worker", "-w",
                           str(args.workers)], env, log)
        stack.callback(self.close)
        wait_for_log(log, "tasks.send_email")
        self.pids = {"producer": None, "worker": self.proc.pid, "stand-in": stub_pid}
        url = settings.database.url
        if url.startswith("postgres") and ("@127.0.0.1" in url or "@localhost" in url):
            self.pids["postgres"] = postgres_backends(url.rsplit("/", 1)[1])
        self.round_no = 0

    def close(self) -> None:
        stop(self.proc)
        name = self.settings.queue.name
        keys = self.conn.keys(f"*{name}*")
        if keys:
            self.conn.delete(*keys)
        self.engine.dispose()

    def _queue(self, n: int, enqueue: bool) -> list[int]:
        from sqlmodel import Session

        from kolaq_console.emails import EmailRequest, outbox

        self.round_no += 1
        ids = []
        with Session(self.engine, expire_on_commit=False) as session:
            for i in range(n):
                request = EmailRequest("generic", to=f"c{self.round_no}-{i}@example.com",
                                       subject=f"Bench {self.round_no}",
                                       body=f"Hello number {i}")
                row = outbox.add(session, self.settings, request, enqueue=enqueue).row
                ids.append(row.id)
        return ids

    def _sent_times(self, first: int, last: int) -> list[float]:
        from sqlmodel import Session, col, select

        from kolaq_console.models import EmailOutbox

        with Session(self.engine) as s:
            rows = s.exec(select(EmailOutbox.sent_at).where(
                col(EmailOutbox.id).between(first, last), EmailOutbox.status == "sent")).all()
        return [t.timestamp() for t in rows]

    def _wait(self, first: int, last: int, n: int) -> None:
        from sqlalchemy import func
        from sqlmodel import Session, col, select

        from kolaq_console.models import EmailOutbox

        def done() -> bool:
            with Session(self.engine) as s:
                return s.exec(select(func.count()).select_from(EmailOutbox).where(
                    col(EmailOutbox.id).between(first, last), EmailOutbox.status == "sent"
                )).one() >= n

        wait_for(done, 300, "emails sent")

    def end_to_end(self, n: int, meter: CpuMeter) -> Round:
        meter.start()
        t0 = time.time()
        ids = self._queue(n, enqueue=True)
        self._wait(ids[0], ids[-1], n)
        return measure(n, t0, self._sent_times(ids[0], ids[-1]), meter.stop())

    def drain(self, n: int, meter: CpuMeter) -> Round:
        ids = self._queue(n, enqueue=False)
        for row_id in ids:
            stage(self.tasks.huey, self.staging, self.tasks.send_email.s(row_id))
        meter.start()
        t0 = time.time()
        self.conn.rename(self.staging.storage.queue_key, self.tasks.huey.storage.queue_key)
        self._wait(ids[0], ids[-1], n)
        return measure(n, t0, self._sent_times(ids[0], ids[-1]), meter.stop())


# --- main ------------------------------------------------------------------------------------


@contextmanager
def scratch_postgres():
    from bench.jobs import postgres_database

    with postgres_database() as url:
        if url is None:
            raise SystemExit("bench: --postgres given but PostgreSQL does not answer")
        yield url


def report(results: dict[str, dict[str, list[Round]]]) -> None:
    noop, emails = results["no-op"], results["emails"]
    print()
    print(f"{'median of rounds':<26}{'no-op/s':>10}{'emails/s':>10}{'ratio':>8}"
          f"{'ratio range':>16}")
    for mode in ("end to end", "drain"):
        for label, get in ((mode, lambda r: r.rate), ("  steady 10-90%", lambda r: r.steady)):
            a = [get(r) for r in noop[mode]]
            b = [get(r) for r in emails[mode]]
            ratios = [y / x for x, y in zip(a, b, strict=True)]
            print(f"{label:<26}{statistics.median(a):>10.0f}{statistics.median(b):>10.0f}"
                  f"{statistics.median(ratios):>8.2f}"
                  f"{f'{min(ratios):.2f}-{max(ratios):.2f}':>16}")
    print("\nCPU ms per item (median of rounds; this machine's cores are shared by all):")
    for mode in ("end to end", "drain"):
        for side, rounds in (("no-op", noop[mode]), ("emails", emails[mode])):
            names = sorted({k for r in rounds for k in r.cpu})
            parts = [f"{k} {1000 * statistics.median(r.cpu.get(k, 0) / r.n for r in rounds):.2f}"
                     for k in names]
            total = 1000 * statistics.median(sum(r.cpu.values()) / r.n for r in rounds)
            print(f"  {mode:<11} {side:<7} total {total:5.2f}: " + ", ".join(parts))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=500, help="emails per round")
    parser.add_argument("--noops", type=int, default=2000, help="no-op tasks per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4, help="threads of each worker process")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL",
                                                              "redis://127.0.0.1:6379/10"))
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--postgres", action="store_true",
                        help="use a scratch database on KOLAQ_BENCH_PG_URL's server")
    parser.add_argument("--rate-limit", default="0",
                        help="[email] rate_limit_per_second (default 0: no client-side limit, "
                             "the stand-in has none either)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 small round")
    args = parser.parse_args()
    if args.quick:
        args.emails, args.noops, args.rounds = 100, 400, 1

    import redis
    from stubs.resend_api import ResendStubProcess

    from kolaq_console.config import load_settings

    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kolaq-bench-")))
        stub = stack.enter_context(ResendStubProcess(api_keys=[KEY]))
        db_url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
        if args.postgres:
            db_url = stack.enter_context(scratch_postgres())
        env = {
            **os.environ,
            "KOLAQ_CONFIG": str(ROOT / "config.toml"),
            "KOLAQ_DATABASE__URL": db_url,
            "KOLAQ_QUEUE__BACKEND": "redis",
            "KOLAQ_QUEUE__REDIS_URL": args.redis_url,
            "KOLAQ_QUEUE__NAME": f"kolaq-bench-{uuid.uuid4().hex[:8]}",
            "KOLAQ_QUEUE__PERIODIC": "false",
            "KOLAQ_EMAIL__TRANSPORT": "resend",
            "KOLAQ_SHOP__PUBLIC_URL": "https://shop.test",  # workers refuse a local address
            "KOLAQ_EMAIL__RATE_LIMIT_PER_SECOND": args.rate_limit,
            "KOLAQ_SIGNING_KEY": "bench-signing-key-not-secret",
            "RESEND_API_URL": stub.url,
            "RESEND_API_KEY": KEY,
            "PYTHONPATH": str(ROOT),
        }
        settings = load_settings(environ=env)
        database = "PostgreSQL" if db_url.startswith("postgres") else "SQLite"
        configured = load_settings(environ={**os.environ, "KOLAQ_CONFIG": env["KOLAQ_CONFIG"]}
                                   ).email.rate_limit_per_second
        print(f"bench/emails.py: Redis {args.redis_url}, {database}, 1 worker process x "
              f"{args.workers} threads per side, rate limit "
              f"{args.rate_limit + '/s' if args.rate_limit != '0' else 'FORCED OFF'} "
              f"(config.toml has {configured}/s), "
              f"{args.rounds} round(s) of {args.noops} no-ops / {args.emails} emails",
              flush=True)
        print(f"machine now: {machine_probe(redis.Redis.from_url(args.redis_url))}", flush=True)
        noop = NoopSide(args, workdir, settings, stack)
        emails = EmailSide(args, workdir, settings, env, stub.pid, stack)
        rpid = redis_pid(redis.Redis.from_url(args.redis_url))
        sides = [(noop, args.noops), (emails, args.emails)]
        results: dict[str, dict[str, list[Round]]] = {
            s.label: {"end to end": [], "drain": []} for s, _ in sides
        }
        for round_no in range(args.rounds):
            order = sides if round_no % 2 == 0 else sides[::-1]
            for side, n in order:
                pids = {**side.pids, "redis": rpid} if rpid else side.pids
                for mode, run in (("end to end", side.end_to_end), ("drain", side.drain)):
                    r = run(n, CpuMeter(pids))
                    results[side.label][mode].append(r)
                    print(f"  round {round_no + 1} {side.label:<6} {mode:<10}: {n} in "
                          f"{r.elapsed:.2f} s = {r.rate:6.0f}/s (steady {r.steady:6.0f}/s)",
                          flush=True)
        delivered = len(stub.deliveries)
    report(results)
    print(f"\n({delivered} emails delivered by the stand-in; target ratio >= 0.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
