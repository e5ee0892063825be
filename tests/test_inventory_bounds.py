"""Oversized stock adjustments: bounded, refused whole in one line, and a bad product never
fails a reconciliation run for the others."""

from __future__ import annotations

import threading

import pytest
from helpers import run_cli, wait_until
from inventory_helpers import (
    activity,
    add_events,
    add_products,
    checkpoint,
    corrupt,
    counts,
    covered,
    stocks,
    truth,
)
from sqlalchemy import text
from sqlmodel import Session, col, select

from kolaq_console import runtime
from kolaq_console.cli import main
from kolaq_console.config import ConfigError
from kolaq_console.errors import UserError
from kolaq_console.inventory.adjust import adjust
from kolaq_console.inventory.reconcile import ACTION_PRODUCT, ACTION_REFUSED, reconcile
from kolaq_console.inventory.stock import checkpoint_time, read_state, reconciled_times
from kolaq_console.models import Product, ProductStock


def cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_two_billion_twice_refuses_the_second_whole_and_reconcile_still_works(
        engine, make_settings, capsys):
    """The incident: `inventory adjust SKU 2000000000` twice on PostgreSQL committed the second
    event, then failed to store the stock, and every later reconcile failed."""
    runtime.configure(make_settings(inventory__max_adjustment="2000000000",
                                    inventory__max_stock="2000000000"))
    big, other = add_products(engine, 2, prefix="BIG")
    add_events(engine, [(other, 7)])

    assert cli("inventory", "adjust", "BIG-000", "2000000000", "--reason", "typo") == 0
    before = counts(engine)
    capsys.readouterr()

    assert cli("inventory", "adjust", "BIG-000", "2000000000", "--reason", "typo") == 1

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[inventory] max_stock" in err and "2,000,000,000" in err
    assert counts(engine) == before  # no event, no activity entry, no stock change
    assert stocks(engine)[big] == 2_000_000_000 == truth(engine)[big]
    add_events(engine, [(other, 1)])
    assert cli("inventory", "reconcile") == 0
    assert cli("inventory", "reconcile", "--full") == 0
    assert stocks(engine) == truth(engine) == {big: 2_000_000_000, other: 8}


@pytest.mark.parametrize(("delta", "message"), [
    ("12345678901234567890123", "far too large"),  # 23 digits: was an 85-line traceback
    ("-99999999999", "far too large"),
    ("2000000000", "[inventory] max_adjustment"),
    ("1000001", "at most 1,000,000 units ([inventory] max_adjustment)"),
])
def test_oversized_delta_is_one_line_in_a_real_process_and_writes_nothing(
        engine, kolaq_env, delta, message):
    (pid,) = add_products(engine, 1, prefix="HUGE")
    add_events(engine, [(pid, 5)])
    before = counts(engine)

    proc = run_cli(kolaq_env, "inventory", "adjust", "HUGE-000", delta, "--reason", "typo")

    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert counts(engine) == before


def test_resulting_stock_is_bounded_in_both_directions(engine, make_settings):
    s = make_settings(inventory__max_stock="100", inventory__max_adjustment="1000")
    (pid,) = add_products(engine, 1, prefix="CAP")
    add_events(engine, [(pid, 60)])
    before = counts(engine)

    with pytest.raises(UserError, match=r"stock would be 160 \(60 \+100\).*at most 100 units"):
        adjust(engine, s, "CAP-000", 100, "delivery")
    with pytest.raises(UserError, match=r"stock would be -140.*at least -100 units"):
        adjust(engine, s, "CAP-000", -200, "stock take", allow_negative=True)
    assert counts(engine) == before
    assert adjust(engine, s, "CAP-000", 40, "delivery").stock_after == 100


def test_an_out_of_range_product_can_be_corrected_back_into_range(engine, make_settings):
    """Events the old code committed (beyond max_stock) are not a dead end: an adjustment that
    brings the stock back towards the range is allowed whatever its size."""
    s = make_settings(inventory__max_stock="1000", inventory__max_adjustment="10")
    (pid,) = add_products(engine, 1, prefix="FIX")
    add_events(engine, [(pid, 2_000_000_000), (pid, 2_000_000_000)])

    with pytest.raises(UserError, match="max_adjustment"):
        adjust(engine, s, "FIX-000", 1_000, "would go further out")
    adjust(engine, s, "FIX-000", -2_000_000_000, "undo the typo")
    result = adjust(engine, s, "FIX-000", -1_999_999_500, "undo the other typo")

    assert result.stock_after == 500 == stocks(engine)[pid] == truth(engine)[pid]


def test_adjustment_stores_event_and_stock_in_one_transaction(engine, settings):
    (pid,) = add_products(engine, 1, prefix="ONE")
    add_events(engine, [(pid, 10)])

    result = adjust(engine, settings, "ONE-000", -3, "breakage")

    with Session(engine) as session:
        product = session.exec(select(Product).where(col(Product.id) == pid)).one()
    # the product's mark is the adjustment's own event: nothing left for a reconcile to fold
    assert (product.stock_row.stock, product.stock_row.stock_event_id) == (7, result.event_id)
    assert covered(engine) == truth(engine)


