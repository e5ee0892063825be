"""The webhook receiver over real HTTP (uvicorn on a free port), on SQLite and PostgreSQL:
signatures on the raw body, the inbox committed before the 200, duplicates, limits, and what
each event does once it is processed (the job the server enqueued, run here).

Longer than ~400 lines: 25 behaviours of one receiver sharing its server and signing fixtures."""

from __future__ import annotations

import time

import pytest
from email_support import activity, count, rows, seed_order
from sqlmodel import Session, select
from webhook_support import (
    ServerThread,
    body,
    paystack_charge,
    paystack_refund,
    post_event,
    request,
    resend_event,
    sign,
    stripe_checkout,
    stripe_headers,
    stripe_payment_intent,
)

from kolaq_console import consent, dispatch
from kolaq_console.models import (
    EmailOutbox,
    InventoryEvent,
    Order,
    Suppression,
    WebhookEvent,
)
from kolaq_console.webhooks.process import process_event, process_events
from kolaq_console.webhooks.server import make_app

TOTAL = 2 * 1_250_000 + 450_000 + 250_000  # seed_order's default lines and shipping


@pytest.fixture
def secrets_env():
    from webhook_support import make_secrets

    return make_secrets()


@pytest.fixture
def wh_settings(make_settings, secrets_env):
    from kolaq_console import runtime

    s = make_settings(**secrets_env)
    runtime.configure(s)
    yield s
    runtime.configure(None)


@pytest.fixture
def server(engine, wh_settings):
    """A running receiver; jobs it enqueues are recorded (`server.calls`), not run."""
    with dispatch.recording() as calls, ServerThread(make_app(wh_settings, engine)) as srv:
        srv.calls = calls
        yield srv


def run_jobs(engine, settings, calls) -> list[str]:
    """What a worker does with the recorded jobs (each once, in order), then forgets them."""
    done = []
    while calls:
        call = calls.pop(0)
        if call.task == "process_webhook":
            done.extend(process_events(engine, settings, call.args))
    return done


def events(engine) -> list[WebhookEvent]:
    with Session(engine) as s:
        return list(s.exec(select(WebhookEvent).order_by(WebhookEvent.id)).all())


def order(engine, number="KB-1001") -> Order:
    with Session(engine) as s:
        return s.exec(select(Order).where(Order.number == number)).one()


def stock_events(engine, number="KB-1001") -> list[InventoryEvent]:
    with Session(engine) as s:
        return list(s.exec(select(InventoryEvent).where(InventoryEvent.reference == number)
                           .order_by(InventoryEvent.id)).all())


def pending_order(engine, reference="PSK-REF-1", number="KB-1001", **kw) -> int:
    order_id = seed_order(engine, number, status="pending", **kw)
    with Session(engine) as s:
        o = s.get(Order, order_id)
        o.payment_reference, o.payment_status = reference, "unpaid"
        s.add(o)
        s.commit()
    return order_id


def valid_event(provider: str) -> dict:
    if provider == "paystack":
        return paystack_charge("PSK-REF-1", TOTAL)
    if provider == "stripe":
        return stripe_payment_intent("pi_1", TOTAL, order_number="KB-1001")
    return resend_event("email.delivered", "re-msg-1", "ada@example.com")


# --- verification --------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["paystack", "stripe", "resend"])
def test_a_validly_signed_event_is_stored_before_the_200_and_its_job_enqueued(
        server, engine, secrets_env, provider):
    reply = post_event(server.url, provider, valid_event(provider), secrets_env)
    assert reply.status == 200, reply.body
    assert reply.json()["status"] == "accepted"
    [row] = events(engine)  # committed: another connection reads it
    assert (row.provider, row.status, row.id) == (provider, "received", reply.json()["id"])
    assert [(c.task, c.args) for c in server.calls] == [("process_webhook", (row.id,))]


