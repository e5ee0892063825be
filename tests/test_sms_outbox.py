"""SMS/WhatsApp messages as rows, on both databases: each kind on each channel, E.164 numbers,
segment counts and the segment limit, templates required on WhatsApp, consent, one row per
logical message, and nothing written on bad input."""

from __future__ import annotations

import re

import pytest
from email_support import activity, count, seed_order
from sms_support import ADA_PHONE, set_phone, texts
from sqlmodel import Session, select

from kolaq_console import channel_consent, dispatch
from kolaq_console.config import ConfigError, load_settings
from kolaq_console.errors import NotFound, UserError
from kolaq_console.models import Customer, TextMessage
from kolaq_console.sms import outbox
from kolaq_console.sms.phone import normalise_number
from kolaq_console.sms.segments import count_segments

LOW = {"products": [{"sku": "KB-ORIG-750", "stock": 3, "threshold": 10},
                    {"sku": "KB-BAR-SPOON", "stock": 0, "threshold": 5}]}


@pytest.fixture
def enqueued():
    with dispatch.recording() as calls:
        yield calls


def shipped_order(engine, number="KB-1001"):
    seed_order(engine, number, status="shipped", carrier="GIG Logistics", tracking="GIG123",
               tracking_url="https://track.example/GIG123")
    set_phone(engine, sms=True, whatsapp=True)


def queue(engine, settings, kind, **kwargs):
    with Session(engine, expire_on_commit=False) as session:
        return outbox.queue_message(session, settings, kind, **kwargs)


KIND_ARGS = {
    "order_confirmation": {"order_number": "KB-1001"},
    "shipping_notification": {"order_number": "KB-1001"},
    "order_status_update": {"order_number": "KB-1001"},
    "low_stock": {"context": LOW},
    "generic": {"to": "0803 123 4567", "body": "Your bottle is ready for pickup."},
}


@pytest.mark.parametrize("kind", list(KIND_ARGS))
def test_each_kind_queues_one_sms_row_with_its_segments_then_enqueues_its_id(
    engine, settings, enqueued, kind
):
    shipped_order(engine)
    result = queue(engine, settings, kind, channel="sms", **KIND_ARGS[kind])
    [row] = texts(engine)
    assert result.created and row.id == result.row.id
    assert row.channel == "sms" and row.kind == kind and row.status == "queued"
    expected_to = "+2348090000009" if kind == "low_stock" else ADA_PHONE
    assert row.to_number == expected_to and row.from_number == "+2348090000001"
    assert row.encoding == "gsm7" and row.segments == count_segments(row.body).segments >= 1
    assert row.content_sid is None
    assert [(c.task, c.args) for c in enqueued] == [("send_text", (row.id,))]
    if kind in ("order_confirmation", "shipping_notification", "order_status_update"):
        assert "KB-1001" in row.body and row.order_id is not None
    if kind == "order_confirmation":
        assert "NGN 32,000.00" in row.body  # a currency code keeps the body GSM-7
    if kind == "shipping_notification":
        assert "GIG Logistics" in row.body and "https://track.example/GIG123" in row.body
    if kind == "low_stock":
        assert "KB-ORIG-750 3/10" in row.body and "KB-BAR-SPOON 0/5" in row.body


@pytest.mark.parametrize("kind", [k for k in KIND_ARGS if k != "generic"])
def test_each_kind_with_a_template_queues_a_whatsapp_row_with_its_variables(
    engine, settings, enqueued, kind
):
    shipped_order(engine)
    queue(engine, settings, kind, channel="whatsapp", **KIND_ARGS[kind])
    [row] = texts(engine)
    template = settings.sms.whatsapp_templates[kind]
    assert row.channel == "whatsapp" and row.content_sid == template.content_sid
    assert list(row.content_variables) == [str(i + 1) for i in range(len(template.variables))]
    assert all(row.content_variables.values())
    assert row.segments is None and row.encoding is None
    assert row.idempotency_key.startswith(f"whatsapp/{kind}/")


def test_a_whatsapp_kind_without_a_template_is_refused_and_nothing_is_written(
    engine, settings, enqueued
):
    seed_order(engine)
    with pytest.raises(UserError, match=r"WhatsApp needs an approved template for generic"):
        queue(engine, settings, "generic", channel="whatsapp", to=ADA_PHONE, body="Hi")
    assert count(engine, TextMessage) == 0 and enqueued == []


