"""Console benchmark on a loaded shop: PostgreSQL + Redis, the production pair.

    PYTHONPATH=$PWD python bench/console.py [--quick] [--runs N] [--minutes M]
                                            [--only refresh,keys,memory]

The shop: the demo shop, plus 100,000 pending jobs in the queue, 10,000 open failed jobs (and
1,000 closed ones) and 100,000 outbox rows (mostly sent; some queued, sending and failed).
PostgreSQL is VACUUM ANALYZEd after loading, as autovacuum would do. Its own database
(created on KOLAQ_BENCH_PG_URL, dropped at the end) and Redis db 10 under its own queue name
(its keys deleted at the end): never the test suite's.

1. One refresh's data (`collect_overview`, what the overview reads every refresh) against the
   bare queries it needs for the same figures (hand-written SQL on one connection, and the
   ZCOUNTs in one Redis round trip), alternated run by run; median wall and CPU (this process
   plus the PostgreSQL backends of the bench database), and the median of the per-run ratios.
   Targets: <= 2x the bare queries and < 100 ms. Each figure is also timed alone, beside its
   bare query, and so is the outbox count as it was grouped before (by a CASE expression).
2. Key press to the next screen: the console headless (Textual's run_test, 120x40) on the same
   data; the time from pressing 2 (or 1) until that screen shows data read after the press
   (its refresh worker has finished and the screen is idle). Target < 100 ms median.
3. Memory: the console refreshing the overview every 0.5 s for M minutes (default 10); this
   process's RSS and Python's live objects sampled each 30 s. Target: flat after warm-up.

Longer than ~400 lines on purpose: the shop it loads, the bare queries it compares with and
the three measures share that shop, so they are one script, as the other benchmarks are.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import case, func, insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bench.inventory import backend_cpu
from bench.jobs import REDIS_URL, bench_settings, fill_failed, postgres_database, redis_up
from kolaq_console import status as status_module
from kolaq_console.db import make_engine
from kolaq_console.demo import load_demo
from kolaq_console.inventory.stock import CHECKPOINT_KEY
from kolaq_console.jobs import failed as failed_jobs
from kolaq_console.jobs.stats import minute_of, throughput
from kolaq_console.jobs.workers import list_workers
from kolaq_console.models import EmailOutbox, utcnow
from kolaq_console.payloads import REJECTED_ERROR_TYPE
from kolaq_console.runtime import dispose_engines
from kolaq_console.schema import require_current, upgrade
from kolaq_console.taskqueue import BAND_WIDTH, PRIORITY_BANDS, make_huey

PENDING, FAILED, OUTBOX = 100_000, 10_000, 100_000


# --- the shop --------------------------------------------------------------------------------


def fill_outbox(engine: Engine, rows: int) -> None:
    rng = random.Random(11)
    now = utcnow()
    statuses = ["sent"] * 90 + ["queued"] * 5 + ["sending"] * 1 + ["failed"] * 4
    kinds = ["order_confirmation", "shipping_notification", "order_status_update", "broadcast"]
    batch: list[dict] = []
    with engine.begin() as conn:
        for i in range(rows):
            at = now - timedelta(seconds=rows - i)
            status = rng.choice(statuses)
            batch.append({
                "kind": rng.choice(kinds), "to_address": f"customer{i % 5000}@kolaq.example",
                "subject": f"Your order KB-{10000 + i % 9000}", "html": "<p>Thank you</p>" * 20,
                "text": "Thank you\n" * 20, "headers": {}, "status": status,
                "attempts": 1 if status != "queued" else 0,
                "last_error": "503 Service Unavailable" if status == "failed" else None,
                "idempotency_key": f"bench-{i}", "created_at": at, "updated_at": at,
                "sent_at": at if status == "sent" else None,
            })
            if len(batch) == 5000:
                conn.execute(insert(EmailOutbox.__table__), batch)
                batch.clear()
        if batch:
            conn.execute(insert(EmailOutbox.__table__), batch)


def fill_queue(huey, n: int) -> None:
    """n pending jobs spread over the three logical queues (members as Huey stores them:
    timestamp prefix + message; nothing deserialises pending jobs to count them)."""
    conn = huey.storage.conn
    bands = list(PRIORITY_BANDS.values())
    pipe = conn.pipeline(transaction=False)
    for i in range(n):
        priority = bands[i % len(bands)] + (i % 7)
        pipe.zadd(huey.storage.queue_key, {b"%016d-bench-job-%d" % (i, i): -priority})
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()


def vacuum(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")


# --- 1. one refresh vs the bare queries ------------------------------------------------------

BARE_SQL = {
    "failed jobs": "SELECT count(*) FROM failed_jobs WHERE status IN ('failed', 'interrupted')",
    "rejected payloads": (
        "SELECT count(*) FROM failed_jobs WHERE status IN ('failed', 'interrupted') "
        f"AND error_type = '{REJECTED_ERROR_TYPE}'"),
    "low stock": (
        "SELECT p.id, p.sku, p.name, s.stock + COALESCE(u.delta, 0), "
        "COALESCE(p.low_stock_threshold, 10) FROM products p"
        " JOIN product_stock s ON s.product_id = p.id LEFT JOIN ("
        " SELECT e.product_id, SUM(e.delta) AS delta FROM inventory_events e"
        " JOIN product_stock q ON q.product_id = e.product_id"
        " WHERE e.id > COALESCE((SELECT CAST(value ->> 'event_id' AS INTEGER)"
        f"  FROM system_state WHERE key = '{CHECKPOINT_KEY}'), 0)"
        " AND e.id > q.stock_event_id GROUP BY e.product_id) u ON u.product_id = p.id "
        "WHERE p.active AND s.stock + COALESCE(u.delta, 0) <= COALESCE(p.low_stock_threshold, 10)"
        " ORDER BY 4, p.sku"),
    "outbox": "SELECT status, count(*) FROM email_outbox GROUP BY status",
    "messages": "SELECT status, count(*) FROM text_messages GROUP BY status",
    "in flight": (
        "SELECT r.queue, count(*) FROM job_runs r JOIN workers w ON w.id = r.worker_id "
        "WHERE w.heartbeat_at >= now() - interval '120 seconds' AND w.stopped_at IS NULL "
        "AND w.found_dead_at IS NULL GROUP BY r.queue"),
    "throughput": (
        "SELECT minute, queue, sum(completed), sum(failed), sum(retried) FROM job_stats "
        "WHERE minute >= now() - interval '30 minutes' GROUP BY minute, queue "
        "ORDER BY minute, queue"),
    "workers": "SELECT * FROM workers WHERE stopped_at IS NULL ORDER BY started_at DESC",
}


def bare_queue(huey) -> list[int]:
    """Pending per band (ZCOUNT) and the schedule's size, one round trip."""
    storage = huey.storage
    pipe = storage.conn.pipeline(transaction=False)
    for base in PRIORITY_BANDS.values():
        pipe.zcount(storage.queue_key, -(base + BAND_WIDTH - 1), -base)
    pipe.zcard(storage.schedule_key)
    return pipe.execute()


