"""Records from the command palette (ctrl+p): an order, a customer or a product found as you
type, opened with Enter; link keys between records, failed jobs and emails; retry and send
again, always asked first."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import settle
from email_support import entry_status, record_failed_send
from seed import clock, seed_emails, seed_incidents, seed_shop
from sqlmodel import Session, col, select

from kolaq_console.models import Customer, EmailOutbox, FailedJob, Order, OrderLine
from kolaq_console.ui import links
from kolaq_console.ui.app import make_app
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.messages import JobsRetried
from kolaq_console.ui.screens.email_detail import EmailDetailScreen
from kolaq_console.ui.screens.job_detail import JobDetailScreen
from kolaq_console.ui.screens.records.customer import CustomerRecordScreen
from kolaq_console.ui.screens.records.order import OrderRecordScreen
from kolaq_console.ui.screens.records.product import ProductRecordScreen
from kolaq_console.ui.widgets.record_table import RecordTable

APP = str(Path(__file__).parent / "snapshot_records_app.py")
SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])


@pytest.fixture
def incident(sqlite_engine, settings, tasks_module):
    """The seeded shop; KB-10004's confirmation failed with a retryable send job."""
    seed_shop(sqlite_engine, settings)
    ids = seed_emails(sqlite_engine, settings)
    seed_incidents(sqlite_engine)
    email_id = ids[2]  # KB-10004's
    job_id = record_failed_send(sqlite_engine, email_id, tasks_module.huey)
    return {"email": email_id, "job": job_id}


@pytest.fixture
def app_for(make_settings, tasks_module):
    def build(**options):
        return make_app(make_settings(console__refresh_seconds="60"), huey=tasks_module.huey,
                        clock=clock, **options)
    return build


def customer_email(engine, number: str) -> str:
    with Session(engine) as session:
        order = session.exec(select(Order).where(col(Order.number) == number)).one()
        customer = session.get(Customer, order.customer_id)
        return customer.email


async def look_up(pilot, term: str) -> None:
    """ctrl+p, the term, Enter: the first match opens."""
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*term)
    await settle(pilot)
    await pilot.pause(0.3)  # the palette gathers hits for a moment
    await pilot.press("enter")
    await settle(pilot)


def rows_of(app, kind: str) -> list:
    table = app.screen.query_one(RecordTable)
    return [k for k in table.keys() if k.startswith(kind + ":")]  # noqa: SIM118


async def test_from_launch_an_order_is_found_and_its_failed_send_retried(
        incident, app_for, sqlite_engine):
    """The done-when: ctrl+p, the term, Enter (the order's record), r (asks), y (retried)."""
    messages: list = []
    app = app_for()
    async with app.run_test(size=(80, 24), message_hook=messages.append) as pilot:
        await settle(pilot)
        await look_up(pilot, "10004")
        assert isinstance(app.screen, OrderRecordScreen) and app.screen.key == "KB-10004"
        assert f"job:{incident['job']}:0" in rows_of(app, "job")  # the open failure first
        assert rows_of(app, "email")
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        assert entry_status(sqlite_engine, incident["job"]) == "failed"  # nothing yet
        await pilot.press("y")
        await settle(pilot)
    [retried] = [m for m in messages if isinstance(m, JobsRetried)]
    assert [i for i, _ in retried.retried] == [incident["job"]]
    assert entry_status(sqlite_engine, incident["job"]) == "retried"


async def test_retry_cancelled_changes_nothing(incident, app_for, sqlite_engine):
    app = app_for()
    async with app.run_test(size=(80, 24)) as pilot:
        links.open_order(app, "KB-10004")
        await settle(pilot)
        await pilot.press("r", "n")
        await settle(pilot)
        assert isinstance(app.screen, OrderRecordScreen)
    assert entry_status(sqlite_engine, incident["job"]) == "failed"


async def test_retry_without_an_open_failed_job_says_so(incident, app_for):
    app = app_for()
    async with app.run_test(size=(80, 24)) as pilot:
        links.open_order(app, "KB-10002")
        await settle(pilot)
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, OrderRecordScreen)
        assert any("No open failed job about order KB-10002" in n.message
                   for n in app._notifications)


