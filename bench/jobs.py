"""Benchmark of the job ledger.

1. Throughput: a queue pre-filled with no-op jobs drained by one consumer (4 worker threads,
   in this process), raw Huey vs the same Huey with the ledger installed; same backend, same
   workers, alternating in the same run. Printed: median jobs/s of each and the ratio
   (target >= 0.85). Combinations: SQLite queue + SQLite database (the embedded default) and
   Redis queue + PostgreSQL (production), when those servers answer.
2. The failed list: one page as `jobs failed` reads it (50 rows, newest first, and the total,
   counted up to 10,000) with 100,000 open failed rows in the table (plus 10% closed ones);
   median ms (target <= 50), on SQLite and PostgreSQL. PostgreSQL is measured right after the
   bulk insert (no VACUUM yet, the worst case for counts) and after VACUUM.

    PYTHONPATH=$PWD python bench/jobs.py [--quick] [--rounds N] [--jobs N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert
from sqlmodel import Session

from kolaq_console.config import load_settings
from kolaq_console.db import make_engine
from kolaq_console.jobs import install_ledger
from kolaq_console.jobs.failed import PAGE_COUNT_CAP, JobFilter, count_failed, list_failed
from kolaq_console.models import FailedJob, utcnow
from kolaq_console.runtime import dispose_engines
from kolaq_console.schema import upgrade
from kolaq_console.taskqueue import make_huey, priority_for

# db 10: the test suite uses db 9, and a bench must never touch its keys
REDIS_URL = os.environ.get("KOLAQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
PG_ADMIN = os.environ.get("KOLAQ_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
WORKERS = 4


# --- environments ----------------------------------------------------------------------------


@contextmanager
def postgres_database():
    """A scratch PostgreSQL database, dropped afterwards (None if the server does not answer)."""
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except Exception as exc:
        print(f"  (PostgreSQL at {PG_ADMIN} unavailable: {exc}; skipped)")
        yield None
        return
    name = f"kolaq_bench_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        dispose_engines()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def redis_up() -> bool:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        return True
    except Exception as exc:
        print(f"  (Redis at {REDIS_URL} unavailable: {exc}; skipped)")
        return False


def bench_settings(tmp: Path, db_url: str, backend: str, name: str):
    return load_settings(environ={
        "KOLAQ_DATABASE__URL": db_url,
        "KOLAQ_QUEUE__BACKEND": backend,
        "KOLAQ_QUEUE__NAME": name,
        "KOLAQ_QUEUE__SQLITE_PATH": str(tmp / f"{name}.db"),
        "KOLAQ_QUEUE__REDIS_URL": REDIS_URL,
        "KOLAQ_QUEUE__WORKERS": str(WORKERS),
        "KOLAQ_SIGNING_KEY": "bench-signing-key-not-secret",
    }, cwd=tmp)


# --- 1. throughput ---------------------------------------------------------------------------


def drain(settings, n: int, ledger: bool) -> tuple[float, float]:
    """(jobs/s, CPU seconds per job of this process: consumer threads, and on SQLite the
    databases too) for one consumer draining `n` pre-enqueued no-op jobs."""
    huey = make_huey(settings)
    done = itertools.count()
    finished = threading.Event()

    @huey.task(priority=priority_for("inventory"), name="noop")
    def noop() -> None:
        if next(done) == n - 1:
            finished.set()

    if ledger:
        install_ledger(huey, settings)
    try:
        task = noop.s()
        data = huey.serialize_task(task)  # the same message n times: enqueue is not measured
        for _ in range(n):
            huey.storage.enqueue(data, task.priority)
        consumer = huey.create_consumer(workers=WORKERS, periodic=False)
        consumer._set_signal_handlers = lambda: None  # the benchmark keeps Ctrl-C
        cpu = time.process_time()
        start = time.perf_counter()
        consumer.start()
        if not finished.wait(300):
            raise RuntimeError("the queue did not drain in 300 s")
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        consumer.stop(graceful=True)
        return n / elapsed, cpu / n
    finally:
        huey.flush()


def throughput(rounds: int, n: int, tmp: Path) -> list[str]:
    print(f"\n1. throughput: {n} no-op jobs, 1 consumer x {WORKERS} threads, {rounds} rounds "
          "(alternating raw / ledger)")
    summary = []
    combos: list[tuple[str, str]] = [("sqlite", "sqlite")]
    if redis_up():
        combos.append(("redis", "postgresql"))
    for backend, database in combos:
        cm = postgres_database() if database == "postgresql" else _sqlite_database(tmp)
        with cm as db_url:
            if db_url is None:
                continue
            upgrade(make_engine(db_url))
            results: dict[bool, list[float]] = {False: [], True: []}
            cpus: dict[bool, list[float]] = {False: [], True: []}
            drain(bench_settings(tmp, db_url, backend, f"bench-warm-{uuid.uuid4().hex[:6]}"),
                  min(n, 500), True)  # warm-up: imports, connections, tables
            for r in range(rounds):
                order = (False, True) if r % 2 == 0 else (True, False)
                for ledger in order:
                    name = f"bench-{uuid.uuid4().hex[:8]}"
                    rate, cpu = drain(bench_settings(tmp, db_url, backend, name), n, ledger)
                    results[ledger].append(rate)
                    cpus[ledger].append(cpu)
            raw, led = statistics.median(results[False]), statistics.median(results[True])
            # Each round ran both back to back: the median of per-round ratios cancels drift
            # in the machine's load better than the ratio of medians.
            paired = statistics.median(
                b / a for a, b in zip(results[False], results[True], strict=True))
            raw_cpu = statistics.median(cpus[False]) * 1e6
            led_cpu = statistics.median(cpus[True]) * 1e6
            line = (f"{backend} queue + {database} db: raw {raw:,.0f} jobs/s "
                    f"({raw_cpu:.0f} µs CPU/job), ledger {led:,.0f} jobs/s ({led_cpu:.0f} µs "
                    f"CPU/job), ratio {led / raw:.2f} (paired rounds {paired:.2f}; by CPU "
                    f"{raw_cpu / led_cpu:.2f})")
            print("  " + line)
            print("    raw runs:    " + ", ".join(f"{x:,.0f}" for x in results[False]))
            print("    ledger runs: " + ", ".join(f"{x:,.0f}" for x in results[True]))
            summary.append(line)
    return summary


@contextmanager
def _sqlite_database(tmp: Path):
    yield f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:6]}.db'}"


# --- 2. the failed list ----------------------------------------------------------------------

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/kolaq/.venv/lib/python3.11/site-packages/huey/api.py", line 453, in _execute\n'
    "    task_value = task.execute()\n"
    '  File "/srv/kolaq/tasks.py", line 42, in send_email\n'
    "    outbox.send(outbox_id)\n"
) * 6 + "kolaq_console.emails.transports.ProviderError: 503 Service Unavailable\n"


def fill_failed(engine, rows: int) -> None:
    rng = random.Random(7)
    now = utcnow()
    queues = ["emails", "emails", "inventory", "webhooks"]
    tasks = {"emails": "tasks.send_email", "inventory": "tasks.reconcile_inventory",
             "webhooks": "tasks.process_webhook"}
    statuses = ["failed"] * 19 + ["interrupted"]
    batch = []
    closed = rows // 10
    with engine.begin() as conn:
        for i in range(rows + closed):
            queue = rng.choice(queues)
            at = now - timedelta(seconds=rows + closed - i)
            batch.append({
                "task_id": str(uuid.UUID(int=rng.getrandbits(128))), "task_name": tasks[queue],
                "queue": queue, "args": [rng.randrange(1, 10**6)], "kwargs": {},
                "payload": os.urandom(220),
                "status": rng.choice(statuses) if i % 11 else rng.choice(["retried", "discarded"]),
                "error_type": "kolaq_console.emails.transports.ProviderError",
                "error_message": f"503 Service Unavailable from the provider (request {i})",
                "traceback": TRACEBACK, "attempts": 4, "first_attempt_at": at - timedelta(
                    seconds=155), "last_attempt_at": at, "worker_host": "worker-1",
                "worker_pid": 4242, "created_at": at,
            })
            if len(batch) == 5000:
                conn.execute(insert(FailedJob.__table__), batch)
                batch.clear()
        if batch:
            conn.execute(insert(FailedJob.__table__), batch)


def time_ms(fn, repeat: int) -> str:
    """'W ms (CPU C ms)': the median wall time of `fn` and the median CPU of this process (on
    PostgreSQL the server's share is not in it)."""
    walls, cpus = [], []
    for _ in range(repeat):
        cpu = time.process_time()
        start = time.perf_counter()
        fn()
        walls.append((time.perf_counter() - start) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return f"{statistics.median(walls):.1f} ms (CPU {statistics.median(cpus):.1f})"


def failed_list(rows: int, repeat: int, tmp: Path) -> list[str]:
    print(f"\n2. failed list: {rows:,} rows in failed_jobs; median of {repeat} page reads")
    summary = []
    for database in ("sqlite", "postgresql"):
        cm = postgres_database() if database == "postgresql" else _sqlite_database(tmp)
        with cm as url:
            if url is None:
                continue
            engine = make_engine(url)
            upgrade(engine)
            start = time.perf_counter()
            fill_failed(engine, rows)
            if database == "postgresql":
                with engine.connect() as conn:
                    conn.exec_driver_sql("ANALYZE failed_jobs")
                    conn.commit()
            fill_s = time.perf_counter() - start

            def page(flt=JobFilter(), before=None, engine=engine):
                def read():
                    with Session(engine) as s:
                        got = list_failed(s, flt, limit=50, before_id=before)
                        count_failed(s, flt, cap=PAGE_COUNT_CAP)
                        assert got
                return read

            first = time_ms(page(), repeat)
            deep = time_ms(page(before=rows // 2), repeat)
            by_queue = time_ms(page(JobFilter(queue="webhooks")), repeat)
            by_error = time_ms(page(JobFilter(error="request 9")), repeat)
            line = (f"{database}: first page {first}, a page mid-way {deep}, "
                    f"filtered by queue {by_queue}, by error text {by_error} "
                    f"(filled in {fill_s:.0f} s)")
            print("  " + line)
            summary.append(line)
            if database == "postgresql":
                with engine.connect() as conn:
                    conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                        "VACUUM ANALYZE failed_jobs")
                first = time_ms(page(), repeat)
                by_queue = time_ms(page(JobFilter(queue="webhooks")), repeat)
                with Session(engine) as s:
                    exact = time_ms(lambda s=s: count_failed(s, JobFilter()), repeat)
                line = (f"{database} after VACUUM: first page {first}, filtered by "
                        f"queue {by_queue}; exact count of open rows (status) {exact}")
                print("  " + line)
                summary.append(line)
            engine.dispose()
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="A smoke run (seconds).")
    parser.add_argument("--rounds", type=int, default=None, help="Throughput rounds per mode.")
    parser.add_argument("--jobs", type=int, default=None, help="Jobs per throughput run.")
    parser.add_argument("--rows", type=int, default=None, help="failed_jobs rows.")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 11)
    n = args.jobs or (1000 if args.quick else 2000)
    rows = args.rows or (10_000 if args.quick else 100_000)
    tmp = Path(tempfile.mkdtemp(prefix="kolaq-bench-jobs-"))
    try:
        summary = throughput(rounds, n, tmp)
        summary += failed_list(rows, 10 if args.quick else 30, tmp)
    finally:
        dispose_engines()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nsummary (targets: ledger/raw >= 0.85; failed-list page <= 50 ms)")
    for line in summary:
        print("  " + line)


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        sys.exit(main())
