"""Lookup: orders, customers and products found by prefix as you type (index-backed on both
databases), their records with the failed jobs about them, and `kolaq-console lookup`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import text, update
from sqlmodel import Session, col, select

from kolaq_console.consent import suppress
from kolaq_console.demo import load_demo
from kolaq_console.emails import EmailRequest, outbox
from kolaq_console.errors import NotFound, UserError
from kolaq_console.inventory.adjust import adjust
from kolaq_console.lookup import (
    customer_record,
    email_subject,
    find,
    job_subject,
    lookup,
    order_record,
    product_record,
)
from kolaq_console.lookup.search import ORD, prefix_of
from kolaq_console.models import Customer, EmailOutbox, FailedJob, Order, utcnow

THRESHOLD = 10


@pytest.fixture
def shop(engine, settings):
    """The demo shop; KB-10009's confirmation failed (an open send job) and was tried
    before (a closed one); KB-10002's confirmation has a failed job of its own."""
    load_demo(engine)
    with Session(engine, expire_on_commit=False) as session:
        rows = {}
        for number in ("KB-10009", "KB-10002"):
            row = outbox.add(session, settings, EmailRequest("order_confirmation",
                                                             order_number=number),
                             enqueue=False).row
            rows[number] = row.id
        session.execute(update(EmailOutbox).where(col(EmailOutbox.id) == rows["KB-10009"])
                        .values(status="failed", last_error="403 invalid_api_key"))
        jobs = {}
        for name, row_id, status in (("open", rows["KB-10009"], "failed"),
                                     ("closed", rows["KB-10009"], "retried"),
                                     ("other", rows["KB-10002"], "failed")):
            job = FailedJob(task_id=f"task-{name}", task_name="tasks.send_email",
                            queue="emails", args=[row_id], status=status,
                            error_type="PermanentJobError", error_message="403 invalid_api_key",
                            attempts=1, last_attempt_at=utcnow())
            session.add(job)
            session.flush()
            jobs[name] = job.id
        # a webhook job whose event id equals an outbox row id: not about the email
        session.add(FailedJob(task_id="task-hook", task_name="tasks.process_webhook",
                              queue="webhooks", args=[rows["KB-10009"]], error_message="x"))
        session.add(FailedJob(task_id="task-sku", task_name="tasks.reconcile_inventory",
                              queue="inventory", args=["KB-ORIG-750"], error_message="busy"))
        session.commit()
    return {"emails": rows, "jobs": jobs}


def customer_of(engine, number: str) -> Customer:
    with Session(engine) as session:
        order = session.exec(select(Order).where(Order.number == number)).one()
        return session.get(Customer, order.customer_id)


# --- find as you type ------------------------------------------------------------------------


def test_order_number_digits_alone_find_the_order(engine, shop):
    with Session(engine) as session:
        matches = find(session, "10009")
    assert [(m.kind, m.key) for m in matches][:1] == [("order", "KB-10009")]


def test_order_number_prefix_is_case_insensitive(engine, shop):
    with Session(engine) as session:
        keys = [m.key for m in find(session, "kb-1000", limit=20) if m.kind == "order"]
    assert keys == [f"KB-1000{i}" for i in range(1, 10)]


def test_customers_by_email_or_name_prefix(engine, shop):
    customer = customer_of(engine, "KB-10009")
    with Session(engine) as session:
        by_email = find(session, customer.email[:8].upper())
        by_name = find(session, customer.name.split()[0].lower())
    assert ("customer", customer.email) in [(m.kind, m.key) for m in by_email]
    assert ("customer", customer.email) in [(m.kind, m.key) for m in by_name]


def test_products_by_sku_or_name_prefix(engine, shop):
    with Session(engine) as session:
        by_sku = [m.key for m in find(session, "kb-orig") if m.kind == "product"]
        by_name = [m.key for m in find(session, "festive") if m.kind == "product"]
    assert by_sku == ["KB-ORIG-100", "KB-ORIG-375", "KB-ORIG-750"]
    assert by_name == ["KB-GIFT-XMAS"]


