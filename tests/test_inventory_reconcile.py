"""Reconciliation: correctness, the audit trail, concurrency, the lease. SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
import time

import pytest
import time_machine
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from inventory_helpers import (
    activity,
    add_events,
    add_products,
    checkpoint,
    corrupt,
    covered,
    reset,
    stocks,
    truth,
)
from sqlalchemy import insert, text

from kolaq_console.errors import NotFound
from kolaq_console.inventory import reconcile as reconcile_mod
from kolaq_console.inventory import runs
from kolaq_console.inventory.lease import Lease, LeaseBusy, LeaseLost
from kolaq_console.inventory.reconcile import (
    ACTION_PRODUCT,
    ACTION_RUN,
    LEASE_NAME,
    reconcile,
    reconcile_product,
)
from kolaq_console.models import InventoryEvent, utcnow


def test_first_run_is_full_and_sets_stock_to_the_sum_of_events(engine):
    a, b, c = add_products(engine, 3)
    add_events(engine, [(a, 10), (a, -3), (b, 7), (b, 5), (b, -12)])

    result = reconcile(engine)

    assert result.mode == "full"
    assert stocks(engine) == {a: 7, b: 0, c: 0} == truth(engine)
    assert result.checked == 3 and result.changed == 1  # b's events sum to 0: no change
    assert checkpoint(engine) == result.checkpoint_to > 0


def test_incremental_run_folds_only_new_events_and_agrees_with_full(engine):
    ids = add_products(engine, 4)
    add_events(engine, [(ids[0], 20), (ids[1], 15)])
    reconcile(engine)
    add_events(engine, [(ids[1], -4), (ids[2], 9), (ids[2], -1)])

    result = reconcile(engine)

    assert result.mode == "incremental"
    assert result.checked == 2  # only the products with new events are looked at
    assert result.events_folded == 3
    assert stocks(engine) == truth(engine)
    full = reconcile(engine, full=True)
    assert full.changed == 0


def test_full_run_finds_drift_no_event_explains_and_incremental_does_not_hide_it(engine):
    a, b = add_products(engine, 2)
    add_events(engine, [(a, 10), (b, 10)])
    reconcile(engine)
    corrupt(engine, a, +5)  # someone edited stock directly
    add_events(engine, [(a, -2)])

    inc = reconcile(engine)
    assert stocks(engine)[a] == 13  # the cache moved by the new event only
    full = reconcile(engine, full=True)

    assert stocks(engine) == truth(engine) == {a: 8, b: 10}
    assert inc.unexplained == 0
    assert full.changed == 1 and full.unexplained == 1


def test_folding_new_events_writes_one_summary_listing_the_changes_and_no_product_entry(
        engine):
    a, b, c, d = add_products(engine, 4, prefix="LOG")
    reconcile(engine)  # baseline: nothing to change
    add_events(engine, [(a, 12), (a, -2), (b, 4), (d, 3), (d, -3)])  # d's events net to 0

    result = reconcile(engine, actor="night-shift")

    assert stocks(engine) == truth(engine)
    assert activity(engine, ACTION_PRODUCT) == []  # the events are the trail
    runs = activity(engine, ACTION_RUN)
    assert len(runs) == 2  # baseline + this run
    run = runs[-1]
    assert (run.actor, run.entity) == ("night-shift", "inventory")
    assert run.details == {
        "mode": "incremental", "checked": 3, "changed": 2, "events_folded": 3,
        "unexplained": 0, "checkpoint_from": result.checkpoint_from,
        "checkpoint_to": result.checkpoint_to, "duration_ms": result.duration_ms,
        "changes": [["LOG-000", 0, 10], ["LOG-001", 0, 4]], "more": 0,
    }
    assert result.checkpoint_to == checkpoint(engine) > result.checkpoint_from

    # a full run that only folds new events corrects nothing either
    add_events(engine, [(c, 6)])
    full = reconcile(engine, full=True)
    assert activity(engine, ACTION_PRODUCT) == []
    assert activity(engine, ACTION_RUN)[-1].details["changes"] == [["LOG-002", 0, 6]]
    assert full.changed == 1 and full.unexplained == 0


def test_tampered_stock_is_caught_by_the_full_run_with_one_drift_entry_per_product(engine):
    a, b, c = add_products(engine, 3, prefix="TAM")
    add_events(engine, [(a, 10), (b, 10), (c, 10)])
    reconcile(engine)
    corrupt(engine, a, +5)  # stored stock edited behind reconciliation's back
    corrupt(engine, c, -3)
    add_events(engine, [(a, -2), (b, 1)])  # new events: folded, not corrections

    result = reconcile(engine, full=True, actor="weekly")

    assert stocks(engine) == truth(engine) == {a: 8, b: 11, c: 10}
    fixes = activity(engine, ACTION_PRODUCT)
    assert [(e.actor, e.entity, e.entity_id) for e in fixes] == [
        ("weekly", "product", "TAM-000"), ("weekly", "product", "TAM-002")]
    assert fixes[0].details == {"old": 15, "new": 8, "drift": -7, "reason": "reconciliation",
                                "mode": "full", "folded_events": 1, "unexplained": -5}
    assert fixes[1].details == {"old": 7, "new": 10, "drift": 3, "reason": "reconciliation",
                                "mode": "full", "folded_events": 0, "unexplained": 3}
    summary = activity(engine, ACTION_RUN)[-1].details
    assert summary["changes"] == [["TAM-000", 15, 8], ["TAM-001", 10, 11], ["TAM-002", 7, 10]]
    assert (summary["changed"], summary["unexplained"]) == (3, 2) == (
        result.changed, result.unexplained)


def test_one_product_reconcile_logs_a_correction_only_for_drift_no_event_explains(engine):
    a, b = add_products(engine, 2, prefix="ONE")
    add_events(engine, [(a, 5), (b, 5)])
    reconcile(engine)
    add_events(engine, [(a, 3), (b, 3)])
    corrupt(engine, b, +4)

    reconcile_product(engine, "ONE-000", actor="ops")  # folds a's event only
    reconcile_product(engine, "ONE-001", actor="ops")  # folds b's event and corrects drift

    assert stocks(engine) == truth(engine) == {a: 8, b: 8}
    (fix,) = activity(engine, ACTION_PRODUCT)
    assert fix.entity_id == "ONE-001"
    assert fix.details == {"old": 9, "new": 8, "drift": -1, "reason": "reconciliation",
                           "mode": "product", "folded_events": 1, "unexplained": -4}
    runs = activity(engine, ACTION_RUN)[-2:]
    assert [(r.entity, r.entity_id, r.details["changes"]) for r in runs] == [
        ("product", "ONE-000", [["ONE-000", 5, 8]]), ("product", "ONE-001", [["ONE-001", 9, 8]])]


def test_summary_lists_at_most_the_cap_of_changes_and_counts_the_rest(engine, monkeypatch):
    ids = add_products(engine, 5, prefix="CAP")
    reconcile(engine)
    add_events(engine, [(pid, 1) for pid in ids])
    monkeypatch.setattr(runs, "SUMMARY_CHANGES", 2)

    result = reconcile(engine)

    summary = activity(engine, ACTION_RUN)[-1].details
    assert summary["changes"] == [["CAP-000", 0, 1], ["CAP-001", 0, 1]]
    assert summary["more"] == 3 and summary["changed"] == 5 == len(result.changes)


def test_product_reconcile_folds_past_the_checkpoint_without_double_counting(engine):
    a, b = add_products(engine, 2, prefix="ONE")
    add_events(engine, [(a, 5), (b, 5)])
    reconcile(engine)
    add_events(engine, [(a, 3), (b, 1)])

    one = reconcile_product(engine, "ONE-000")
    assert one.changed == 1 and stocks(engine)[a] == 8
    add_events(engine, [(a, -1)])
    inc = reconcile(engine)

    assert stocks(engine) == truth(engine) == {a: 7, b: 6}
    assert {c.sku: c.folded_events for c in inc.changes} == {"ONE-000": 1, "ONE-001": 1}
    assert reconcile(engine, full=True).changed == 0


def test_reconcile_unknown_sku_is_a_clear_error(engine):
    add_products(engine, 1)
    with pytest.raises(NotFound, match="unknown SKU 'NOPE'"):
        reconcile_product(engine, "NOPE")


# --- property: incremental == full -----------------------------------------------------------

N_PRODUCTS = 4
_op = st.one_of(
    st.tuples(st.just("events"),
              st.lists(st.tuples(st.integers(0, N_PRODUCTS - 1), st.integers(-6, 12)),
                       min_size=1, max_size=6)),
    st.tuples(st.just("incremental")),
    st.tuples(st.just("product"), st.integers(0, N_PRODUCTS - 1)),
    st.tuples(st.just("full")),
)


@hsettings(max_examples=20, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(_op, max_size=10))
def test_incremental_runs_always_agree_with_a_full_run(engine, ops):
    reset(engine)
    ids = add_products(engine, N_PRODUCTS)
    reconcile(engine)  # the baseline, so later runs are incremental
    for op in ops:
        if op[0] == "events":
            add_events(engine, [(ids[i], d) for i, d in op[1]])
        elif op[0] == "incremental":
            reconcile(engine)
        elif op[0] == "product":
            reconcile_product(engine, f"SKU-{op[1]:03d}")
        else:
            reconcile(engine, full=True)
        assert stocks(engine) == covered(engine)  # the cache's contract holds after every step

    reconcile(engine)
    incremental = stocks(engine)
    full = reconcile(engine, full=True)

    assert incremental == truth(engine)
    assert full.changed == 0 and stocks(engine) == incremental


# --- concurrency -----------------------------------------------------------------------------


def test_events_inserted_while_runs_are_in_progress_are_counted_exactly_once(engine):
    ids = add_products(engine, 12)
    reconcile(engine)
    pg = engine.dialect.name == "postgresql"
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                with engine.begin() as conn:
                    for _ in range(rng.randint(1, 3)):
                        conn.execute(insert(InventoryEvent).values(
                            product_id=rng.choice(ids), delta=rng.randint(-3, 9),
                            kind="sale", actor="writer", created_at=utcnow()))
                        if pg:  # hold the transaction open: later ids commit before earlier
                            time.sleep(rng.random() * 0.02)
                if not pg:  # SQLite has one writer at a time: leave the others a turn
                    time.sleep(rng.random() * 0.01)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(12):
            if i % 4 == 3:
                reconcile_product(engine, f"SKU-{i:03d}")
            reconcile(engine, full=(i % 5 == 4))
            # Between runs only the writers move; every event at or below the cache's mark is
            # committed, so the cache must equal exactly their sum: nothing lost, nothing twice.
            assert stocks(engine) == covered(engine)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors
    reconcile(engine)
    assert stocks(engine) == truth(engine)
    assert reconcile(engine, full=True).changed == 0


def test_event_committed_after_a_later_id_is_not_skipped(engine):
    """Transaction A takes an event id, B takes the next one and commits first. A checkpoint
    taken as B's id would skip A's event forever; the run must wait for A, or leave both."""
    a, b = add_products(engine, 2, prefix="OOO")
    reconcile(engine)
    conn_a = engine.connect()
    tx_a = conn_a.begin()
    conn_a.execute(insert(InventoryEvent).values(product_id=a, delta=7, kind="sale",
                                                 actor="A", created_at=utcnow()))
    if engine.dialect.name == "postgresql":  # SQLite would block B behind A's write lock
        add_events(engine, [(b, 3)])
    results = []
    runner = threading.Thread(target=lambda: results.append(reconcile(engine)))
    runner.start()
    if engine.dialect.name == "postgresql":
        # the run waits for A (its SHARE lock queues behind A's insert)
        from helpers import wait_until
        wait_until(lambda: _lock_waiters(engine) > 0, message="reconcile waiting for A")
    else:
        time.sleep(0.2)  # let the run reach A's write lock; correctness does not depend on it
    tx_a.commit()
    conn_a.close()
    runner.join(30)
    assert results, "reconcile did not finish"

    reconcile(engine)

    assert stocks(engine) == truth(engine)
    if engine.dialect.name == "postgresql":
        assert stocks(engine) == {a: 7, b: 3}
        assert results[0].checkpoint_to == checkpoint(engine)  # the first run took both


def _lock_waiters(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
            "'inventory_events'::regclass")).scalar()


# --- the lease -------------------------------------------------------------------------------


def test_two_runs_never_overlap(engine):
    add_products(engine, 1)
    holder = Lease(engine, LEASE_NAME, ttl=60)
    assert holder.acquire()
    try:
        with pytest.raises(LeaseBusy, match="already running"):
            reconcile(engine)
        assert not Lease(engine, LEASE_NAME, ttl=60).acquire()
    finally:
        holder.release()
    assert reconcile(engine).mode == "full"


def test_contenders_acquiring_the_lease_at_once_have_exactly_one_winner(engine):
    start = threading.Barrier(6)
    won: list[bool] = []

    def contend(i: int) -> None:
        start.wait()
        won.append(Lease(engine, "contended", ttl=60, owner=f"owner-{i}").acquire())

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(won) == [False] * 5 + [True]


def test_a_crashed_runs_lease_expires_after_its_ttl(engine):
    (a,) = add_products(engine, 1)
    add_events(engine, [(a, 4)])
    crashed = Lease(engine, LEASE_NAME, ttl=30)
    assert crashed.acquire()  # and never releases: the process died
    with pytest.raises(LeaseBusy):
        reconcile(engine)
    with time_machine.travel(time.time() + 31, tick=True):
        result = reconcile(engine)
    assert result.changed == 1 and stocks(engine)[a] == 4


@pytest.mark.parametrize("full", [True, False], ids=["full", "incremental"])
def test_a_run_that_lost_its_lease_commits_nothing(engine, monkeypatch, full):
    """A run of two transactions can lose its lease between them: the full run, and the
    incremental run on PostgreSQL (on SQLite it is one exclusive transaction, which nothing
    can interleave, so there it is shown by the full run alone)."""
    if not full and engine.dialect.name == "sqlite":
        full = True
    (a,) = add_products(engine, 1)
    reconcile(engine)
    add_events(engine, [(a, 5)])
    before = checkpoint(engine)
    checkpoint_of = reconcile_mod.checkpoint_of  # called once the lease is taken

    def stall_and_lose_lease(*args):
        out = checkpoint_of(*args)
        # the run stalled past its TTL and another run took the lease over
        with engine.begin() as conn:
            conn.execute(text("UPDATE system_state SET value = :v WHERE key = :k"),
                         {"v": '{"owner": "other", "expires_at": 9999999999}',
                          "k": f"lease:{LEASE_NAME}"})
        return out

    monkeypatch.setattr(reconcile_mod, "checkpoint_of", stall_and_lose_lease)
    if not full:
        # PostgreSQL sends both transactions in one message: the lease taken over between
        # them, by a statement of that message after the first transaction's COMMIT
        from kolaq_console.inventory import incremental_pg

        run_sql = incremental_pg._run_sql

        def losing(*args):
            return run_sql(*args).replace("COMMIT; BEGIN;", (
                "COMMIT; UPDATE system_state SET value = "
                "'{\"owner\": \"other\", \"expires_at\": 9999999999}' "
                f"WHERE key = 'lease:{LEASE_NAME}'; BEGIN;"), 1)

        monkeypatch.setattr(incremental_pg, "_run_sql", losing)
    with pytest.raises(LeaseLost):
        reconcile(engine, full=full)
    assert checkpoint(engine) == before and stocks(engine)[a] == 0
    assert len(activity(engine, ACTION_RUN)) == 1  # only the baseline run