def bare_refresh(engine: Engine, huey) -> None:
    with engine.connect() as conn:
        for sql in BARE_SQL.values():
            conn.exec_driver_sql(sql).all()
    bare_queue(huey)


def legacy_outbox_counts(session: Session) -> dict[str, int]:
    """The outbox count as it was before: grouped by a CASE over the status."""
    bucket = case((col(EmailOutbox.status) == "sending", "queued"), else_=col(EmailOutbox.status))
    rows = session.exec(select(bucket, func.count()).group_by(bucket)).all()
    return {s: n for s, n in rows}


def measure(fn: Callable[[], object], engine: Engine) -> tuple[float, float]:
    """(wall s, CPU s: this process + the bench database's backends)."""
    server = backend_cpu(engine)
    cpu = time.process_time()
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    return wall, time.process_time() - cpu + backend_cpu(engine) - server


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def refresh_vs_bare(settings, engine: Engine, huey, runs: int) -> list[str]:
    from kolaq_console.ui.data import collect_overview

    print(f"\n1. one refresh's data vs the bare queries, {runs} alternating runs")

    def refresh() -> None:
        overview = collect_overview(settings, engine, huey, now=utcnow())
        assert overview.status.healthy and overview.activity_known, overview.status.storage

    def bare() -> None:
        bare_refresh(engine, huey)

    for _ in range(3):  # warm-up: connections, statement caches
        refresh()
        bare()
    walls: dict[str, list[float]] = {"refresh": [], "bare": []}
    cpus: dict[str, list[float]] = {"refresh": [], "bare": []}
    for r in range(runs):
        for name in (("refresh", "bare") if r % 2 == 0 else ("bare", "refresh")):
            wall, cpu = measure(refresh if name == "refresh" else bare, engine)
            walls[name].append(wall)
            cpus[name].append(cpu)
    paired = statistics.median(a / b for a, b in zip(walls["refresh"], walls["bare"],
                                                         strict=True))
    paired_cpu = statistics.median(a / b for a, b in zip(cpus["refresh"], cpus["bare"],
                                                             strict=True))
    med = {k: statistics.median(v) for k, v in walls.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpus.items()}
    line = (f"refresh {ms(med['refresh'])} (CPU {ms(med_cpu['refresh'])}), bare queries "
            f"{ms(med['bare'])} (CPU {ms(med_cpu['bare'])}): ratio {paired:.2f}x wall, "
            f"{paired_cpu:.2f}x CPU (median of paired runs)")
    print("  " + line)

    # Each figure alone, beside its bare query (same connection kind, same data).
    print("  each figure, median of the same number of runs (ours / bare):")
    with Session(engine) as session:
        ours: dict[str, Callable[[], object]] = {
            "schema check": lambda: require_current(engine),
            "failed jobs": lambda: failed_jobs.count_failed(session),
            "rejected payloads": lambda: failed_jobs.count_rejected(session),
            "low stock": lambda: status_module.low_stock_products(
                session, settings.inventory.low_stock_threshold),
            "outbox": lambda: status_module.outbox_counts(session),
            "outbox as before (GROUP BY CASE)": lambda: legacy_outbox_counts(session),
            "messages": lambda: status_module.message_counts(session),
            "in flight": lambda: status_module.in_flight_by_queue(
                session, settings.jobs.lease_seconds),
            "queue depths": lambda: status_module.queue_depths(huey, {}),
            "throughput": lambda: throughput(session, minute_of(utcnow()) - timedelta(
                minutes=29)),
            "workers": lambda: list_workers(session, settings.jobs.lease_seconds,
                                            include_stopped=False),
        }
        with engine.connect() as conn:
            for name, fn in ours.items():
                bare_name = name if name in BARE_SQL else (
                    "outbox" if name.startswith("outbox") else None)
                bare_fn: Callable[[], object] | None = None
                if bare_name:
                    sql = BARE_SQL[bare_name]
                    bare_fn = lambda sql=sql: conn.exec_driver_sql(sql).all()  # noqa: E731
                elif name == "queue depths":
                    bare_fn = lambda: bare_queue(huey)  # noqa: E731
                fn()
                mine = statistics.median(measure(fn, engine)[0] for _ in range(runs))
                if bare_fn is None:
                    print(f"    {name:<34} {ms(mine):>9}")
                    continue
                bare_fn()
                theirs = statistics.median(measure(bare_fn, engine)[0] for _ in range(runs))
                print(f"    {name:<34} {ms(mine):>9} / {ms(theirs):>9}")
            session.rollback()
    return [line]