def test_like_wildcards_in_a_term_are_plain_characters(engine, shop):
    with Session(engine) as session:
        assert find(session, "%") == [] and find(session, "kb_") == []
        assert find(session, "   ") == []


def test_order_search_is_index_backed(engine, shop):
    """The prefix search reads ix_orders_number_prefix, not the whole table."""
    dialect = engine.dialect.name
    query = (select(ORD.c.number).where(prefix_of(ORD.c.number, "kb-1000", dialect))
             .compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        if dialect == "postgresql":
            conn.execute(text("SET enable_seqscan = off"))  # a tiny table: make it choose
            plan = " ".join(r[0] for r in conn.execute(text(f"EXPLAIN {query}")))
        else:
            plan = " ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {query}")))
    assert "ix_orders_number_prefix" in plan


def test_failed_jobs_about_a_record_are_found_through_the_first_argument_index(engine, shop):
    from sqlalchemy import event

    from kolaq_console.jobs.failed import calls_about

    seen: list = []

    def capture(conn, cursor, statement, parameters, context, many):
        seen.append((statement, parameters))

    with Session(engine) as session:
        event.listen(engine, "before_cursor_execute", capture)
        try:
            calls_about(session, {"send_email": [shop["emails"]["KB-10009"]]})
        finally:
            event.remove(engine, "before_cursor_execute", capture)
        statement, parameters = seen[-1]
        conn = session.connection()
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
            rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        else:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    assert "ix_failed_jobs_first_arg" in " ".join(str(r[-1]) for r in rows)


# --- records -------------------------------------------------------------------------------


def test_order_record_has_the_failed_jobs_about_its_emails_and_only_those(engine, shop):
    with Session(engine) as session:
        record = order_record(session, "kb-10009")
    assert record["number"] == "KB-10009"
    assert [e["id"] for e in record["emails"]] == [shop["emails"]["KB-10009"]]
    assert record["emails"][0]["status"] == "failed"
    ids = [j["id"] for j in record["failed_jobs"]]
    assert ids == [shop["jobs"]["closed"], shop["jobs"]["open"]]  # newest first, both states
    assert {j["status"] for j in record["failed_jobs"]} == {"failed", "retried"}
    assert record["lines"] and record["payment"]["status"]


def test_unknown_order_is_a_clear_error(engine, shop):
    with Session(engine) as session, pytest.raises(NotFound, match="no order 'KB-99999'"):
        order_record(session, "KB-99999")


def test_customer_record_shows_consent_suppression_orders_and_emails(engine, shop, settings):
    customer = customer_of(engine, "KB-10009")
    with Session(engine) as session:
        suppress(session, customer.email.upper(), "bounced", source="test")
        session.commit()
        record = customer_record(session, customer.email.upper())
    assert record["email"] == customer.email
    assert "KB-10009" in [o["number"] for o in record["orders"]]
    assert shop["emails"]["KB-10009"] in [e["id"] for e in record["emails"]]
    assert record["suppression"]["reason"] == "bounced"
    assert record["consent"]["email"]["blocked"] == "bounced"
    assert set(record["consent"]) == {"email", "sms", "whatsapp"}
    assert shop["jobs"]["open"] in [j["id"] for j in record["failed_jobs"]]
    assert record["activity"][0]["action"] == "consent.suppress"


def test_product_record_shows_stock_adjustments_and_failed_reconciles(engine, shop, settings):
    adjust(engine, settings, "KB-ORIG-750", -2, "two bottles broken", actor="ada")
    with Session(engine) as session:
        record = product_record(session, "kb-orig-750", THRESHOLD)
    assert record["sku"] == "KB-ORIG-750" and record["threshold"] is not None
    assert record["adjustments"][0]["note"] == "two bottles broken"
    assert record["adjustments"][0]["delta"] == -2
    assert [j["task_name"] for j in record["failed_jobs"]] == ["tasks.reconcile_inventory"]
    assert record["activity"][0]["action"] == "inventory.adjust"


