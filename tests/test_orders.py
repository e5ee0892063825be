"""Orders: validated status changes, each sending its customer email exactly once (a repeated
`set-status` sends none), stock moved once, and `orders list/show --json` for scripts."""

from __future__ import annotations

import json
import re

import pytest
from email_support import activity, rows, seed_order
from sqlmodel import Session, select

from kolaq_console import dispatch
from kolaq_console.errors import UserError
from kolaq_console.models import InventoryEvent, Order
from kolaq_console.orders.lifecycle import set_status
from kolaq_console.orders.queries import order_detail


def change(engine, settings, number, status, **kw):
    with Session(engine, expire_on_commit=False) as s:
        return set_status(s, settings, number, status, actor="test-operator", **kw)


def sales(engine, number="KB-1001"):
    with Session(engine) as s:
        return [(e.kind, e.delta) for e in s.exec(
            select(InventoryEvent).where(InventoryEvent.reference == number)
            .order_by(InventoryEvent.id)).all()]


def test_each_status_change_queues_exactly_one_email_and_a_repeat_queues_none(engine, settings):
    seed_order(engine, "KB-1001", status="pending")
    expected = [
        ("paid", {}, "order_confirmation"),
        ("processing", {}, None),
        ("shipped", {"carrier": "GIG Logistics", "tracking": "GIG123",
                     "tracking_url": "https://track.example/GIG123"}, "shipping_notification"),
        ("delivered", {}, "order_status_update"),
        ("refunded", {}, "order_status_update"),
    ]
    with dispatch.recording() as calls:
        for status, options, kind in expected:
            before = len(rows(engine))
            done = change(engine, settings, "KB-1001", status, **options)
            assert done.changed
            new = rows(engine)[before:]
            assert [r.kind for r in new] == ([kind] if kind else []), status
            again = change(engine, settings, "KB-1001", status, **options)
            assert not again.changed and again.emails == []
            assert len(rows(engine)) == before + len(new)
    assert [c.args for c in calls] == [(r.id,) for r in rows(engine)]  # one send job each
    assert sales(engine) == [("sale", -2), ("sale", -1), ("return", 2), ("return", 1)]
    moves = [(a.details["from"], a.details["to"]) for a in activity(engine)
             if a.action == "order.status"]
    assert moves == [("pending", "paid"), ("paid", "processing"), ("processing", "shipped"),
                     ("shipped", "delivered"), ("delivered", "refunded")]
    shipping = next(r for r in rows(engine) if r.kind == "shipping_notification")
    assert "https://track.example/GIG123" in shipping.html


def test_transitions_are_validated_and_a_refused_one_changes_nothing(engine, settings):
    seed_order(engine, "KB-1001", status="shipped", carrier="GIG", tracking="T1")
    with dispatch.recording():
        with pytest.raises(UserError, match="cannot go from shipped to pending; allowed: "
                                            "delivered, refunded"):
            change(engine, settings, "KB-1001", "pending")
        with pytest.raises(UserError, match="unknown order status 'lost'"):
            change(engine, settings, "KB-1001", "lost")
    seed_order(engine, "KB-1002", status="paid")
    with dispatch.recording(), pytest.raises(UserError, match="carrier and a tracking number"):
        change(engine, settings, "KB-1002", "shipped")
    seed_order(engine, "KB-1003", status="pending")
    with dispatch.recording():
        change(engine, settings, "KB-1003", "cancelled")
        with pytest.raises(UserError, match="never paid"):
            change(engine, settings, "KB-1003", "refunded")
    assert [r.kind for r in rows(engine)] == ["order_status_update"]  # the cancellation only
    assert [a.details["to"] for a in activity(engine)] == ["cancelled"]


@pytest.mark.parametrize("link", ["javascript:alert(1)", "giglogistics.example/track/T1",
                                  "https://", "https://track.example/" + "x" * 500],
                         ids=["javascript", "no-scheme", "no-host", "too-long"])
def test_a_tracking_link_that_is_not_a_web_address_is_refused_and_changes_nothing(
    engine, settings, link
):
    """The email's button would lead to '#' while its text and the SMS showed the bad link."""
    seed_order(engine, "KB-1001", status="paid")
    with dispatch.recording() as calls, pytest.raises(UserError, match="tracking link"):
        change(engine, settings, "KB-1001", "shipped", carrier="GIG", tracking="T1",
               tracking_url=link)
    with Session(engine) as s:
        [order] = s.exec(select(Order)).all()
    assert (order.status, order.tracking_url) == ("paid", None)
    assert rows(engine) == [] and calls == []


