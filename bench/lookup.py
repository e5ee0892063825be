"""Benchmark of the lookup (ctrl+p and `kolaq-console lookup`).

A shop of 20,000 customers, 50,000 orders (one line each), 100,000 outbox rows (two per
order), 10,000 failed send jobs and 50,000 activity entries, on SQLite and PostgreSQL (a
scratch database, dropped afterwards; never the test suite's). In the same run, alternating:

- a bare indexed query (`SELECT * FROM orders WHERE number = ?`, or customers by email): the
  baseline;
- `lookup` by order number and by email address: the whole story the CLI prints (record,
  emails, failed jobs, activity; target < 50 ms median);
- `find` as you type (what the palette runs on each key): digits of a number, a name prefix.

Printed: median wall ms and this process's CPU ms (on SQLite that includes the database) of
each, the ratio to the baseline, and how many SQL statements one call issues.

    PYTHONPATH=. python bench/lookup.py [--quick] [--repeat N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import event, insert, text
from sqlmodel import Session

from bench.jobs import postgres_database
from kolaq_console.db import make_engine
from kolaq_console.lookup import find, lookup
from kolaq_console.models import (
    ActivityLog,
    Customer,
    EmailOutbox,
    FailedJob,
    Order,
    OrderLine,
    Product,
    ProductStock,
    utcnow,
)
from kolaq_console.runtime import dispose_engines
from kolaq_console.schema import upgrade

FIRST = ["Ada", "Chidi", "Ngozi", "Tunde", "Ife", "Yemi", "Kemi", "Bola", "Emeka", "Zainab"]
LAST = ["Okafor", "Ibrahim", "Okonkwo", "Adeyemi", "Balogun", "Eze", "Bello", "Nwosu"]
CHUNK = 5_000


def fill(engine, customers: int, orders: int, failed: int) -> None:
    rnd = random.Random(7)
    now = utcnow()

    def put(table, rows) -> None:
        with engine.begin() as conn:
            for start in range(0, len(rows), CHUNK):
                conn.execute(insert(table.__table__), rows[start:start + CHUNK])

    put(Product, [{"sku": f"KB-P{i:03d}", "name": f"Bitters {i}", "price_minor": 500_00,
                   "currency": "NGN", "active": True,
                   "created_at": now, "updated_at": now} for i in range(40)])
    put(ProductStock, [{"product_id": 1 + i, "sku": f"KB-P{i:03d}", "stock": 100}
                       for i in range(40)])
    put(Customer, [{"email": f"customer{i}@example.com",
                    "name": f"{rnd.choice(FIRST)} {rnd.choice(LAST)}",
                    "marketing_consent": i % 3 == 0, "sms_consent": False,
                    "whatsapp_opt_in": False, "created_at": now} for i in range(customers)])
    put(Order, [{"number": f"KB-{100_000 + i}", "customer_id": 1 + i % customers,
                 "status": "paid", "currency": "NGN", "total_minor": 500_00,
                 "shipping_address": {}, "payment_status": "paid",
                 "created_at": now - timedelta(minutes=i), "updated_at": now}
                for i in range(orders)])
    put(OrderLine, [{"order_id": 1 + i, "product_id": 1 + i % 40, "sku": f"KB-P{i % 40:03d}",
                     "name": f"Bitters {i % 40}", "quantity": 1, "unit_price_minor": 500_00}
                    for i in range(orders)])
    put(EmailOutbox, [{"kind": "order_confirmation" if n == 0 else "shipping_notification",
                       "to_address": f"customer{i % customers}@example.com",
                       "subject": f"Order KB-{100_000 + i}", "html": "<p>x</p>", "text": "x",
                       "headers": {}, "status": "sent", "attempts": 1,
                       "idempotency_key": f"bench/{i}/{n}", "order_id": 1 + i,
                       "created_at": now, "updated_at": now}
                      for i in range(orders) for n in range(2)])
    put(FailedJob, [{"task_id": f"t{i}", "task_name": "tasks.send_email", "queue": "emails",
                     "args": [rnd.randrange(1, 2 * orders)], "kwargs": {},
                     "status": "failed" if i % 10 else "retried", "error_type": "Permanent",
                     "error_message": "403 invalid_api_key", "attempts": 3,
                     "last_attempt_at": now, "created_at": now} for i in range(failed)])
    put(ActivityLog, [{"actor": "bench", "action": "order.status", "entity": "order",
                       "entity_id": f"KB-{100_000 + i}", "details": {"to": "paid"},
                       "created_at": now} for i in range(orders)])
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))


def measure(fn, repeat: int) -> tuple[float, float]:
    """(median wall ms, median CPU ms of this process)."""
    walls, cpus = [], []
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def statements(engine, fn) -> int:
    count = 0

    def seen(*_args) -> None:
        nonlocal count
        count += 1

    event.listen(engine, "before_cursor_execute", seen)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    return count


def run(name: str, url: str, sizes: tuple[int, int, int], repeat: int) -> list[str]:
    engine = make_engine(url)
    upgrade(engine)
    started = time.perf_counter()
    fill(engine, *sizes)
    print(f"  {name}: filled in {time.perf_counter() - started:.0f} s")
    customers, orders, _ = sizes
    rnd = random.Random(11)
    numbers = [f"KB-{100_000 + rnd.randrange(orders)}" for _ in range(repeat)]
    emails = [f"customer{rnd.randrange(customers)}@example.com" for _ in range(repeat)]
    it = {"n": 0}

    def pick(values: list[str]) -> str:
        it["n"] += 1
        return values[it["n"] % len(values)]

    def session_call(call):
        def go() -> None:
            with Session(engine) as session:
                call(session)
        return go

    cases = {
        "bare: order by number": session_call(lambda s: s.execute(
            text("SELECT * FROM orders WHERE number = :n"), {"n": pick(numbers)}).all()),
        "bare: customer by email": session_call(lambda s: s.execute(
            text("SELECT * FROM customers WHERE email = :e"), {"e": pick(emails)}).all()),
        "lookup order number": session_call(lambda s: lookup(s, pick(numbers), 10)),
        "lookup email address": session_call(lambda s: lookup(s, pick(emails), 10)),
        "find '1234' (digits)": session_call(lambda s: find(s, "1234")),
        "find 'kemi b' (name)": session_call(lambda s: find(s, "kemi b")),
    }
    for fn in cases.values():  # warm caches and compiled statements
        fn()
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for _ in range(repeat):  # alternate, so a load spike hits every case alike
        for key, fn in cases.items():
            results[key].append(measure(fn, 1))
    counts = {k: statements(engine, fn) for k, fn in cases.items()}
    lines = []
    base = {"order": statistics.median(w for w, _ in results["bare: order by number"]),
            "email": statistics.median(w for w, _ in results["bare: customer by email"])}
    for key, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        ref = base["email"] if "email" in key or "name" in key else base["order"]
        lines.append(f"| {name} | {key} | {wall:.1f} ms | {cpu:.1f} ms | {wall / ref:.1f}x "
                     f"| {counts[key]} |")
    engine.dispose()
    dispose_engines()
    return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a tenth of the rows")
    parser.add_argument("--repeat", type=int, default=31)
    args = parser.parse_args()
    sizes = (2_000, 5_000, 1_000) if args.quick else (20_000, 50_000, 10_000)
    print(f"lookup: {sizes[0]:,} customers, {sizes[1]:,} orders, {2 * sizes[1]:,} outbox rows, "
          f"{sizes[2]:,} failed jobs; median of {args.repeat} alternating calls")
    lines = ["| database | case | wall | CPU | vs bare | statements |",
             "| --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory(prefix="kolaq-bench-lookup-") as tmp:
        lines += run("SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}", sizes, args.repeat)
    with postgres_database() as url:
        if url:
            lines += run("PostgreSQL", url, sizes, args.repeat)
    print("\n".join(lines))
    worst = max(float(line.split("|")[3].split()[0]) for line in lines[2:]
                if "lookup" in line)
    print(f"slowest lookup median {worst:.1f} ms (target < 50 ms)")
    return 0 if worst < 50 else 1


if __name__ == "__main__":
    sys.exit(main())