async def test_send_again_from_the_order_asks_then_queues_a_new_row(incident, app_for,
                                                                    sqlite_engine):
    app = app_for()
    async with app.run_test(size=(80, 24)) as pilot:
        links.open_order(app, "KB-10004")
        await settle(pilot)
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await settle(pilot)
        assert any(f"Email #{incident['email']} queued again as #" in n.message
                   for n in app._notifications)
        # the record lists the new email beside the original (keys are kind:id:row)
        listed = {k.rsplit(":", 1)[0] for k in rows_of(app, "email")}
    with Session(sqlite_engine) as session:
        newest = session.exec(select(EmailOutbox).order_by(col(EmailOutbox.id).desc())).first()
        original = session.get(EmailOutbox, incident["email"])
    assert newest.id != original.id and newest.status == "queued"
    assert {f"email:{newest.id}", f"email:{original.id}"} <= listed
    assert newest.to_address == original.to_address and newest.order_id == original.order_id


async def test_read_only_console_refuses_retry_and_send_again(incident, app_for, sqlite_engine):
    app = app_for(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        links.open_order(app, "KB-10004")
        await settle(pilot)
        await pilot.press("r", "s")
        await pilot.pause()
        assert isinstance(app.screen, OrderRecordScreen)
    assert entry_status(sqlite_engine, incident["job"]) == "failed"


async def test_palette_finds_customers_by_name_and_products_by_sku(incident, app_for,
                                                                   sqlite_engine):
    email = customer_email(sqlite_engine, "KB-10004")
    with Session(sqlite_engine) as session:
        name = session.exec(select(Customer.name).where(Customer.email == email)).one()
    app = app_for()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await look_up(pilot, email)
        assert isinstance(app.screen, CustomerRecordScreen) and app.screen.key == email
        await pilot.press("escape")
        await look_up(pilot, "kb-orng-375")
        assert isinstance(app.screen, ProductRecordScreen) and app.screen.key == "KB-ORNG-375"
        assert rows_of(app, "job")  # the failed reconcile of this SKU
        await pilot.press("escape")
        await look_up(pilot, name)
        assert isinstance(app.screen, CustomerRecordScreen)


@pytest.mark.parametrize(("key", "screen", "attr"), [
    ("c", CustomerRecordScreen, "key"),
    ("e", EmailDetailScreen, "row_id"),
    ("J", JobDetailScreen, "job_id"),
    ("p", ProductRecordScreen, "key"),
])
async def test_order_record_link_keys(incident, app_for, sqlite_engine, key, screen, attr):
    expected = {"c": customer_email(sqlite_engine, "KB-10004"), "e": incident["email"],
                "J": incident["job"]}
    app = app_for()
    async with app.run_test(size=(120, 40)) as pilot:
        links.open_order(app, "KB-10004")
        await settle(pilot)
        await pilot.press(key)
        await settle(pilot)
        assert isinstance(app.screen, screen)
        if key in expected:
            assert getattr(app.screen, attr) == expected[key]
        else:  # the order's first line
            with Session(sqlite_engine) as session:
                order = session.exec(select(Order).where(col(Order.number) == "KB-10004")).one()
                sku = session.exec(select(OrderLine.sku).where(OrderLine.order_id == order.id)
                                   .order_by(OrderLine.id)).first()
            assert app.screen.key == sku


async def test_customer_record_opens_its_newest_order(incident, app_for,
                                                                           sqlite_engine):
    email = customer_email(sqlite_engine, "KB-10004")
    app = app_for()
    async with app.run_test(size=(120, 40)) as pilot:
        links.open_customer(app, email)
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, OrderRecordScreen) and app.screen.key == "KB-10004"
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, CustomerRecordScreen)
        await pilot.press("c", "p")  # not links of a customer: nothing happens
        await settle(pilot)
        assert isinstance(app.screen, CustomerRecordScreen)