@pytest.mark.parametrize("provider", ["paystack", "stripe", "resend"])
def test_a_tampered_body_is_refused_with_401_and_nothing_is_stored(
        server, engine, secrets_env, provider, caplog):
    raw = body(valid_event(provider))
    headers = sign(provider, raw, secrets_env)
    tampered = raw.replace(str(TOTAL).encode(), b"1") if provider != "resend" else \
        raw.replace(b"delivered", b"bounced")
    assert tampered != raw
    reply = request(server.url, "POST", f"/webhooks/{provider}", tampered, headers)
    assert reply.status == 401
    missing = request(server.url, "POST", f"/webhooks/{provider}", raw)  # no signature at all
    assert missing.status == 401
    assert events(engine) == [] and server.calls == []
    assert any("refused (401)" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("provider", ["stripe", "resend"])
def test_a_stale_timestamp_is_refused_even_with_a_valid_signature(server, engine, secrets_env,
                                                                  provider):
    raw = body(valid_event(provider))
    stale = time.time() - 301
    reply = request(server.url, "POST", f"/webhooks/{provider}", raw,
                    sign(provider, raw, secrets_env, at=stale))
    assert reply.status == 401
    assert events(engine) == []


def test_stripe_accepts_any_matching_v1_while_a_secret_is_rolled(server, engine, secrets_env):
    raw = body(valid_event("stripe"))
    headers = stripe_headers(raw, secrets_env["STRIPE_WEBHOOK_SECRET"],
                             extra_v1=("0" * 64,))
    assert request(server.url, "POST", "/webhooks/stripe", raw, headers).status == 200


def test_a_signed_body_that_is_not_json_is_400_and_nothing_is_stored(server, engine,
                                                                     secrets_env):
    for raw in (b"{not json", b"[1, 2]"):
        reply = request(server.url, "POST", "/webhooks/paystack", raw,
                        sign("paystack", raw, secrets_env))
        assert reply.status == 400, raw
    assert events(engine) == []


def test_an_oversize_body_is_413_whether_declared_or_streamed(server, engine, secrets_env,
                                                              wh_settings):
    big = body({"event": "charge.success", "pad": "x" * wh_settings.webhooks.max_body_bytes})
    headers = sign("paystack", big, secrets_env)
    assert request(server.url, "POST", "/webhooks/paystack", big, headers).status == 413
    streamed = request(server.url, "POST", "/webhooks/paystack", big, headers, chunked=True)
    assert streamed.status == 413
    assert events(engine) == []


def test_an_endpoint_without_its_secret_answers_503_naming_the_variable(
        engine, make_settings, secrets_env):
    partial = {k: v for k, v in secrets_env.items() if k != "STRIPE_WEBHOOK_SECRET"}
    settings = make_settings(**partial)
    with dispatch.recording(), ServerThread(make_app(settings, engine)) as srv:
        raw = body(valid_event("stripe"))
        # even correctly signed with the secret the server does not have
        reply = request(srv.url, "POST", "/webhooks/stripe", raw,
                        sign("stripe", raw, secrets_env))
        assert reply.status == 503
        assert "STRIPE_WEBHOOK_SECRET" in reply.json()["error"]
        assert post_event(srv.url, "paystack", valid_event("paystack"), secrets_env).status == 200
        health = request(srv.url, "GET", "/health").json()
    assert health["providers"] == {"paystack": True, "stripe": False, "resend": True}
    assert [e.provider for e in events(engine)] == ["paystack"]


def test_health_reports_database_and_queue(server):
    import tasks  # noqa: F401  (the queue the server would enqueue on)

    reply = request(server.url, "GET", "/health")
    assert reply.status == 200, reply.body
    assert reply.json()["database"] == "ok" and reply.json()["queue"] == "ok"


# --- exactly once ----------------------------------------------------------------------------


def test_a_payment_delivered_many_times_in_any_order_pays_once_moves_stock_once_and_confirms_once(
        server, engine, wh_settings, secrets_env):
    pending_order(engine, reference="pi_1")
    intent = stripe_payment_intent("pi_1", TOTAL, order_number="KB-1001")
    checkout = stripe_checkout("cs_1", "pi_1", TOTAL, client_reference_id="KB-1001")
    # the checkout event first, then the intent, then both again (provider retries)
    for payload in (checkout, intent, checkout, intent, intent):
        assert post_event(server.url, "stripe", payload, secrets_env).status == 200
    assert len(events(engine)) == 2 and len(server.calls) == 2  # duplicates: no new job
    assert run_jobs(engine, wh_settings, server.calls) == ["processed", "processed"]
    # a job run twice (a re-enqueue) finds nothing to do
    assert process_event(engine, wh_settings, events(engine)[0].id) == "skipped"

    o = order(engine)
    assert (o.status, o.payment_status) == ("paid", "paid") and o.paid_at is not None
    assert [(e.kind, e.delta) for e in stock_events(engine)] == [("sale", -2), ("sale", -1)]
    assert [(r.kind, r.order_id) for r in rows(engine)] == [("order_confirmation", o.id)]
    assert [e.status for e in events(engine)] == ["processed", "processed"]
    assert "already paid" in events(engine)[1].error
    assert all(e.order_id == o.id for e in events(engine))
    paid = [a for a in activity(engine) if a.action == "order.status"]
    assert len(paid) == 1 and paid[0].details["to"] == "paid"


def test_an_amount_mismatch_is_flagged_for_an_operator_and_never_fulfilled(
        server, engine, wh_settings, secrets_env):
    pending_order(engine)
    post_event(server.url, "paystack", paystack_charge("PSK-REF-1", TOTAL - 100), secrets_env)
    post_event(server.url, "paystack",
               paystack_charge("PSK-REF-1", TOTAL, currency="USD", tx_id=2), secrets_env)
    assert run_jobs(engine, wh_settings, server.calls) == ["flagged", "flagged"]
    o = order(engine)
    assert (o.status, o.payment_status, o.paid_at) == ("pending", "review", None)
    assert stock_events(engine) == [] and count(engine, EmailOutbox) == 0
    first, second = events(engine)
    assert "amount mismatch" in first.error and first.order_id == o.id
    assert "USD" in second.error or "$" in second.error
    assert [a.action for a in activity(engine)] == ["order.flagged", "order.flagged"]


def test_a_flagged_event_replayed_after_the_operator_fixed_the_order_pays_it_once(
        server, engine, wh_settings, secrets_env):
    from kolaq_console.webhooks.inbox import replay

    pending_order(engine)
    post_event(server.url, "paystack", paystack_charge("PSK-REF-1", TOTAL - 100), secrets_env)
    run_jobs(engine, wh_settings, server.calls)
    with Session(engine) as s:  # the operator corrects the order's total
        o = s.exec(select(Order).where(Order.number == "KB-1001")).one()
        o.total_minor = TOTAL - 100
        s.add(o)
        s.commit()
    [event] = events(engine)
    replay(engine, event.id, actor="test-operator", lease_seconds=2)
    replay_calls = [c for c in server.calls if c.task == "process_webhook"]
    assert [c.args for c in replay_calls] == [(event.id,)]
    assert run_jobs(engine, wh_settings, server.calls) == ["processed"]
    assert order(engine).status == "paid" and len(rows(engine)) == 1
    assert any(a.action == "webhook.replay" for a in activity(engine))


def test_a_replay_closes_the_failed_jobs_whose_work_it_does_and_only_those(engine):
    from kolaq_console.models import FailedJob
    from kolaq_console.webhooks.inbox import replay

    with Session(engine) as s:
        a, b, c = (WebhookEvent(provider="stripe", event_id=f"evt_{n}", event_type="x",
                                payload={}, status=status)
                   for n, status in (("a", "failed"), ("b", "failed"), ("c", "processed")))
        s.add_all([a, b, c])
        s.flush()
        jobs = {name: FailedJob(task_id=f"t-{name}", task_name="tasks.process_webhook",
                                queue="webhooks", args=args, error_message="lock timeout")
                for name, args in (("a", [a.id]), ("a+b", [a.id, b.id]),
                                   ("a+c", [a.id, c.id]), ("b", [b.id]))}
        s.add_all(jobs.values())
        s.commit()
        ids = {name: job.id for name, job in jobs.items()}
        a_id = a.id

    replay(engine, a_id, actor="ops", lease_seconds=2)

    with Session(engine) as s:
        status = {name: s.get(FailedJob, i).status for name, i in ids.items()}
    # b still failed: the jobs that carried it stay open for its own replay
    assert status == {"a": "discarded", "a+b": "failed", "a+c": "discarded", "b": "failed"}
    [entry] = [e for e in activity(engine) if e.action == "webhook.replay"]
    assert entry.details["closed_failed_jobs"] == sorted([ids["a"], ids["a+c"]])


def test_a_payment_for_an_unknown_order_is_flagged(server, engine, wh_settings, secrets_env):
    pending_order(engine)
    post_event(server.url, "paystack", paystack_charge("NO-SUCH-REF", TOTAL), secrets_env)
    assert run_jobs(engine, wh_settings, server.calls) == ["flagged"]
    [event] = events(engine)
    assert "no order with reference 'NO-SUCH-REF'" in event.error
    assert order(engine).status == "pending"


def test_an_unknown_event_type_is_stored_and_marked_ignored(server, engine, wh_settings,
                                                           secrets_env):
    post_event(server.url, "paystack", {"event": "subscription.create", "data": {"id": 7}},
               secrets_env)
    post_event(server.url, "stripe", {"id": "evt_x", "type": "customer.created",
                                      "data": {"object": {}}}, secrets_env)
    post_event(server.url, "resend", resend_event("email.opened", "m1", "a@example.com"),
               secrets_env)
    assert run_jobs(engine, wh_settings, server.calls) == ["ignored"] * 3
    assert [e.event_type for e in events(engine)] == ["subscription.create", "customer.created",
                                                      "email.opened"]


def test_a_full_refund_returns_the_stock_and_sends_one_status_update(
        server, engine, wh_settings, secrets_env):
    pending_order(engine)
    post_event(server.url, "paystack", paystack_charge("PSK-REF-1", TOTAL), secrets_env)
    post_event(server.url, "paystack", paystack_refund("PSK-REF-1", TOTAL), secrets_env)
    post_event(server.url, "paystack", paystack_refund("PSK-REF-1", TOTAL), secrets_env)
    assert run_jobs(engine, wh_settings, server.calls) == ["processed", "processed"]
    o = order(engine)
    assert (o.status, o.payment_status) == ("refunded", "refunded")
    assert [(e.kind, e.delta) for e in stock_events(engine)] == [
        ("sale", -2), ("sale", -1), ("return", 2), ("return", 1)]
    assert [r.kind for r in rows(engine)] == ["order_confirmation", "order_status_update"]


def test_a_partial_refund_is_flagged_and_changes_nothing(server, engine, wh_settings,
                                                         secrets_env):
    pending_order(engine)
    post_event(server.url, "paystack", paystack_charge("PSK-REF-1", TOTAL), secrets_env)
    post_event(server.url, "paystack", paystack_refund("PSK-REF-1", 1000), secrets_env)
    assert run_jobs(engine, wh_settings, server.calls) == ["processed", "flagged"]
    assert order(engine).status == "paid" and len(stock_events(engine)) == 2


# --- delivery events -----------------------------------------------------------------------


def sent_email(engine, settings, to="ada@example.com", provider_id="re-msg-1",
               tagged=None) -> int:
    """A sent email; `tagged` as a send since migration 0018 stores it (None: sent before)."""
    from kolaq_console.emails import EmailRequest, outbox

    with dispatch.recording(), Session(engine, expire_on_commit=False) as s:
        row = outbox.add(s, settings, EmailRequest("generic", to=to, subject="Hello",
                                                   body="Hi")).row
        row.status, row.provider_message_id, row.provider_tagged = "sent", provider_id, tagged
        s.add(row)
        s.commit()
        return row.id


def delivery(engine, row_id) -> tuple[str | None, str | None]:
    with Session(engine) as s:
        r = s.get(EmailOutbox, row_id)
        return r.delivery_status, r.delivery_detail


def test_delivery_events_set_the_outbox_rows_delivery_state_and_never_go_back(
        server, engine, wh_settings, secrets_env):
    row_id = sent_email(engine, wh_settings)
    post_event(server.url, "resend", resend_event("email.delivery_delayed", "re-msg-1",
                                                  "ada@example.com"), secrets_env)
    run_jobs(engine, wh_settings, server.calls)
    assert delivery(engine, row_id)[0] == "delayed"
    post_event(server.url, "resend", resend_event("email.delivered", "re-msg-1",
                                                  "ada@example.com"), secrets_env)
    post_event(server.url, "resend", resend_event("email.delivery_delayed", "re-msg-1",
                                                  "ada@example.com"), secrets_env)
    assert run_jobs(engine, wh_settings, server.calls) == ["processed", "processed"]
    assert delivery(engine, row_id)[0] == "delivered"  # a late "delayed" changes nothing
    assert events(engine)[-1].email_id == row_id


def test_an_event_finds_its_email_by_the_row_id_tag_and_only_with_that_emails_provider_id(
        server, engine, wh_settings, secrets_env):
    row_id = sent_email(engine, wh_settings, provider_id="re-tagged-1", tagged=True)
    tag = {"kolaq_outbox_id": str(row_id)}
    # Another database sending through the same account (staging) numbers its rows alike.
    post_event(server.url, "resend", resend_event("email.delivered", "re-elsewhere",
                                                  "ada@example.com", tags=tag), secrets_env)
    assert run_jobs(engine, wh_settings, server.calls) == ["ignored"]
    assert delivery(engine, row_id) == (None, None)
    post_event(server.url, "resend", resend_event("email.delivery_delayed", "re-tagged-1",
                                                  "ada@example.com", tags=tag), secrets_env)
    post_event(server.url, "resend", resend_event("email.delivered", "re-tagged-1",
                                                  "ada@example.com", tags=tag), secrets_env)
    assert run_jobs(engine, wh_settings, server.calls) == ["processed", "processed"]
    assert delivery(engine, row_id)[0] == "delivered"
    assert events(engine)[-1].email_id == row_id


def test_a_tag_that_cannot_be_a_row_id_falls_back_to_the_provider_id_and_still_suppresses(
        server, engine, wh_settings, secrets_env):
    from kolaq_console.models import Suppression

    row_id = sent_email(engine, wh_settings, to="ola@example.com", provider_id="re-old-1")
    for value in ("99999999999", "2147483648", "-1", "x1", ""):
        post_event(server.url, "resend", resend_event(
            "email.bounced", "re-old-1", "ola@example.com", tags={"kolaq_outbox_id": value},
            bounce={"type": "Permanent"}), secrets_env)
    assert run_jobs(engine, wh_settings, server.calls) == ["processed"] * 5
    assert delivery(engine, row_id)[0] == "bounced"  # found by its provider id (sent before)
    with Session(engine) as s:
        assert s.exec(select(Suppression.email)).all() == ["ola@example.com"]


def test_a_hard_bounce_suppresses_the_address_and_excludes_it_from_the_next_broadcast(
        server, engine, wh_settings, secrets_env):
    from kolaq_console.models import Customer

    with Session(engine) as s:
        s.add(Customer(email="ada@example.com", name="Ada", marketing_consent=True))
        s.add(Customer(email="bola@example.com", name="Bola", marketing_consent=True))
        s.commit()
    row_id = sent_email(engine, wh_settings)
    bounced = resend_event("email.bounced", "re-msg-1", "ada@example.com",
                           bounce={"type": "Permanent", "subType": "Suppressed",
                                   "message": "mailbox does not exist"})
    assert post_event(server.url, "resend", bounced, secrets_env).status == 200
    assert run_jobs(engine, wh_settings, server.calls) == ["processed"]
    assert delivery(engine, row_id) == ("bounced", "Permanent / Suppressed / "
                                                    "mailbox does not exist")
    with Session(engine) as s:
        assert consent.is_blocked(s, "ada@example.com") == "bounced"
        assert not consent.marketing_allowed(s, "ada@example.com")
        assert consent.marketing_allowed(s, "bola@example.com")
        [row] = s.exec(select(Suppression)).all()
    assert (row.email, row.reason) == ("ada@example.com", "bounced")


def test_a_complaint_suppresses_and_a_soft_bounce_does_not(server, engine, wh_settings,
                                                          secrets_env):
    soft_id = sent_email(engine, wh_settings, to="soft@example.com", provider_id="m-soft")
    sent_email(engine, wh_settings, to="angry@example.com", provider_id="m-angry")
    post_event(server.url, "resend", resend_event(
        "email.bounced", "m-soft", "soft@example.com",
        bounce={"type": "Transient", "subType": "MailboxFull"}), secrets_env)
    post_event(server.url, "resend", resend_event("email.complained", "m-angry",
                                                  "angry@example.com"), secrets_env)
    run_jobs(engine, wh_settings, server.calls)
    assert delivery(engine, soft_id)[0] == "soft_bounced"
    with Session(engine) as s:
        assert consent.is_blocked(s, "soft@example.com") is None
        assert consent.is_blocked(s, "angry@example.com") == "complained"


def test_a_paid_order_of_a_bounced_customer_queues_no_email_and_says_why(
        server, engine, wh_settings, secrets_env):
    pending_order(engine)
    with Session(engine) as s:
        consent.suppress(s, "ada@example.com", "bounced", source="test")
        s.commit()
    post_event(server.url, "paystack", paystack_charge("PSK-REF-1", TOTAL), secrets_env)
    run_jobs(engine, wh_settings, server.calls)
    assert order(engine).status == "paid" and rows(engine) == []
    assert [a.details["reason"] for a in activity(engine) if a.action == "email.skipped"] == [
        "bounced"]


# --- unsubscribe -----------------------------------------------------------------------------


def test_one_click_unsubscribe_post_needs_no_cookie_and_answers_an_empty_200(
        server, engine, wh_settings):
    from kolaq_console.models import Customer

    with Session(engine) as s:
        s.add(Customer(email="ada@example.com", name="Ada", marketing_consent=True))
        s.commit()
    token = consent.make_token(wh_settings, "ada@example.com")
    reply = request(server.url, "POST", f"/unsubscribe/{token}", b"List-Unsubscribe=One-Click",
                    {"Content-Type": "application/x-www-form-urlencoded"})
    assert (reply.status, reply.body) == (200, b"")
    assert "set-cookie" not in reply.headers
    with Session(engine) as s:
        assert not consent.marketing_allowed(s, "ada@example.com")
    again = request(server.url, "POST", f"/unsubscribe/{token}", b"List-Unsubscribe=One-Click",
                    {"Content-Type": "application/x-www-form-urlencoded"})
    assert again.status == 200  # idempotent
    assert [a.action for a in activity(engine)] == ["consent.unsubscribe"]


def test_the_unsubscribe_page_shows_a_button_that_posts_and_confirms(server, engine,
                                                                    wh_settings):
    token = consent.make_token(wh_settings, "bola@example.com")
    page = request(server.url, "GET", f"/unsubscribe/{token}")
    assert page.status == 200 and "set-cookie" not in page.headers
    html = page.body.decode()
    assert "bola@example.com" in html and 'method="post"' in html and "<button" in html
    done = request(server.url, "POST", f"/unsubscribe/{token}",
                   b"List-Unsubscribe=One-Click&from=page",
                   {"Content-Type": "application/x-www-form-urlencoded"})
    assert done.status == 200 and b"You are unsubscribed" in done.body
    with Session(engine) as s:
        assert not consent.marketing_allowed(s, "bola@example.com")


def test_a_forged_unsubscribe_token_changes_nothing(server, engine, wh_settings):
    token = consent.make_token(wh_settings, "ada@example.com")
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert request(server.url, "POST", f"/unsubscribe/{forged}", b"").status == 400
    page = request(server.url, "GET", f"/unsubscribe/{forged}")
    assert page.status == 400 and b"does not work" in page.body
    assert activity(engine) == []


def test_concurrent_deliveries_share_commits_and_each_event_is_stored_and_enqueued_once(
        server, engine, wh_settings, secrets_env):
    from concurrent.futures import ThreadPoolExecutor

    payloads = [paystack_charge(f"REF-{i}", 100, tx_id=i) for i in range(60)]
    deliveries = payloads + payloads[:20]  # a third of them delivered twice, concurrently
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda p: post_event(server.url, "paystack", p, secrets_env),
                                deliveries))
    assert {r.status for r in replies} == {200}
    statuses = [r.json()["status"] for r in replies]
    assert statuses.count("accepted") == 60 and statuses.count("duplicate") == 20
    stored = events(engine)
    assert len(stored) == 60
    enqueued = [i for c in server.calls for i in c.args]
    assert sorted(enqueued) == sorted(e.id for e in stored)  # each in exactly one job


