"""Every email kind renders: subject + text part equal their committed snapshots, the HTML part
parses with its CSS inlined, and whatever users typed is escaped."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from email_support import seed_order
from sqlmodel import Session

from kolaq_console.emails import KINDS, build_email
from kolaq_console.emails.render import money, paragraphs, render
from kolaq_console.errors import UserError

SNAPSHOTS = Path(__file__).parent / "snapshots" / "emails"
UPDATE = os.environ.get("KOLAQ_TEST_UPDATE_SNAPSHOTS") == "1"

LOW_STOCK = {
    "as_of": "2026-11-20",
    "products": [
        {"sku": "KB-BAR-SPOON", "name": "Bar Spoon", "stock": 0, "threshold": 5,
         "units_sold_7d": 9, "days_of_cover": 0.0},
        {"sku": "KB-HIBI-375", "name": "Kolaq Hibiscus Bitters 375 ml", "stock": 7,
         "threshold": 10, "units_sold_7d": 14, "days_of_cover": 3.5},
        {"sku": "KB-GIFT-XMAS", "name": "Festive Box", "stock": 2, "threshold": 10,
         "units_sold_7d": None, "days_of_cover": None},
    ],
}


def args_for(kind: str) -> dict[str, Any]:
    return {
        "order_confirmation": {"order_number": "KB-1001"},
        "shipping_notification": {"order_number": "KB-1002"},
        "order_status_update": {"order_number": "KB-1003"},
        "low_stock": {"context": LOW_STOCK, "idempotency_key": "low_stock/2026-11-20"},
        "broadcast": {
            "to": "ngozi@example.com",
            "subject": "Harmattan cocktails",
            "body": "# Three drinks for dry season\n\n- Zobo spritz\n- **Kola** old fashioned\n\n"
                    "Reply and tell us yours.",
            "context": {"broadcast_id": 7, "unsubscribe_url": "http://shop.test/u/tok123"},
        },
        "generic": {
            "to": "chidi@example.com",
            "subject": "About your wholesale enquiry",
            "body": "Hello Chidi,\n\nThanks for asking about cases of 12.\nWe will call you.\n",
        },
    }[kind]


@pytest.fixture
def shop(sqlite_engine):
    seed_order(sqlite_engine, "KB-1001")
    seed_order(sqlite_engine, "KB-1002", status="shipped", carrier="GIG Logistics",
               tracking="GIG7000001", tracking_url="https://track.example/GIG7000001")
    seed_order(sqlite_engine, "KB-1003", status="processing")
    return sqlite_engine


def draft(engine, settings, kind: str, **overrides: Any):
    with Session(engine) as session:
        return build_email(session, settings, kind, **{**args_for(kind), **overrides})


class Checker(HTMLParser):
    VOID = {"meta", "br", "img", "hr", "input", "link", "col", "area", "base", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> Checker:
    checker = Checker()
    checker.feed(html)
    checker.close()
    return checker


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_text_part_matches_its_committed_snapshot(shop, settings, kind):
    email = draft(shop, settings, kind)
    actual = f"Subject: {email.subject}\nTo: {email.to}\n\n{email.text}"
    path = SNAPSHOTS / f"{kind}.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"missing snapshot {path}; run with KOLAQ_TEST_UPDATE_SNAPSHOTS=1"
    assert actual == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_html_parses_with_the_brand_layout_and_inlined_css(shop, settings, kind):
    email = draft(shop, settings, kind)
    checker = parse(email.html)
    assert checker.errors == [] and checker.stack == [], (checker.errors, checker.stack)
    assert email.html.lstrip().lower().startswith("<!doctype html>")
    assert "<style" not in email.html  # css-inline moved every rule into style attributes
    assert 'style="' in email.html
    text = " ".join(" ".join(checker.text).split())
    assert settings.shop.name in text
    if kind != "low_stock":  # customers get the support contact; the admin alert does not
        assert settings.email.support_email in text
    assert email.subject in text  # <title>
    assert email.text.strip() and email.subject


def test_order_confirmation_shows_lines_quantities_prices_totals_address_and_support(
    shop, settings
):
    email = draft(shop, settings, "order_confirmation")
    for needle in ("2 x Kolaq Original Bitters 750 ml", "₦12,500.00", "₦25,000.00", "₦4,500.00",
                   "Subtotal: ₦29,500.00", "Shipping: ₦2,500.00", "Total (NGN): ₦32,000.00",
                   "12 Marina Road", "Lagos LA", settings.email.support_email):
        assert needle in email.text
    assert "₦32,000.00" in email.html and "12 Marina Road" in email.html
    assert email.headers["Reply-To"] == settings.email.support_email
    assert email.idempotency_key == "order_confirmation/KB-1001"


def test_shipping_notification_carries_carrier_tracking_number_and_link(shop, settings):
    email = draft(shop, settings, "shipping_notification")
    assert "GIG Logistics" in email.text and "GIG7000001" in email.text
    assert 'href="https://track.example/GIG7000001"' in email.html
    assert email.idempotency_key == "shipping_notification/KB-1002/GIG7000001"


def test_shipping_notification_without_tracking_is_refused(shop, settings):
    with pytest.raises(UserError, match="tracking"):
        draft(shop, settings, "shipping_notification", order_number="KB-1001")


def test_user_supplied_text_is_escaped_in_html(sqlite_engine, settings):
    evil = '<script>alert("x")</script>'
    seed_order(sqlite_engine, "KB-2001", name=f"Eve {evil}", email="eve@example.com",
               status="shipped", carrier="Evil & Sons <b>", tracking="T1",
               tracking_url="javascript:alert(1)",
               address={"name": "Eve", "line1": f"1 {evil} Street", "city": "Lagos"},
               lines=[("KB-EVIL", f"Bitters {evil}", 1, 100)])
    cases = [
        ("order_confirmation", {"order_number": "KB-2001"}),
        ("shipping_notification", {"order_number": "KB-2001"}),
        ("order_status_update", {"order_number": "KB-2001"}),
        ("low_stock", {"context": {"products": [{"sku": "S<1>", "name": evil, "stock": 1,
                                                 "threshold": 2}]}}),
        ("broadcast", {"to": "a@example.com", "subject": f"Hi {evil}",
                       "body": f"Raw {evil} and <img src=x onerror=alert(1)>"}),
        ("generic", {"to": "a@example.com", "subject": f"Hi {evil}", "body": f"Body {evil}"}),
    ]
    for kind, kwargs in cases:
        with Session(sqlite_engine) as session:
            email = build_email(session, settings, kind, **kwargs)
        assert "<script>" not in email.html, kind
        assert "&lt;script&gt;" in email.html, kind
        assert "<img src=x" not in email.html, kind
        assert parse(email.html).errors == [], kind
    with Session(sqlite_engine) as session:
        shipping = build_email(session, settings, "shipping_notification", order_number="KB-2001")
    assert "javascript:" not in shipping.html
    assert "Evil &amp; Sons &lt;b&gt;" in shipping.html
    assert "Evil & Sons <b>" in shipping.text  # the plain-text part is text, not HTML


def test_templates_dir_overrides_one_template_and_keeps_the_others(
    shop, make_settings, tmp_path
):
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "generic.subject.txt").write_text("[Kolaq] {{ subject }}")
    (folder / "generic.txt").write_text("{% extends 'layout.txt' %}{% block content %}"
                                        "CUSTOM: {{ body }}{% endblock %}")
    settings = make_settings(email__templates_dir=str(folder))
    email = draft(shop, settings, "generic")
    assert email.subject == "[Kolaq] About your wholesale enquiry"
    assert "CUSTOM: Hello Chidi" in email.text
    assert "Hello Chidi" in email.html and "<style" not in email.html  # packaged HTML kept


def test_broadcast_carries_one_click_unsubscribe_headers(shop, settings):
    email = draft(shop, settings, "broadcast")
    assert email.headers["List-Unsubscribe"] == "<http://shop.test/u/tok123>"
    assert email.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email.broadcast_id == 7 and email.idempotency_key.startswith("broadcast/7/")
    assert "<strong>Kola</strong>" in email.html


def test_low_stock_needs_products_and_uses_the_callers_key(shop, settings):
    email = draft(shop, settings, "low_stock")
    assert email.to == settings.email.admin_email
    assert email.idempotency_key == "low_stock/2026-11-20"
    with pytest.raises(UserError, match="non-empty list"):
        draft(shop, settings, "low_stock", context={"products": []})
    with pytest.raises(UserError, match="lacks threshold"):
        draft(shop, settings, "low_stock", context={"products": [{"sku": "A", "name": "A",
                                                                  "stock": 1}]})


def test_money_and_paragraph_helpers():
    assert money(1_250_000, "NGN") == "₦12,500.00"
    assert money(-150, "USD") == "-$1.50"
    assert money(1500, "JPY") == "JPY 1,500"
    assert str(paragraphs("a <b>\nc\n\nd")) == "<p>a &lt;b&gt;<br>\nc</p>\n<p>d</p>"


def test_unknown_kind_is_a_user_error(settings):
    with pytest.raises(UserError, match="unknown email kind"):
        render(settings, "sms", {})


def test_order_emails_right_align_number_headings_after_inlining_and_link_the_order(
        shop, settings):
    import re

    for kind in ("order_confirmation", "shipping_notification", "order_status_update"):
        email = draft(shop, settings, kind)
        number = {"order_confirmation": "KB-1001", "shipping_notification": "KB-1002",
                  "order_status_update": "KB-1003"}[kind]
        assert f'href="http://shop.test/orders/{number}"' in email.html
        assert f"View your order: http://shop.test/orders/{number}" in email.text
    html = draft(shop, settings, "order_confirmation").html
    headings = re.findall(r'<th class="num" style="([^"]*)"', html)
    cells = re.findall(r'<td class="num" style="([^"]*)"', html)
    assert len(headings) == 3 and cells
    for style in headings + cells:
        assert "text-align: right" in style, style
    assert "Nigeria" in html and ">NG<" not in html
    shipping = draft(shop, settings, "shipping_notification")
    assert 'href="https://track.example/GIG7000001"' in shipping.html


@pytest.mark.parametrize("kind", KINDS)
def test_every_customer_email_has_reply_to_support(shop, settings, kind):
    email = draft(shop, settings, kind)
    if kind == "low_stock":  # to the admin
        assert "Reply-To" not in email.headers
    else:
        assert email.headers["Reply-To"] == settings.email.support_email