# --- 2. key press to the next screen ---------------------------------------------------------


async def _key_press_times(settings, huey, presses: int) -> dict[str, list[float]]:
    """Per key: the first frame of the next screen (its last data, painted at once) and the
    last frame once its data read after the press is painted and the app is idle."""
    from kolaq_console.ui.app import make_app
    from kolaq_console.ui.screens.base import ACTIVE

    app = make_app(settings, huey=huey)
    frames: list[tuple[float, object]] = []
    display = app._display

    def record(screen, renderable) -> None:  # every frame the app writes (headless: nowhere)
        if renderable is not None:
            frames.append((time.perf_counter(), screen))
        display(screen, renderable)

    app._display = record  # type: ignore[method-assign]
    times: dict[str, list[float]] = {}

    async def idle(pilot) -> None:
        while True:
            await app.workers.wait_for_complete()
            await pilot.pause()
            if not any(w.state in ACTIVE for w in app.workers):
                return

    async with app.run_test(size=(120, 40)) as pilot:
        await idle(pilot)
        for key, mode in (("2", "failed"), ("1", "overview")):  # first visits: not timed
            await pilot.press(key)
            await idle(pilot)
            assert app.current_mode == mode
        for _ in range(presses):
            for key, mode, name in (("2", "failed", "2 (failed jobs)"),
                                    ("1", "overview", "1 (overview)")):
                frames.clear()
                cpu = time.process_time()
                start = time.perf_counter()
                await pilot.press(key)
                await idle(pilot)
                cpu = time.process_time() - cpu
                assert app.current_mode == mode
                times.setdefault(f"{name}, CPU (the app and its reads)", []).append(cpu)
                shown = [t - start for t, screen in frames if screen is app.screen]
                times.setdefault(f"{name}, first frame", []).append(shown[0])
                times.setdefault(f"{name}, fresh data painted", []).append(shown[-1])
    return times