def test_store_many_keeps_order_and_reports_copies_in_one_batch_as_duplicates(engine):
    from kolaq_console.webhooks.inbox import store_many
    from kolaq_console.webhooks.verify import Event

    a, b = Event("stripe", "evt_a", "x", {}), Event("stripe", "evt_b", "x", {})
    first = store_many(engine, [a, b, a], 60)
    assert [s.created for s in first] == [True, True, False]
    assert first[0].id == first[2].id != first[1].id
    again = store_many(engine, [b, Event("paystack", "evt_a", "x", {})], 60)
    assert [s.created for s in again] == [False, True] and again[0].id == first[1].id


def test_the_inbox_lists_events_newest_received_first_whatever_their_ids(engine):
    from datetime import timedelta

    from kolaq_console.models import utcnow
    from kolaq_console.webhooks.inbox import list_events

    now = utcnow()
    with Session(engine) as s:  # stored after the fact, as the demo's delivery news is
        s.add_all([WebhookEvent(provider="resend", event_id=f"e{i}", event_type="x",
                                payload={}, received_at=now - timedelta(hours=h))
                   for i, h in enumerate([1, 3, 2])])
        s.commit()
        assert [e.event_id for e in list_events(s)] == ["e0", "e2", "e1"]


def test_storage_down_answers_503_so_the_provider_retries(engine, wh_settings, secrets_env):
    from kolaq_console.db import make_engine

    broken = make_engine("postgresql://nobody@127.0.0.1:1/none")
    with dispatch.recording() as calls, ServerThread(make_app(wh_settings, broken)) as srv:
        reply = post_event(srv.url, "paystack", valid_event("paystack"), secrets_env)
        assert reply.status == 503 and "retry" in reply.json()["error"]
        assert request(srv.url, "GET", "/health").status == 503
    assert calls == []
