"""Inventory reconciliation benchmark: SQLite and PostgreSQL, same data, same run.

    PYTHONPATH=$PWD python bench/inventory.py            # 10,000 products, 1,000,000 events
    PYTHONPATH=$PWD python bench/inventory.py --quick    # 1,000 products, 100,000 events

Measures, with medians of several runs:
- full reconcile vs the bare `SELECT product_id, SUM(delta) ... GROUP BY product_id` on the
  same database (target <= 1.5x); each full run first corrupts 0.1 % of the cached stocks, so
  it also writes corrections and their audit entries;
- an incremental run after 1,000 new events vs the full run (target <= 5 % on SQLite, 8 % on
  PostgreSQL): events spread at
  random over all the products (they touch ~950 of them), and the same number on 10 products;
  the spread case is also measured at 1/4 of the events, to show that it does not grow with the
  history (O(new events)); and an incremental run with nothing new (the fixed cost of a run);
- peak Python memory (tracemalloc) of a full run at 1/4 of the events vs all of them (flat:
  the run holds one row per product, never one per event).

PostgreSQL: a scratch database is created on KOLAQ_BENCH_PG_URL (default the local server's
`test` database) and dropped at the end. The share of the incremental runs' product updates that
were HOT (pg_stat_user_tables) is printed beside them. It is VACUUM ANALYZEd after loading, as
autovacuum would do, so that aggregates can use index-only scans of
ix_inventory_events_product_delta.

The bare aggregate is the anchor of the full run's ratio, in its best configuration: on
PostgreSQL it is timed both as the planner chooses (a parallel seq scan) and with parallel
workers off (an index-only aggregate, about twice as fast here), and the faster one is the
anchor. CPU per run is printed beside each wall time: this process's CPU plus, on PostgreSQL,
that of the server backends serving the bench database (Linux /proc), since wall-clock ratios
move by +-50% on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from kolaq_console.db import make_engine
from kolaq_console.inventory.reconcile import reconcile
from kolaq_console.schema import upgrade

PG_ADMIN_URL = os.environ.get("KOLAQ_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
BARE = "SELECT product_id, SUM(delta) FROM inventory_events GROUP BY product_id"
NOW = datetime(2026, 11, 1, tzinfo=UTC).replace(tzinfo=None)


CPU: dict[str, float] = {}  # figure name -> median CPU seconds per run


def backend_cpu(engine: Engine) -> float:
    """CPU seconds of the PostgreSQL backends connected to the engine's database (0 on SQLite,
    whose work is done in this process), from /proc/PID/schedstat (nanoseconds: /proc/PID/stat
    counts 10 ms ticks, too coarse for runs of a few milliseconds)."""
    if engine.dialect.name != "postgresql":
        return 0.0
    with engine.connect() as conn:
        pids = conn.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()").scalars().all()
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def median_time(fn: Callable[[], object], runs: int, before: Callable[[], object] | None = None,
                engine: Engine | None = None, name: str | None = None) -> float:
    """Median wall seconds of `fn`; its median CPU (this process + the database's backends)
    is kept in CPU[name]."""
    times, cpus = [], []
    for _ in range(runs):
        if before:
            before()
        server = backend_cpu(engine) if engine is not None else 0.0
        cpu = time.process_time()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu
                    + (backend_cpu(engine) - server if engine is not None else 0.0))
    if name:
        CPU[name] = statistics.median(cpus)
    return statistics.median(times)


def load_products(engine: Engine, n: int) -> None:
    rows = [(f"BENCH-{i:06d}", f"Bench product {i}", 1000, "NGN", True, NOW, NOW)
            for i in range(n)]
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        placeholders = ", ".join(["?" if engine.dialect.name == "sqlite" else "%s"] * 7)
        cur.executemany(
            "INSERT INTO products (sku, name, price_minor, currency, "
            f"active, created_at, updated_at) VALUES ({placeholders})", rows)
        # every product has its stock row (what the ORM's Product does)
        cur.execute("INSERT INTO product_stock (product_id, sku) SELECT id, sku FROM products "
                    "WHERE id NOT IN (SELECT product_id FROM product_stock) ORDER BY id")
        raw.commit()
    finally:
        raw.close()


def load_events(engine: Engine, n: int, products: int, rng: random.Random,
                first_product: int = 1) -> None:
    """Fast bulk load: executemany on SQLite, COPY on PostgreSQL. Events go to products
    first_product .. first_product + products - 1, at random."""
    last = first_product + products - 1
    rows = ((rng.randint(first_product, last), rng.randint(-3, 10), "sale", "bench", NOW)
            for _ in range(n))
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if engine.dialect.name == "sqlite":
            cur.executemany(
                "INSERT INTO inventory_events (product_id, delta, kind, actor, created_at) "
                "VALUES (?, ?, ?, ?, ?)", rows)
        else:
            with cur.copy("COPY inventory_events (product_id, delta, kind, actor, created_at) "
                          "FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        raw.commit()
    finally:
        raw.close()


def maintain(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE inventory_events")
            conn.exec_driver_sql("VACUUM ANALYZE products")
            conn.exec_driver_sql("VACUUM ANALYZE product_stock")


def corrupt(engine: Engine, products: int, rng: random.Random, share: float = 0.001) -> None:
    ids = rng.sample(range(1, products + 1), max(1, int(products * share)))
    with engine.begin() as conn:
        conn.execute(text("UPDATE product_stock SET stock = stock + 1 WHERE product_id = :id"),
                     [{"id": i} for i in ids])


def bare_fold(engine: Engine) -> None:
    """UPDATE product_stock FROM (the new events summed per product) + commit. The new events are
    found by primary key range (SQLite needs `likelihood` to choose that over a covering index
    scan, as the real run's `rarely` tells it)."""
    with engine.begin() as conn:
        newest = conn.exec_driver_sql("SELECT max(id) FROM inventory_events").scalar() or 0
        range_ = ("likelihood(id > :cp, 0.001)" if engine.dialect.name == "sqlite"
                  else "id > :cp")
        conn.execute(text(
            "UPDATE product_stock SET stock = product_stock.stock + agg.delta FROM (SELECT "
            f"product_id, SUM(delta) AS delta FROM inventory_events WHERE {range_} "
            "GROUP BY product_id) AS agg WHERE product_stock.product_id = agg.product_id"),
            {"cp": newest - 1000})


def hot_updates(engine: Engine) -> tuple[int, int]:
    """PostgreSQL: (updates, HOT updates) of product_stock so far. The pool's connections are closed
    first: a backend reports its counts when it exits (or up to 10 s after it goes idle)."""
    if engine.dialect.name != "postgresql":
        return 0, 0
    engine.dispose()
    with engine.connect() as conn:
        return tuple(conn.exec_driver_sql(  # type: ignore[return-value]
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relname = 'product_stock'").one())


def peak_memory(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def bench(url: str, products: int, events: int, runs: int) -> dict[str, float]:
    rng = random.Random(42)
    engine = make_engine(url)
    upgrade(engine)
    t0 = time.perf_counter()
    load_products(engine, products)
    quarter = events // 4
    load_events(engine, quarter, products, rng)
    maintain(engine)
    reconcile(engine)  # the first run (full) folds everything and sets the checkpoint
    corrupt(engine, products, rng)
    mem_quarter = peak_memory(lambda: reconcile(engine, full=True))
    inc_quarter_s = median_time(lambda: reconcile(engine), runs,
                                before=lambda: load_events(engine, 1000, products, rng))

    load_events(engine, events - quarter, products, rng)
    maintain(engine)
    load_s = time.perf_counter() - t0
    reconcile(engine, full=True)
    corrupt(engine, products, rng)
    mem_all = peak_memory(lambda: reconcile(engine, full=True))

    def bare(serial: bool) -> None:
        with engine.connect() as conn:
            if serial and engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET max_parallel_workers_per_gather = 0")
            conn.exec_driver_sql(BARE).fetchall()
            conn.rollback()

    bare(False)  # warm the cache once for all
    bare_planner_s = median_time(lambda: bare(False), runs, engine=engine, name="bare_planner")
    bare_serial_s = median_time(lambda: bare(True), runs, engine=engine, name="bare_serial")
    bare_s = min(bare_planner_s, bare_serial_s)  # the anchor: the baseline's best configuration
    CPU["bare"] = CPU["bare_planner" if bare_s == bare_planner_s else "bare_serial"]
    full_s = median_time(lambda: reconcile(engine, full=True), runs,
                         before=lambda: corrupt(engine, products, rng), engine=engine,
                         name="full")
    touched: list[int] = []

    def incremental() -> None:
        touched.append(reconcile(engine).checked)

    hot_before = hot_updates(engine)
    inc_s = median_time(incremental, runs,
                        before=lambda: load_events(engine, 1000, products, rng), engine=engine,
                        name="inc")
    hot = [after - before for after, before in zip(hot_updates(engine), hot_before,
                                                   strict=True)]
    few_s = median_time(lambda: reconcile(engine), runs,
                        before=lambda: load_events(engine, 1000, 10, rng,
                                                   rng.randint(1, products - 10)),
                        engine=engine, name="few")
    none_s = median_time(lambda: reconcile(engine), runs, engine=engine, name="none")
    # Last, since it leaves the cache ahead of its checkpoint: the floor of an incremental run,
    # the bare fold of 1,000 new events (no lease, no checkpoint, no summary, no mark).
    fold_s = median_time(lambda: bare_fold(engine), runs,
                         before=lambda: load_events(engine, 1000, products, rng), engine=engine,
                         name="fold")
    engine.dispose()
    return {"touched": statistics.median(touched), "load_s": load_s, "bare_s": bare_s,
            "bare_planner_s": bare_planner_s, "bare_serial_s": bare_serial_s,
            "cpu": dict(CPU), "hot": hot,
            "full_s": full_s, "inc_s": inc_s, "fold_s": fold_s,
            "few_s": few_s, "none_s": none_s, "inc_quarter_s": inc_quarter_s,
            "mem_quarter": mem_quarter, "mem_all": mem_all,
            "events": events, "quarter": quarter, "products": products}


def report(name: str, r: dict) -> None:
    mib = 1024 * 1024
    cpu = r["cpu"]
    target = "5%" if name == "SQLite" else "8%"
    print(f"\n{name}: {r['events']:,} events (loaded in {r['load_s']:.1f} s); "
          "wall ms (median) / CPU ms per run (median)")
    print(f"  bare GROUP BY, as planned    {r['bare_planner_s'] * 1000:9.1f} ms "
          f"/ {cpu['bare_planner'] * 1000:7.1f}")
    print(f"  bare GROUP BY, no parallel   {r['bare_serial_s'] * 1000:9.1f} ms "
          f"/ {cpu['bare_serial'] * 1000:7.1f}   (anchor: the faster of the two)")
    print(f"  full reconcile               {r['full_s'] * 1000:9.1f} ms / "
          f"{cpu['full'] * 1000:7.1f}   ratio {r['full_s'] / r['bare_s']:.2f}x "
          f"(CPU {cpu['full'] / max(cpu['bare'], 1e-9):.2f}x)   (target <= 1.5x)")
    print(f"  incremental, 1,000 new       {r['inc_s'] * 1000:9.1f} ms / "
          f"{cpu['inc'] * 1000:7.1f}   ratio {100 * r['inc_s'] / r['full_s']:.1f}% of full "
          f"(CPU {100 * cpu['inc'] / max(cpu['full'], 1e-9):.1f}%)   (target <= {target})")
    print(f"    (they touch {r['touched']:,.0f} products: that many stock updates, one summary "
          "entry)")
    if r["hot"][0]:
        print(f"    HOT updates of product_stock in those runs: {r['hot'][1]:,} of {r['hot'][0]:,} "
              f"({100 * r['hot'][1] / r['hot'][0]:.0f}%: no index entries written)")
    print(f"    same at {r['quarter']:,} events    {r['inc_quarter_s'] * 1000:9.1f} ms (median)   "
          f"ratio {r['inc_s'] / r['inc_quarter_s']:.2f}x at 4x the events   (O(new events): ~1x)")
    print(f"  incremental, 1,000 new on 10 {r['few_s'] * 1000:9.1f} ms / "
          f"{cpu['few'] * 1000:7.1f}   ratio {100 * r['few_s'] / r['full_s']:.1f}% of full "
          f"(CPU {100 * cpu['few'] / max(cpu['full'], 1e-9):.1f}%)   (target <= {target})")
    print(f"  bare fold of 1,000 new       {r['fold_s'] * 1000:9.1f} ms / "
          f"{cpu['fold'] * 1000:7.1f}   ratio {100 * r['fold_s'] / r['full_s']:.1f}% of full "
          f"(CPU {100 * cpu['fold'] / max(cpu['full'], 1e-9):.1f}%)   (the floor; the "
          f"incremental run costs {r['inc_s'] / r['fold_s']:.2f}x it, CPU "
          f"{cpu['inc'] / max(cpu['fold'], 1e-9):.2f}x)")
    print(f"  incremental, nothing new     {r['none_s'] * 1000:9.1f} ms / "
          f"{cpu['none'] * 1000:7.1f}   ratio {100 * r['none_s'] / r['full_s']:.1f}% of full")
    print(f"  peak memory, full reconcile  {r['mem_quarter'] / mib:6.2f} MiB at "
          f"{r['quarter']:,} events, {r['mem_all'] / mib:6.2f} MiB at {r['events']:,}   "
          f"ratio {r['mem_all'] / r['mem_quarter']:.2f}x   (flat = ~1x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 products, 100,000 events")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="one database only")
    args = parser.parse_args()
    products, events = (1_000, 100_000) if args.quick else (10_000, 1_000_000)
    print(f"inventory bench: {products:,} products, {events:,} events, "
          f"median of {args.runs} runs")

    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory(prefix="kolaq-bench-") as tmp:
            report("SQLite", bench(f"sqlite:///{tmp}/bench.db", products, events, args.runs))

    if args.only in (None, "postgresql"):
        import psycopg

        name = f"kolaq_bench_{uuid.uuid4().hex[:8]}"
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True)
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
            report("PostgreSQL", bench(url, products, events, args.runs))
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()


if __name__ == "__main__":
    main()