def test_a_send_jobs_subject_is_its_email_order_customer_and_product(engine, shop):
    customer = customer_of(engine, "KB-10009")
    with Session(engine) as session:
        subject = job_subject(session, shop["jobs"]["open"])
        email = email_subject(session, shop["emails"]["KB-10009"])
    assert subject.email_id == shop["emails"]["KB-10009"]
    assert subject.order_number == "KB-10009"
    assert subject.customer_email == customer.email
    assert subject.sku is not None
    assert email.job_ids == (shop["jobs"]["closed"], shop["jobs"]["open"])


def test_a_job_about_nothing_known_has_an_empty_subject(engine, shop):
    with Session(engine) as session:
        hook = FailedJob(task_id="lost", task_name="tasks.process_webhook", queue="webhooks",
                         args=[999_999], error_message="gone")
        session.add(hook)
        session.commit()
        subject = job_subject(session, hook.id)
    assert (subject.email_id, subject.order_number, subject.customer_email) == (None,) * 3


def test_lookup_resolves_one_record_or_says_why_not(engine, shop):
    with Session(engine) as session:
        assert lookup(session, "10009", THRESHOLD)["order"]["number"] == "KB-10009"
        assert lookup(session, "KB-GIFT-XMAS", THRESHOLD)["product"]["sku"] == "KB-GIFT-XMAS"
        with pytest.raises(UserError, match="matches several"):
            lookup(session, "kb-orig", THRESHOLD)
        with pytest.raises(NotFound, match="no order, customer or product matches"):
            lookup(session, "zzz", THRESHOLD)
        with pytest.raises(UserError, match="give an order number"):
            lookup(session, "  ", THRESHOLD)


# --- the CLI -------------------------------------------------------------------------------


def test_cli_lookup_json_has_the_contract_keys(engine, shop, cli_run):
    code, out, err = cli_run("lookup", "KB-10009", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert list(doc) == ["order", "customer", "product", "emails", "failed_jobs", "activity"]
    assert doc["order"]["number"] == "KB-10009" and doc["product"] is None
    assert doc["customer"]["email"] == customer_of(engine, "KB-10009").email
    assert [e["id"] for e in doc["emails"]] == [shop["emails"]["KB-10009"]]
    assert doc["failed_jobs"][0]["id"] == shop["jobs"]["closed"]


def test_cli_lookup_by_address_shows_the_customer(engine, shop, cli_run):
    email = customer_of(engine, "KB-10009").email
    code, out, err = cli_run("lookup", email.upper(), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["customer"]["email"] == email and doc["order"] is None
    assert shop["emails"]["KB-10009"] in [e["id"] for e in doc["emails"]]


def test_cli_lookup_prints_the_story_for_people(engine, shop, cli_run):
    code, out, _ = cli_run("lookup", "10009")
    assert code == 0
    assert "order KB-10009" in out and "403 invalid_api_key" in out


@pytest.mark.parametrize(("term", "message"), [
    ("nothing-like-this", "no order, customer or product matches 'nothing-like-this'"),
    ("kb-orig", "'kb-orig' matches several: product KB-ORIG-100"),
    ("nobody@example.com", "no customer and no email with address 'nobody@example.com'"),
])
def test_cli_lookup_without_one_match_exits_1_with_one_line(engine, shop, cli_run, term,
                                                            message):
    code, out, err = cli_run("lookup", term)
    assert code == 1 and out == ""
    assert err.startswith(f"kolaq-console: {message}") and err.count("\n") == 1


def test_cli_lookup_prints_times_on_the_shops_clock(engine, shop, cli_run, settings):
    """Stored times are UTC; the story (here a customer's, with their orders) prints them in
    the shop's zone, as the console does."""
    with Session(engine) as session:
        order = session.exec(select(Order).where(Order.number == "KB-10009")).one()
        order.created_at = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
        session.add(order)
        session.commit()
    code, out, _ = cli_run("lookup", customer_of(engine, "KB-10009").email)
    local = datetime(2026, 3, 1, 23, 30, tzinfo=UTC).astimezone(settings.shop.zone)
    assert code == 0 and local.utcoffset()  # the check means something only off UTC
    assert f"order KB-10009   delivered  {local:%Y-%m-%d %H:%M}" in out
    assert "2026-03-01 23:30" not in out