async def follow_each_link(app, open_source, expected: dict) -> None:
    """From the source screen, opened afresh for each, every key opens its screen on its
    value (`None`: any value)."""
    async with app.run_test(size=(120, 40)) as pilot:
        for key, (screen, attr, value) in expected.items():
            open_source(app)
            await settle(pilot)
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, screen), key
            if value is not None:
                assert getattr(app.screen, attr) == value
            await pilot.press("escape")
            await pilot.press("escape")
            await settle(pilot)


async def test_job_detail_link_keys_open_its_email_order_customer_and_product(
        incident, app_for, sqlite_engine):
    expected = {"e": (EmailDetailScreen, "row_id", incident["email"]),
                "o": (OrderRecordScreen, "key", "KB-10004"),
                "c": (CustomerRecordScreen, "key", customer_email(sqlite_engine, "KB-10004")),
                "p": (ProductRecordScreen, "key", None)}
    await follow_each_link(app_for(), lambda app: links.open_job(app, incident["job"]),
                           expected)


async def test_job_detail_link_to_what_it_is_not_about_says_so(incident, app_for,
                                                               sqlite_engine):
    with Session(sqlite_engine) as session:
        reconcile = session.exec(select(FailedJob.id).where(
            FailedJob.task_name == "tasks.reconcile_inventory",
            FailedJob.args != [])).first()
    app = app_for()
    async with app.run_test(size=(120, 40)) as pilot:
        links.open_job(app, reconcile)
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, JobDetailScreen)
        assert any(f"No order known for failed job #{reconcile}" in n.message
                   for n in app._notifications)
        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, ProductRecordScreen) and app.screen.key == "KB-ORNG-375"


async def test_email_detail_link_keys_open_its_job_order_and_customer(incident, app_for,
                                                                      sqlite_engine):
    expected = {"j": (JobDetailScreen, "job_id", incident["job"]),
                "o": (OrderRecordScreen, "key", "KB-10004"),
                "c": (CustomerRecordScreen, "key", customer_email(sqlite_engine, "KB-10004"))}
    await follow_each_link(app_for(), lambda app: links.open_email(app, incident["email"]),
                           expected)


# --- snapshots -------------------------------------------------------------------------------


def opened(kind: str, ref: str):
    async def run(pilot) -> None:
        await settle(pilot)
        links.open_kind(pilot.app, kind, ref)
        await settle(pilot)

    return run


@SIZES
def test_order_record_snapshot(snap_compare, size):
    assert snap_compare(APP, terminal_size=size, run_before=opened("order", "KB-10004"))


@SIZES
def test_customer_record_snapshot(snap_compare, size):
    async def run(pilot) -> None:  # the customer of KB-10004, by its link key
        await opened("order", "KB-10004")(pilot)
        await pilot.press("c")
        await settle(pilot)

    assert snap_compare(APP, terminal_size=size, run_before=run)


@SIZES
def test_product_record_snapshot(snap_compare, size):
    assert snap_compare(APP, terminal_size=size, run_before=opened("product", "KB-ORNG-375"))


async def test_an_orders_record_shows_its_shipping_fee_so_lines_add_up_to_the_total(
    incident, app_for, sqlite_engine
):
    with Session(sqlite_engine) as s:
        order = s.exec(select(Order).where(col(Order.number) == "KB-10002")).one()
        order.shipping_minor, order.total_minor = 250_000, order.subtotal_minor + 250_000
        s.add(order)
        s.commit()
    app = app_for()
    async with app.run_test(size=(120, 40)) as pilot:
        links.open_order(app, "KB-10002")
        await settle(pilot)
        assert isinstance(app.screen, OrderRecordScreen)
        fields = app.screen.query_one("#record-fields")
        for _ in range(100):  # the record is read in a thread: on a busy machine, later
            if "Shipping" in str(fields.render()):
                break
            await pilot.pause(0.05)
        header = str(fields.render())
    assert "₦68,500.00" in header  # the total: the lines' ₦66,000.00 and the fee
    assert "Shipping ₦2,500.00" in header
