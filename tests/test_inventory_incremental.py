"""The incremental run (inventory/incremental.py): its race with a one-product run on
PostgreSQL, and the reconciled times it leaves. The rest of reconciliation is in
test_inventory_reconcile.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import pytest
from inventory_helpers import add_events, add_products, stocks, truth
from sqlalchemy import text
from sqlmodel import Session

from kolaq_console.inventory.reconcile import Change, reconcile
from kolaq_console.models import InventoryEvent


def test_an_incremental_run_waiting_on_a_row_a_one_product_run_moved_counts_no_event_twice(
    postgres_url,
):
    """PostgreSQL: the incremental UPDATE waits on a product row that a one-product run holds;
    that run folds the product past the checkpoint and commits. The UPDATE re-checks the row
    (its mark is now past the checkpoint), leaves it to the marked-products path, and the
    product's events are counted once."""
    from helpers import wait_until

    from kolaq_console.db import make_engine
    from kolaq_console.schema import upgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    a, b = add_products(engine, 2)
    reconcile(engine)
    add_events(engine, [(a, 5), (b, 7)])
    done: list[object] = []
    with engine.connect() as holder:
        holder.begin()
        # a one-product run: the row lock first, then (below) the stock and mark it writes
        holder.execute(text("SELECT 1 FROM product_stock WHERE product_id = :a "
                            "FOR NO KEY UPDATE"),
                       {"a": a})
        runner = threading.Thread(target=lambda: done.append(reconcile(engine)))
        runner.start()

        def incremental_waits_on_the_row() -> bool:
            # the run is the only backend that can wait on a lock here (the holder waits on
            # nothing); its fold may run inside a function, so its query text is not matched
            with engine.connect() as probe:
                return bool(probe.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                    )).scalar())

        wait_until(incremental_waits_on_the_row, message="the incremental run to wait on a")
        add_events(engine, [(a, 3)])  # after the run's high-water mark
        mark = holder.execute(text("SELECT max(id) FROM inventory_events")).scalar()
        holder.execute(text("UPDATE product_stock SET stock = 8, stock_event_id = :m "
                            "WHERE product_id = :a"),
                       {"m": mark, "a": a})
        holder.commit()
        runner.join(30)
    assert done and done[0].mode == "incremental"
    assert stocks(engine) == {a: 8, b: 7} == truth(engine)
    engine.dispose()


def test_a_product_is_reconciled_at_the_last_run_or_at_its_own_one_product_run_since(
    engine, settings,
):
    """Every product's reconciled time is the last run's that covered every product, changed
    by it or not; a product adjusted since (a one-product run past the checkpoint) shows that
    run's time (its event's) until the next run covers it too."""
    from kolaq_console.inventory.adjust import adjust, history
    from kolaq_console.inventory.stock import checkpoint_time, read_state

    def reconciled() -> dict[str, datetime | None]:
        with Session(engine) as session:
            return {sku: history(session, sku, 1)["last_reconciled_at"]
                    for sku in ("SKU-000", "SKU-001", "SKU-002")}

    def run_time() -> datetime | None:
        with Session(engine) as session:
            return checkpoint_time(read_state(session))

    a, _b, c = add_products(engine, 3)
    assert reconciled() == dict.fromkeys(("SKU-000", "SKU-001", "SKU-002"))  # never
    reconcile(engine)
    first = run_time()
    assert first is not None and reconciled() == dict.fromkeys(
        ("SKU-000", "SKU-001", "SKU-002"), first)
    add_events(engine, [(a, 2)])
    reconcile(engine)  # incremental: changes SKU-000 only, verifies every product
    second = run_time()
    assert second is not None and second > first
    assert reconciled() == dict.fromkeys(("SKU-000", "SKU-001", "SKU-002"), second)
    adjusted = adjust(engine, settings, "SKU-002", 100, "a delivery", actor="ada")
    with Session(engine) as session:
        own = session.get(InventoryEvent, adjusted.event_id).created_at
    assert own >= second
    assert reconciled() == {"SKU-000": second, "SKU-001": second, "SKU-002": own}
    add_events(engine, [(c, 1)])
    reconcile(engine)
    third = run_time()
    assert third is not None and third >= own
    assert reconciled() == dict.fromkeys(("SKU-000", "SKU-001", "SKU-002"), third)


@contextmanager
def event_insert_left_open(engine, product_id: int) -> Iterator[None]:
    """A sale of `product_id` inserted and left uncommitted until the block ends."""
    with engine.connect() as writer:
        writer.begin()
        writer.execute(text("INSERT INTO inventory_events (product_id, delta, kind, actor, "
                            "created_at) VALUES (:a, 1, 'sale', 'test', now())"),
                       {"a": product_id})
        yield
        writer.commit()