@pytest.mark.parametrize(("number", "reason"), [
    ("12345", "invalid recipient number (--to) '12345': not a valid number for NG"),
    ("+234 803 12", "invalid recipient number (--to) '+234 803 12'"),
    ("not a number", "invalid recipient number (--to) 'not a number'"),
    ("+1 202 555 01", "not a valid number for US"),
    ("", "recipient number (--to) is missing"),
])
def test_invalid_numbers_are_refused_with_the_reason_and_nothing_is_written(
    engine, settings, enqueued, number, reason
):
    with pytest.raises(UserError, match=re.escape(reason)):
        queue(engine, settings, "generic", to=number, body="Hello")
    assert count(engine, TextMessage) == 0 and enqueued == []


def test_numbers_are_read_in_the_shops_country_and_stored_in_e164():
    assert normalise_number("0803 123 4567", "NG") == "+2348031234567"
    assert normalise_number("whatsapp:+234 803-123-4567", "NG") == "+2348031234567"
    assert normalise_number("(020) 7946 0958", "GB") == "+442079460958"
    with pytest.raises(UserError, match="not a valid number for GB"):
        normalise_number("020 7946 095", "GB")


def test_the_shops_country_is_a_setting_with_a_clear_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[shop]\ncountry = "Nigeria"\n')
    with pytest.raises(ConfigError, match=r"\[shop\] country: .*ISO 3166"):
        load_settings(environ={}, path=path)
    path.write_text('[shop]\ncountry = "gh"\n')
    assert load_settings(environ={}, path=path).shop.country == "GH"


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), [
    ("", "gsm7", 0, 0),
    ("a" * 160, "gsm7", 160, 1),
    ("a" * 161, "gsm7", 161, 2),
    ("a" * 306, "gsm7", 306, 2),
    ("a" * 307, "gsm7", 307, 3),
    ("{" * 80, "gsm7", 160, 1),  # escape-extended characters cost two septets
    ("{" * 81, "gsm7", 162, 2),
    ("a" * 152 + "€" + "a" * 100, "gsm7", 254, 2),
    ("a" * 152 + "€" * 77, "gsm7", 306, 3),  # a part never splits an escape pair
    ("é" * 160, "gsm7", 160, 1),  # é is in the GSM basic set
    ("₦" + "a" * 69, "ucs2", 70, 1),  # one naira sign makes the whole text UCS-2
    ("₦" + "a" * 70, "ucs2", 71, 2),
    ("😀" * 35, "ucs2", 70, 1),  # surrogate pairs are two units
    ("a" + "😀" * 33 + "a" * 1, "ucs2", 68, 1),
    ("a" * 66 + "😀" + "a" * 66, "ucs2", 134, 3),  # 66+2 > 67: the pair opens part two
])
def test_segment_counts_for_gsm7_and_ucs2(text, encoding, units, segments):
    counted = count_segments(text)
    assert (counted.encoding, counted.units, counted.segments) == (encoding, units, segments)


def test_segment_counts_agree_with_the_stand_ins_own_count():
    from stubs.twilio_api import _segments

    samples = ["Hello", "a" * 161, "{" * 81, "₦" * 71, "😀" * 40, "a" * 152 + "€" * 77,
               "Kolaq Bitters: order KB-1001 has shipped with GIG. Track it: https://t.example/1"]
    for sample in samples:
        assert count_segments(sample).segments == _segments(sample), sample


def test_a_body_over_the_segment_limit_is_refused_with_its_count(engine, make_settings,
                                                                 enqueued):
    settings = make_settings(sms__max_segments="2")
    from kolaq_console import runtime

    runtime.configure(settings)
    with pytest.raises(UserError, match=r"3 segments \(GSM7, 307 septets\).*max_segments = 2"):
        queue(engine, settings, "generic", to=ADA_PHONE, body="a" * 307)
    with pytest.raises(UserError, match=r"UCS2"):
        queue(engine, settings, "generic", to=ADA_PHONE, body="₦" * 135)
    assert count(engine, TextMessage) == 0
    queue(engine, settings, "generic", to=ADA_PHONE, body="a" * 306)
    assert count(engine, TextMessage) == 1


def test_a_long_low_stock_list_is_cut_to_the_segment_limit_with_a_count_of_the_rest(
    engine, settings, enqueued
):
    products = [{"sku": f"KB-SKU-{i:03d}", "stock": i % 5, "threshold": 10} for i in range(60)]
    queue(engine, settings, "low_stock", context={"products": products})
    [row] = texts(engine)
    assert row.segments <= settings.sms.max_segments and "more" in row.body
    assert "(60)" in row.body


