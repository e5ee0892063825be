"""6 Orders and 7 Webhooks: filters, details (emails with their delivery state), a status change
confirmed in two steps, shipping with carrier and tracking, replay of a flagged event, and the
Emails screen's delivery column."""

from __future__ import annotations

from conftest import settle
from sqlmodel import Session, select
from textual.widgets import Input

from kolaq_console import dispatch
from kolaq_console.models import EmailOutbox, Order, WebhookEvent, utcnow
from kolaq_console.ui.dialogs.choose import ChooseDialog, ShippingDialog
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.screens.orders import OrderDetailScreen
from kolaq_console.ui.screens.webhooks import WebhookDetailScreen
from kolaq_console.ui.widgets.record_table import RecordTable


def listed(app) -> list:
    return app.screen.query_one(RecordTable).keys()


def orders(engine, status=None) -> list[Order]:
    with Session(engine) as s:
        query = select(Order).order_by(Order.created_at.desc(), Order.id.desc())
        if status:
            query = query.where(Order.status == status)
        return list(s.exec(query).all())


def emails_of(engine, number) -> list[EmailOutbox]:
    with Session(engine) as s:
        order = s.exec(select(Order).where(Order.number == number)).one()
        return list(s.exec(select(EmailOutbox).where(EmailOutbox.order_id == order.id)).all())


async def test_orders_filter_by_status_and_the_detail_shows_emails_with_delivery_state(
        shop, console, sqlite_engine):
    app = console()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("6")
        await settle(pilot)
        assert listed(app) == [o.number for o in orders(sqlite_engine)][:200]
        await pilot.press("f")  # pending
        await settle(pilot)
        assert listed(app) == [o.number for o in orders(sqlite_engine, "pending")]
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("slash", *"KB-10002", "enter")
        await settle(pilot)
        assert listed(app) == ["KB-10002"]
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, OrderDetailScreen)
        shown = str(app.screen.query_one("#detail-fields").render())
        assert "order_confirmation" in shown and "delivered" in shown  # status · delivery


async def test_a_status_change_is_chosen_confirmed_and_sends_one_email(shop, console,
                                                                       sqlite_engine):
    pending = orders(sqlite_engine, "pending")[0].number
    app = console()
    with dispatch.recording() as calls:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("6", "f")
            await settle(pilot)
            assert listed(app)[0] == pending
            await pilot.press("s")
            await settle(pilot)
            assert isinstance(app.screen, ChooseDialog)
            assert app.screen.choices == ["paid", "cancelled"]
            await pilot.press("down", "enter")  # cancelled
            await settle(pilot)
            assert isinstance(app.screen, ConfirmDialog)
            assert "status update" in app.screen.message
            await pilot.press("y")
            await settle(pilot)
    [order] = [o for o in orders(sqlite_engine) if o.number == pending]
    assert order.status == "cancelled"
    [email] = emails_of(sqlite_engine, pending)
    assert email.kind == "order_status_update"
    assert [c.args for c in calls] == [(email.id,)]


async def test_shipping_asks_for_carrier_and_tracking(shop, console, sqlite_engine):
    paid = orders(sqlite_engine, "paid")[0].number
    app = console()
    with dispatch.recording():
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("6", "f", "f")  # paid
            await settle(pilot)
            assert listed(app)[0] == paid
            await pilot.press("s", "down", "enter")  # processing, [shipped], ...
            await settle(pilot)
            assert isinstance(app.screen, ShippingDialog)
            await pilot.press("enter")  # empty: refused in the dialog
            assert isinstance(app.screen, ShippingDialog)
            await pilot.press(*"GIG Logistics", "tab", *"GIG123", "enter")
            await settle(pilot)
            assert isinstance(app.screen, ConfirmDialog)
            await pilot.press("y")
            await settle(pilot)
    [order] = [o for o in orders(sqlite_engine) if o.number == paid]
    assert (order.status, order.carrier, order.tracking_number) == (
        "shipped", "GIG Logistics", "GIG123")
    assert [e.kind for e in emails_of(sqlite_engine, paid)] == ["shipping_notification"]


async def test_the_shipping_dialog_refuses_a_tracking_link_that_is_not_a_web_address(
    shop, console, sqlite_engine
):
    paid = orders(sqlite_engine, "paid")[0].number
    app = console()
    with dispatch.recording():
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("6", "f", "f", "s", "down", "enter")  # paid -> shipped
            await settle(pilot)
            await pilot.press(*"GIG", "tab", *"T1", "tab", *"gig.example/T1", "enter")
            await settle(pilot)
            assert isinstance(app.screen, ShippingDialog)  # refused in the dialog, says why
            assert "not a web address" in str(
                app.screen.query_one("#dialog-message").render())
            app.screen.query_one("#url", Input).value = "https://gig.example/T1"
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, ConfirmDialog)  # and the link is in the question
            assert "link https://gig.example/T1" in str(
                app.screen.query_one("#dialog-message").render())
            await pilot.press("y")
            await settle(pilot)
    [order] = [o for o in orders(sqlite_engine) if o.number == paid]
    assert (order.status, order.tracking_url) == ("shipped", "https://gig.example/T1")


async def test_webhooks_screen_replays_a_flagged_event_after_confirming(shop, console,
                                                                      sqlite_engine):
    with Session(sqlite_engine) as s:
        flagged = s.exec(select(WebhookEvent).where(WebhookEvent.status == "flagged")).first()
        total = len(s.exec(select(WebhookEvent)).all())
    app = console()
    with dispatch.recording() as calls:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("7")
            await settle(pilot)
            assert len(listed(app)) == total
            await pilot.press("f", "f", "f", "f")  # received, processed, ignored, flagged
            await settle(pilot)
            assert listed(app) == [flagged.id]
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, WebhookDetailScreen)
            await pilot.press("r")
            await settle(pilot)
            assert isinstance(app.screen, ConfirmDialog)
            await pilot.press("y")
            await settle(pilot)
    with Session(sqlite_engine) as s:
        assert s.get(WebhookEvent, flagged.id).status == "received"
    assert [(c.task, c.args) for c in calls] == [("process_webhook", (flagged.id,))]


async def test_a_failed_events_detail_says_when_it_was_last_tried_not_processed(
        shop, console, sqlite_engine):
    with Session(sqlite_engine) as s:
        for e in s.exec(select(WebhookEvent)).all():
            s.delete(e)
        s.add(WebhookEvent(provider="stripe", event_id="evt_x", event_type="charge.x",
                           payload={}, status="failed", error="lock timeout", attempts=3,
                           processed_at=utcnow()))
        s.commit()
    app = console()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, WebhookDetailScreen)
        fields = str(app.screen.query_one("#detail-fields").render())
    assert "Last tried" in fields and "Processed" not in fields


async def test_read_only_refuses_status_changes_and_replays(shop, console, sqlite_engine):
    app = console(read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("6")
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert not isinstance(app.screen, ChooseDialog)
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmDialog)


async def test_the_emails_screen_shows_delivery_state(shop, console):
    app = console()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        table = app.screen.query_one(RecordTable)
        rows = table.keys()
        delivery = sorted(str(table.cells(key)[2]) for key in rows)
    assert delivery == ["-", "-", "-", "bounced", "delivered", "unknown"]