def key_presses(settings, huey, presses: int) -> list[str]:
    print(f"\n2. key press to the next screen, {presses} presses each, headless 120x40")
    slow = settings.model_copy(update={"console": settings.console.model_copy(
        update={"refresh_seconds": 60.0})})  # only the key presses read
    times = asyncio.run(_key_press_times(slow, huey, presses))
    lines = []
    for name, values in times.items():
        line = f"key {name}: median {ms(statistics.median(values))}, max {ms(max(values))}"
        print("  " + line)
        lines.append(line)
    return lines


# --- 3. memory over minutes of refreshing -----------------------------------------------------


async def _refresh_for(settings, huey, minutes: float, every: float) -> list[tuple]:
    import psutil

    from kolaq_console.ui import data as ui_data
    from kolaq_console.ui.app import make_app

    refreshes = 0
    original = ui_data.collect_overview

    def counted(*args, **kwargs):
        nonlocal refreshes
        refreshes += 1
        return original(*args, **kwargs)

    # The overview screen imported the name: count through its module's binding.
    from kolaq_console.ui.screens import overview as overview_screen

    overview_screen.collect_overview = counted
    process = psutil.Process()
    samples: list[tuple] = []
    app = make_app(settings, huey=huey)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            start = time.monotonic()
            while True:
                elapsed = time.monotonic() - start
                gc.collect()
                samples.append((elapsed / 60, process.memory_info().rss / 2**20,
                                len(gc.get_objects()), refreshes))
                if elapsed >= minutes * 60:
                    break
                await pilot.pause(min(every, minutes * 60 - elapsed))
    finally:
        overview_screen.collect_overview = original
    return samples


def memory(settings, huey, minutes: float) -> list[str]:
    print(f"\n3. memory: the overview refreshing every 0.5 s for {minutes:g} min")
    fast = settings.model_copy(update={"console": settings.console.model_copy(
        update={"refresh_seconds": 0.5})})
    samples = asyncio.run(_refresh_for(fast, huey, minutes, every=30.0))
    for minute, rss, objects, refreshes in samples:
        print(f"  {minute:5.1f} min  RSS {rss:7.1f} MiB  objects {objects:>9,}  "
              f"refreshes {refreshes}")
    warm = [s for s in samples if s[0] >= min(1.0, minutes / 2)] or samples
    first, last = warm[0], warm[-1]
    span = max(last[0] - first[0], 1e-9)
    line = (f"after warm-up: RSS {first[1]:.1f} -> {last[1]:.1f} MiB "
            f"({(last[1] - first[1]) / span:+.2f} MiB/min), objects {first[2]:,} -> "
            f"{last[2]:,}, {last[3]} refreshes in {samples[-1][0]:.1f} min")
    print("  " + line)
    return [line]


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="A smoke run: 1/10 of the data.")
    parser.add_argument("--runs", type=int, default=None, help="Runs per measure.")
    parser.add_argument("--minutes", type=float, default=None, help="Memory run length.")
    parser.add_argument("--only", default="refresh,keys,memory")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    runs = args.runs or (5 if args.quick else 21)
    minutes = args.minutes if args.minutes is not None else (1.0 if args.quick else 10.0)
    parts = set(args.only.split(","))
    if not redis_up():
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="kolaq-bench-console-"))
    summary: list[str] = []
    with postgres_database() as url:
        if url is None:
            return 1
        name = f"bench-console-{uuid.uuid4().hex[:8]}"
        settings = bench_settings(tmp, url, "redis", name)
        engine = make_engine(url)
        upgrade(engine)
        huey = make_huey(settings)
        try:
            start = time.perf_counter()
            load_demo(engine)
            fill_outbox(engine, OUTBOX // scale)
            fill_failed(engine, FAILED // scale)
            fill_queue(huey, PENDING // scale)
            vacuum(engine)
            print(f"shop loaded in {time.perf_counter() - start:.0f} s: "
                  f"{PENDING // scale:,} pending jobs, {FAILED // scale:,} open failed jobs, "
                  f"{OUTBOX // scale:,} outbox rows (PostgreSQL + Redis db "
                  f"{REDIS_URL.rsplit('/', 1)[-1]})")
            if "refresh" in parts:
                summary += refresh_vs_bare(settings, engine, huey, runs)
            if "keys" in parts:
                summary += key_presses(settings, huey, max(runs // 2, 3))
            if "memory" in parts:
                summary += memory(settings, huey, minutes)
        finally:
            huey.storage.flush_all()
            engine.dispose()
            dispose_engines()
    print("\nsummary (targets: refresh <= 2x the bare queries and < 100 ms; key press "
          "< 100 ms; memory flat)")
    for line in summary:
        print("  " + line)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TEXTUAL", "")  # no devtools
    sys.exit(main())