def test_the_high_water_mark_gives_up_on_an_event_insert_left_open(postgres_url):
    """PostgreSQL: an uncommitted event insert holds the safe high-water mark back; past the
    lock timeout the run gives up with EventsBusy (retried later), never reads past it."""

    from kolaq_console.db import make_engine
    from kolaq_console.inventory.stock import EventsBusy, high_water_mark
    from kolaq_console.schema import upgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    (a,) = add_products(engine, 1)
    with (event_insert_left_open(engine, a), engine.connect() as reader, reader.begin(),
          pytest.raises(EventsBusy)):
        high_water_mark(reader, lock_timeout=0.2)
    engine.dispose()


def test_incremental_runs_started_together_fold_each_event_once(engine):
    """Runs racing for the lease: each one either folds or is refused (LeaseBusy), and across
    all of them every event is folded exactly once."""
    import itertools
    import random

    from kolaq_console.inventory.lease import LeaseBusy

    ids = add_products(engine, 30)
    reconcile(engine)
    rng = random.Random(7)
    spans: list[tuple[int, int]] = []
    for _ in range(6):
        add_events(engine, [(rng.choice(ids), rng.randint(-3, 9)) for _ in range(40)])
        start = threading.Barrier(3)
        results: list[object] = []

        def run(start: threading.Barrier = start, results: list[object] = results) -> None:
            start.wait()
            try:
                results.append(reconcile(engine))
            except LeaseBusy as exc:
                results.append(exc)

        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == 3
        runs = [r for r in results if not isinstance(r, LeaseBusy)]
        assert runs, results
        spans += [(r.checkpoint_from, r.checkpoint_to) for r in runs]
        assert stocks(engine) == truth(engine)  # an event folded twice would show here
    # the runs' event ranges (checkpoint_from, checkpoint_to] follow each other: none overlap
    spans = [s for s in sorted(spans) if s[0] != s[1]]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans)), spans


def test_new_events_summing_to_zero_after_a_one_product_run_folded_part_of_them(engine):
    """A product's new events sum to zero, but a one-product run already folded the first of
    them (its mark is past the checkpoint): the incremental run still folds the rest."""
    from kolaq_console.inventory.reconcile import reconcile_product

    a, b = add_products(engine, 2, prefix="ZERO")
    add_events(engine, [(a, 4), (b, 1)])
    reconcile(engine)
    add_events(engine, [(a, 5)])
    reconcile_product(engine, "ZERO-000")  # folds the +5: stock 9, mark past the checkpoint
    add_events(engine, [(a, -5), (b, 2)])  # a: +5 -5 since the checkpoint
    inc = reconcile(engine)
    assert stocks(engine) == truth(engine) == {a: 4, b: 3}
    assert inc.checked == 2
    assert {c.sku: (c.old, c.new) for c in inc.changes} == {"ZERO-000": (9, 4),
                                                             "ZERO-001": (1, 3)}


def test_the_first_transaction_gives_up_on_an_event_insert_left_open_and_keeps_no_lease(
    postgres_url,
):
    """PostgreSQL: the incremental run's first message (lease, SHARE lock, high-water mark)
    raises EventsBusy past its lock timeout, and the lease it had taken is rolled back with
    it, so the next run is not refused."""

    from kolaq_console.db import make_engine
    from kolaq_console.inventory.incremental_pg import postgres_start
    from kolaq_console.inventory.lease import Lease
    from kolaq_console.inventory.reconcile import LEASE_NAME
    from kolaq_console.inventory.stock import EventsBusy
    from kolaq_console.schema import upgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    (a,) = add_products(engine, 1)
    reconcile(engine)
    with event_insert_left_open(engine, a):
        lease = Lease(engine, LEASE_NAME, ttl=60)
        with pytest.raises(EventsBusy):
            postgres_start(engine, lease, lock_timeout=0.2)
        assert not lease.held and lease.holder() is None
    assert reconcile(engine).changed == 1 and stocks(engine) == {a: 1}
    engine.dispose()