def test_adjustment_waits_for_an_uncommitted_event_of_its_product(engine, settings):
    """The adjustment's event id is a safe mark only if no lower event of the product is still
    uncommitted: it must wait for such an insert and count it."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: no insert can be pending")
    (pid,) = add_products(engine, 1, prefix="RACE")
    add_events(engine, [(pid, 10)])
    pending = engine.connect()
    tx = pending.begin()
    pending.execute(text("INSERT INTO inventory_events (product_id, delta, kind, actor, "
                         "created_at) VALUES (:p, 5, 'sale', 'shop', now())"), {"p": pid})
    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.update(
        r=adjust(engine, settings, "RACE-000", 1, "recount")))
    worker.start()

    def adjustment_is_waiting() -> bool:
        with engine.connect() as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()")).scalar())

    wait_until(adjustment_is_waiting, message="the adjustment to wait for the open insert")
    tx.commit()
    pending.close()
    worker.join(30)

    assert outcome["r"].stock_before == 15 and outcome["r"].stock_after == 16
    assert stocks(engine)[pid] == 16 == truth(engine)[pid]
    assert covered(engine) == truth(engine)


def _make_unfoldable(engine, pid: int) -> None:
    """A product the set-based run cannot fold. PostgreSQL: a cache edited to the edge of its
    64-bit column, so stock + new events overflows. SQLite: events whose SUM overflows 64 bits
    (what the old code let `inventory adjust SKU 4611686018427387904` write twice)."""
    if engine.dialect.name == "postgresql":
        corrupt(engine, pid, 9_223_372_036_854_775_000)
        add_events(engine, [(pid, 1_000)])
    else:
        add_events(engine, [(pid, 2**62), (pid, 2**62)])


@pytest.mark.parametrize("full", [False, True], ids=["incremental", "full"])
def test_a_bad_product_is_isolated_and_every_other_one_reconciled(engine, settings, full):
    ids = add_products(engine, 4, prefix="ISO")
    add_events(engine, [(pid, 10) for pid in ids])
    reconcile(engine)
    bad = ids[1]
    _make_unfoldable(engine, bad)
    add_events(engine, [(pid, 3) for pid in ids if pid != bad])
    start = checkpoint(engine)

    result = reconcile(engine, full=full)

    good = [pid for pid in ids if pid != bad]
    assert {pid: stocks(engine)[pid] for pid in good} == {pid: 13 for pid in good}
    if engine.dialect.name == "postgresql":
        # one at a time the product is recomputed from its events: the edit is corrected
        assert result.refused == []
        assert stocks(engine)[bad] == truth(engine)[bad] == 1_010
        assert [e.entity_id for e in activity(engine, ACTION_PRODUCT)] == ["ISO-001"]
        assert checkpoint(engine) > start
    else:
        assert result.refused and result.refused[0][0] == "ISO-001"
        assert "overflow" in result.refused[0][1]
        assert stocks(engine)[bad] == 10  # left as it was
        assert [e.entity_id for e in activity(engine, ACTION_REFUSED)] == ["ISO-001"]
        assert checkpoint(engine) == start  # its events stay above the checkpoint
        # and it was last reconciled by the run before; the others by this one
        with Session(engine) as session:
            state = read_state(session)
            covered = checkpoint_time(state)
            times = reconciled_times(session, state, dict(session.exec(
                select(ProductStock.product_id, ProductStock.stock_event_id)).all()))
        assert covered is not None and times[bad] == covered
        assert all(times[pid] > covered for pid in good)
        # the others are marked past their events, so the next run does not fold them twice
        add_events(engine, [(good[0], 1)])
        reconcile(engine)
        assert {pid: stocks(engine)[pid] for pid in good} == {good[0]: 14, good[1]: 13,
                                                              good[2]: 13}


def test_cli_reconcile_reports_the_refused_product_and_exits_non_zero(
        engine, settings, capsys):
    if engine.dialect.name == "postgresql":
        pytest.skip("PostgreSQL recomputes the product (see the test above): nothing refused")
    a, bad = add_products(engine, 2, prefix="REP")
    add_events(engine, [(a, 4)])
    reconcile(engine)
    _make_unfoldable(engine, bad)
    add_events(engine, [(a, 1)])
    capsys.readouterr()

    assert cli("inventory", "reconcile") == 1

    captured = capsys.readouterr()
    assert "refused: REP-001 was not reconciled (integer overflow)" in captured.out
    (line,) = captured.err.strip().splitlines()  # the progress bar leaves a blank line
    assert "1 product(s) could not be reconciled: REP-001" in line
    assert stocks(engine)[a] == 5


def test_out_of_range_stock_found_by_a_run_is_reported(engine, settings):
    (pid,) = add_products(engine, 1, prefix="OUT")
    reconcile(engine)
    add_events(engine, [(pid, 1_500_000_000)])

    result = reconcile(engine, max_stock=settings.inventory.max_stock)

    assert result.out_of_range == [["OUT-000", 1_500_000_000]]
    assert stocks(engine)[pid] == 1_500_000_000  # the cache tells the truth all the same


@pytest.mark.parametrize(("key", "value"), [
    ("inventory__max_stock", "0"), ("inventory__max_stock", "3000000000"),
    ("inventory__max_adjustment", "-5"),
])
def test_stock_bounds_have_a_range(make_settings, key, value):
    with pytest.raises(ConfigError, match=key.upper()):
        make_settings(**{key: value})
