"""3 Inventory's actions: adjust stock with a reason (checked, then confirmed), send the
low-stock alert now (confirmed), the product's record on Enter."""

from __future__ import annotations

import pytest
from conftest import settle
from sqlmodel import Session, col, select
from textual.widgets import Input, Static

from kolaq_console.inventory.adjust import ACTION_ADJUST
from kolaq_console.models import ActivityLog, EmailOutbox, InventoryEvent, Product
from kolaq_console.ui.dialogs.adjust import AdjustDialog
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.screens import inventory
from kolaq_console.ui.screens.records.product import ProductRecordScreen
from kolaq_console.ui.widgets.record_table import RecordTable


def adjustments(engine) -> list[ActivityLog]:
    with Session(engine) as s:
        return list(s.exec(select(ActivityLog).where(ActivityLog.action == ACTION_ADJUST)
                           .order_by(col(ActivityLog.id))).all())


def stock_of(engine, sku: str) -> int:
    with Session(engine) as s:
        product = s.exec(select(Product).where(Product.sku == sku)).one()
        return product.stock_row.stock


def event_count(engine) -> int:
    with Session(engine) as s:
        return len(s.exec(select(InventoryEvent)).all())


async def open_adjust(pilot) -> str:
    await pilot.press("3")
    await settle(pilot)
    sku = pilot.app.screen.query_one("#low-stock", RecordTable).current
    await pilot.press("a")
    await settle(pilot)
    assert isinstance(pilot.app.screen, AdjustDialog)
    return sku


async def fill(pilot, delta: str, reason: str) -> None:
    dialog = pilot.app.screen
    dialog.query_one("#delta", Input).value = delta
    dialog.query_one("#reason", Input).value = reason
    await pilot.click("#next")
    await settle(pilot)


async def test_adjust_applies_only_after_confirming_and_records_the_reason(
        shop, console, sqlite_engine):
    before, events = len(adjustments(sqlite_engine)), event_count(sqlite_engine)
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        sku = await open_adjust(pilot)
        stock = stock_of(sqlite_engine, sku)
        await fill(pilot, "+4", "found a case behind the till")
        assert isinstance(app.screen, ConfirmDialog)
        assert f"Stock {stock} -> {stock + 4}" in app.screen.message
        assert event_count(sqlite_engine) == events  # nothing yet
        await pilot.press("n")
        await settle(pilot)
        assert event_count(sqlite_engine) == events  # cancelled: nothing
        await open_adjust(pilot)
        await fill(pilot, "+4", "found a case behind the till")
        await pilot.press("y")
        await settle(pilot)
        assert any(n.title == "Stock adjusted" for n in app._notifications)
    *_, entry = adjustments(sqlite_engine)
    assert len(adjustments(sqlite_engine)) == before + 1
    assert entry.entity_id == sku and entry.actor == "test-operator"
    assert entry.details["reason"] == "found a case behind the till"
    assert entry.details["delta"] == 4
    assert stock_of(sqlite_engine, sku) == stock + 4


@pytest.mark.parametrize(("delta", "reason", "error"), [
    ("x", "a reason", "DELTA must be a whole number such as 5 or -3, got 'x'"),
    ("0", "a reason", "DELTA must not be zero"),
    ("5", "   ", "say why the stock changed"),
    # below zero: said before the confirm, not refused after it naming a CLI flag
    ("-100000", "a reason", "Stock would go below zero"),
])
async def test_a_bad_delta_or_reason_is_named_and_changes_nothing(
        shop, console, sqlite_engine, delta, reason, error):
    events = event_count(sqlite_engine)
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await open_adjust(pilot)
        await fill(pilot, delta, reason)
        assert isinstance(app.screen, AdjustDialog)  # still asking
        assert error in str(app.screen.query_one("#dialog-message", Static).render())
    assert event_count(sqlite_engine) == events


async def test_send_alert_now_asks_first_then_queues_the_low_stock_email(
        shop, console, sqlite_engine):
    def alerts() -> int:
        with Session(sqlite_engine) as s:
            return len(s.exec(select(EmailOutbox).where(EmailOutbox.kind == "low_stock")).all())

    before = alerts()
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", "A")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        await settle(pilot)
        assert alerts() == before
        await pilot.press("A", "y")
        await settle(pilot)
        assert any("Low-stock alert queued" in n.message for n in app._notifications)
    assert alerts() == before + 1


async def test_read_only_console_offers_no_inventory_action(shop, console, sqlite_engine):
    events = event_count(sqlite_engine)
    app = console(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", "a", "A")
        await settle(pilot)
        assert not isinstance(app.screen, (AdjustDialog, ConfirmDialog))
    assert event_count(sqlite_engine) == events


async def test_enter_on_a_product_opens_its_record_with_its_history(shop, console):
    app = console()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("G")  # KB-ORNG-375, adjusted by the seed
        sku = app.screen.query_one("#low-stock", RecordTable).current
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ProductRecordScreen) and app.screen.key == sku
        head = str(app.screen.query_one("#record-fields", Static).render())
        assert sku in head
        events = app.screen.query_one(RecordTable)
        kinds = [str(events.cells(k)[2]) for k in events.displayed() if k.startswith("event:")]
        assert "adjustment" in kinds


async def test_enter_on_a_product_goes_through_links_when_it_is_there(
        shop, console, monkeypatch):
    opened: list = []

    class Links:
        @staticmethod
        def open_product(app, sku):
            opened.append(sku)

    monkeypatch.setattr(inventory, "links", Links)
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(pilot)
        sku = app.screen.query_one("#low-stock", RecordTable).current
        await pilot.press("enter")
        await settle(pilot)
    assert opened == [sku]