def test_a_run_whose_first_transaction_fails_in_the_shared_message_folds_nothing(postgres_url):
    """PostgreSQL: the incremental run sends its first transaction and the second one's fold
    in one message (incremental_pg.postgres_run). When the first fails (here: EventsBusy past
    its lock timeout), nothing of the second runs: no stock moved, the lease not kept, the
    checkpoint where it was; the next run folds the events."""
    from kolaq_console.db import make_engine
    from kolaq_console.inventory.incremental_pg import postgres_run
    from kolaq_console.inventory.lease import Lease
    from kolaq_console.inventory.reconcile import LEASE_NAME
    from kolaq_console.inventory.stock import EventsBusy
    from kolaq_console.schema import upgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    a, b = add_products(engine, 2)
    reconcile(engine)
    add_events(engine, [(b, 4)])
    assert reconcile(engine).changed == 1  # the session's functions made, a run recorded
    add_events(engine, [(b, 3)])
    with event_insert_left_open(engine, a):
        lease = Lease(engine, LEASE_NAME, ttl=60)
        with pytest.raises(EventsBusy):
            postgres_run(engine, lease, "test", 0.0, lock_timeout=0.2)
        assert not lease.held and lease.holder() is None
        assert stocks(engine) == {a: 0, b: 4}
    result = reconcile(engine)
    assert (result.mode, result.changed, result.events_folded) == ("incremental", 2, 2)
    assert stocks(engine) == {a: 1, b: 7} == truth(engine)
    engine.dispose()


@pytest.mark.parametrize("lose", [
    "DISCARD TEMP",  # both functions: the first transaction finds none
    "DROP FUNCTION pg_temp.kolaq_inventory_fold",  # the second transaction's only
])
def test_an_incremental_run_whose_session_lost_its_functions_runs_without_them(
    postgres_url, lose,
):
    """PostgreSQL: the incremental run's statements run as functions of the pooled
    connection's session (incremental_pg); if they are gone (the session's temporary objects
    discarded), the run sends the statements themselves, with the same result."""
    from kolaq_console.db import make_engine
    from kolaq_console.schema import upgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    a, b = add_products(engine, 2)
    reconcile(engine)
    add_events(engine, [(a, 5)])
    assert reconcile(engine).changed == 1  # made the functions on the pooled connection
    raw = engine.raw_connection()  # the same connection: one thread, one in the pool
    try:
        cursor = raw.cursor()
        cursor.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'kolaq_inventory_%' "
                       "AND pronamespace = pg_my_temp_schema()")
        assert cursor.fetchone()[0] == 3
        cursor.execute(lose)
        raw.commit()
    finally:
        raw.close()
    add_events(engine, [(a, -2), (b, 7)])
    result = reconcile(engine)
    assert result.mode == "incremental"
    assert [(c.sku, c.old, c.new, c.folded_events) for c in result.changes] == [
        ("SKU-000", 5, 3, 1), ("SKU-001", 0, 7, 1)]
    assert stocks(engine) == {a: 3, b: 7} == truth(engine)
    add_events(engine, [(b, 1)])
    assert reconcile(engine).changed == 1 and stocks(engine) == {a: 3, b: 8} == truth(engine)
    engine.dispose()


def test_an_incremental_runs_result_lists_every_change_as_inventory_reconcile_shows_it(engine):
    a, b, c = add_products(engine, 3, prefix="LIST")
    reconcile(engine)
    add_events(engine, [(a, 2), (a, 1), (c, -4), (b, 5), (b, -5)])

    result = reconcile(engine)

    assert (result.mode, result.checked, result.changed, result.events_folded) == (
        "incremental", 3, 2, 3)  # LIST-001's events sum to zero: checked, not changed
    assert result.changes == [Change(a, "LIST-000", 0, 3, 2), Change(c, "LIST-002", 0, -4, 1)]
    assert result.as_dict()["changes"] == [  # what `inventory reconcile --json` prints
        {"sku": "LIST-000", "old": 0, "new": 3, "drift": 3, "folded_events": 2,
         "unexplained": 0},
        {"sku": "LIST-002", "old": 0, "new": -4, "drift": -4, "folded_events": 1,
         "unexplained": 0}]
    assert [(ch.sku, ch.drift) for ch in result.changes[1:]] == [("LIST-002", -4)]
    assert result.log_details()["changes"] == [["LIST-000", 0, 3], ["LIST-002", 0, -4]]


def test_the_sqlite_fold_reads_its_aggregate_row_by_row():
    """CROSS JOIN keeps SQLite from copying the aggregate to a temporary table first."""
    import sqlite3

    from kolaq_console.inventory.incremental import _sqlite_fold

    sql, literals = _sqlite_fold()
    assert " AS agg CROSS JOIN product_stock ON " in sql
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE inventory_events (id INTEGER PRIMARY KEY, product_id INTEGER, "
               "delta INTEGER)")
    db.execute("CREATE INDEX ix_inventory_events_product_delta ON inventory_events "
               "(product_id, delta)")
    db.execute("CREATE TABLE product_stock (product_id INTEGER PRIMARY KEY, sku TEXT, "
               "stock INTEGER, stock_event_id INTEGER)")
    plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}",
                                         {**literals, "cp": 0, "hw": 10})]
    assert "CO-ROUTINE agg" in plan and not any("MATERIALIZE" in step for step in plan)