def test_the_same_logical_message_queued_twice_is_one_row_and_one_job(engine, settings,
                                                                        enqueued):
    shipped_order(engine)
    first = queue(engine, settings, "shipping_notification", order_number="KB-1001")
    second = queue(engine, settings, "shipping_notification", order_number="KB-1001")
    assert first.created and not second.created and first.row.id == second.row.id
    assert count(engine, TextMessage) == 1 and len(enqueued) == 1
    # ...but the same kind on the other channel is another message
    queue(engine, settings, "shipping_notification", order_number="KB-1001", channel="whatsapp")
    assert count(engine, TextMessage) == 2


def test_customers_without_consent_or_phone_get_nothing_and_say_why(engine, settings, enqueued):
    seed_order(engine)
    with pytest.raises(UserError, match=r"ada@example\.com has no phone number"):
        queue(engine, settings, "order_confirmation", order_number="KB-1001")
    set_phone(engine, sms=False, whatsapp=False)
    with pytest.raises(UserError, match="has not consented to SMS"):
        queue(engine, settings, "order_confirmation", order_number="KB-1001")
    with pytest.raises(UserError, match="has not opted in to WhatsApp"):
        queue(engine, settings, "order_confirmation", order_number="KB-1001", channel="whatsapp")
    assert count(engine, TextMessage) == 0


def test_an_opted_out_number_is_refused_on_that_channel_only(engine, settings, enqueued):
    shipped_order(engine)
    with Session(engine) as session:
        channel_consent.record_opt_out(session, ADA_PHONE, "sms", reason="stop", source="test")
        session.commit()
    with pytest.raises(UserError, match=r"opted out of sms \(stop"):
        queue(engine, settings, "generic", to=ADA_PHONE, body="Hi")
    with pytest.raises(UserError, match=r"opted out of sms"):
        queue(engine, settings, "order_confirmation", order_number="KB-1001")
    with Session(engine) as session:  # the customer's SMS consent is withdrawn too
        customer = session.exec(select(Customer).where(Customer.phone == ADA_PHONE)).one()
        assert not customer.sms_consent and customer.whatsapp_opt_in
    queue(engine, settings, "order_confirmation", order_number="KB-1001", channel="whatsapp")
    assert [a.action for a in activity(engine)] == ["consent.sms_opt_out"]


def test_unknown_orders_and_kinds_are_clear_errors(engine, settings, enqueued):
    with pytest.raises(NotFound, match="order 'KB-404' not found"):
        queue(engine, settings, "order_confirmation", order_number="KB-404")
    with pytest.raises(UserError, match="unknown message kind 'broadcast'"):
        queue(engine, settings, "broadcast", to=ADA_PHONE)
    with pytest.raises(UserError, match="unknown channel 'telegram'"):
        queue(engine, settings, "generic", to=ADA_PHONE, body="x", channel="telegram")
    assert count(engine, TextMessage) == 0


def test_templates_in_config_are_checked_against_their_kind(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[sms.whatsapp_templates.order_confirmation]\n'
                    'content_sid = "HX0000000000000000000000000000c001"\n'
                    'variables = ["order_number", "tracking_url"]\n')
    with pytest.raises(ConfigError, match=r"unknown variable.*tracking_url.*offers: shop"):
        load_settings(environ={}, path=path)
    path.write_text('[sms.whatsapp_templates.order_confirmation]\ncontent_sid = "MG123"\n')
    with pytest.raises(ConfigError, match=r"\[sms.whatsapp_templates.order_confirmation\] "
                       r"content_sid: .*HX \+ 32 hex digits, got 'MG123'"):
        load_settings(environ={}, path=path)


def test_send_again_is_a_new_row_with_a_new_key_and_an_activity_line(engine, settings,
                                                                       enqueued):
    shipped_order(engine)
    original = queue(engine, settings, "order_confirmation", order_number="KB-1001").row
    with Session(engine, expire_on_commit=False) as session:
        again = outbox.resend_message(session, settings, original.id, "ops")
    assert again.id != original.id and again.body == original.body
    assert again.idempotency_key.startswith("sms/order_confirmation/KB-1001/again-")
    assert [c.args for c in enqueued] == [(original.id,), (again.id,)]
    assert activity(engine)[-1].action == "message.resend"


def test_a_lease_shorter_than_a_call_is_refused(tmp_path):
    """A worker still waiting for Twilio must not be taken for dead (it would send twice)."""
    path = tmp_path / "c.toml"
    path.write_text("[sms]\nlease_seconds = 20\nrequest_timeout = 30\n")
    with pytest.raises(ConfigError, match=r"\[sms\].*lease_seconds \(20.0\) must be more than"):
        load_settings(environ={}, path=path)
