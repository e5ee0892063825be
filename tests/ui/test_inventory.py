"""3 Inventory: low-stock products, reconcile now, recent activity."""

from __future__ import annotations

from conftest import settle
from sqlmodel import Session, select

from kolaq_console.inventory.adjust import adjust
from kolaq_console.inventory.lowstock import low_stock_products
from kolaq_console.models import ActivityLog
from kolaq_console.ui.messages import InventoryReconciled
from kolaq_console.ui.widgets.record_table import RecordTable


def runs(engine) -> list[ActivityLog]:
    with Session(engine) as s:
        return list(s.exec(
            select(ActivityLog).where(ActivityLog.action == "inventory.reconcile.run")).all())


async def test_lists_the_low_stock_products_the_inventory_reports(shop, console, sqlite_engine,
                                                                  settings):
    with Session(sqlite_engine) as s:
        expected = [p.sku for p in low_stock_products(s, settings.inventory.low_stock_threshold)]
    assert expected
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(pilot)
        assert app.screen.query_one("#low-stock", RecordTable).keys() == expected


async def test_reconcile_now_runs_in_a_worker_and_reports_its_summary(shop, console,
                                                                      sqlite_engine, settings):
    adjust(sqlite_engine, settings, "KB-ORIG-750", 7, "found a case")
    before = len(runs(sqlite_engine))
    messages: list = []
    app = console()
    async with app.run_test(size=(80, 24), message_hook=messages.append) as pilot:
        await pilot.press("3", "c")
        await settle(pilot)
        [done] = [m for m in messages if isinstance(m, InventoryReconciled)]
        assert done.summary.startswith("Reconciled (incremental)")
        activity = app.screen.query_one("#activity", RecordTable)
        newest = activity.get_row_at(0)
        assert str(newest[1]) == "run"
    *_, run = runs(sqlite_engine)
    assert len(runs(sqlite_engine)) == before + 1
    assert run.actor == "test-operator"


async def test_filter_narrows_both_lists(shop, console):
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("slash", *"spoon")
        await settle(pilot)
        assert app.screen.query_one("#low-stock", RecordTable).keys() == ["KB-BAR-SPOON"]


async def test_read_only_console_refuses_to_reconcile(shop, console, sqlite_engine):
    before = runs(sqlite_engine)
    app = console(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", "c")
        await settle(pilot)
        app.screen.action_reconcile()
        await settle(pilot)
    assert len(runs(sqlite_engine)) == len(before)