def test_a_blank_tracking_link_is_none_and_a_web_address_is_kept(engine, settings):
    seed_order(engine, "KB-1001", status="paid")
    seed_order(engine, "KB-1002", status="paid")
    with dispatch.recording():
        change(engine, settings, "KB-1001", "shipped", carrier="GIG", tracking="T1",
               tracking_url="  ")
        change(engine, settings, "KB-1002", "shipped", carrier="GIG", tracking="T2",
               tracking_url=" HTTPS://track.example/T2 ")
    with Session(engine) as s:
        links = {o.number: o.tracking_url for o in s.exec(select(Order)).all()}
    assert links == {"KB-1001": None, "KB-1002": "HTTPS://track.example/T2"}


def test_orders_cli_set_status_show_and_list(engine, settings, cli_result):
    seed_order(engine, "KB-1001", status="paid")
    result = cli_result("orders", "set-status", "KB-1001", "shipped",
                     "--carrier", "GIG Logistics", "--tracking", "GIG77", "--note", "by van")
    assert result.returncode == 0, result.stderr
    assert "paid -> shipped, 1 email(s) queued" in result.stdout
    again = cli_result("orders", "set-status", "KB-1001", "shipped")
    assert again.returncode == 0 and "already shipped; nothing changed" in again.stdout
    bad = cli_result("orders", "set-status", "KB-1001", "pending")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "kolaq-console: order KB-1001 cannot go from shipped to pending; allowed: delivered, "
        "refunded"]
    missing = cli_result("orders", "show", "KB-9999")
    assert missing.returncode == 1 and "order 'KB-9999' not found" in missing.stderr

    shown = cli_result("orders", "show", "KB-1001", "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    for key in ("number", "status", "customer_email", "currency", "total_minor",
                "payment_reference", "lines", "emails"):
        assert key in doc
    assert (doc["status"], doc["customer_email"]) == ("shipped", "ada@example.com")
    [email] = doc["emails"]
    assert (email["kind"], email["status"], email["delivery_status"]) == (
        "shipping_notification", "queued", None)  # unknown until the provider reports
    assert doc["activity"][0]["details"]["note"] == "by van"
    assert [line["sku"] for line in doc["lines"]] == ["KB-ORIG-750", "KB-BAR-SPOON"]

    listed = json.loads(cli_result("orders", "list", "--status", "shipped",
                                "--json").stdout)
    assert [o["number"] for o in listed["orders"]] == ["KB-1001"]
    human = cli_result("orders", "show", "KB-1001")
    assert "shipping_notification" in human.stdout and "GIG77" in human.stdout


def test_order_detail_links_emails_events_and_activity(engine, settings):
    seed_order(engine, "KB-1001", status="pending")
    with dispatch.recording():
        change(engine, settings, "KB-1001", "paid")
    with Session(engine) as s:
        d = order_detail(s, "KB-1001")
    assert d["payment"]["status"] == "paid" and d["payment"]["provider"] == "manual"
    assert [e["kind"] for e in d["emails"]] == ["order_confirmation"]
    assert d["activity"][0]["action"] == "order.status"


def test_the_demo_shop_has_payable_orders_tracking_links_and_webhook_events(engine):
    from kolaq_console.demo import load_demo
    from kolaq_console.models import Order, Suppression, WebhookEvent

    first = load_demo(engine)
    assert first.webhooks > 0
    assert load_demo(engine).webhooks == 0  # idempotent
    with Session(engine) as s:
        orders = s.exec(select(Order)).all()
        events = s.exec(select(WebhookEvent)).all()
        suppressed = s.exec(select(Suppression)).all()
    pending = [o for o in orders if o.status == "pending"]
    assert pending and all(o.payment_reference for o in pending)
    shipped = [o for o in orders if o.tracking_number]
    assert shipped and all(o.tracking_url.startswith("https://") for o in shipped)
    assert {e.status for e in events} >= {"processed", "flagged", "ignored"}
    assert {e.provider for e in events} == {"paystack", "stripe", "resend"}
    assert [s.reason for s in suppressed] == ["bounced"]


def test_orders_show_prints_shop_time_and_the_shipping_fee(engine, settings, cli_result):
    """Times were printed in UTC without a zone (an hour early beside the console in Lagos)
    and the lines did not add up to the total (the shipping fee was not printed)."""
    seed_order(engine, "KB-1001", status="pending")
    shown = cli_result("orders", "show", "KB-1001")
    assert shown.returncode == 0, shown.stderr
    listed = cli_result("orders", "list")
    assert "10:30" in listed.stdout and "09:30" not in listed.stdout  # 09:30 UTC
    out = shown.stdout
    assert "activity" in out and "09:30" not in out
    assert re.search(r"shipping\s+₦2,500\.00", out) and re.search(r"total\s+₦32,000\.00", out)
