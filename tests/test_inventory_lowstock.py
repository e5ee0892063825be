"""Low stock: the one query, the consolidated alert once a day, follow-ups, the outbox seam."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

from inventory_helpers import add_events, add_products, outbox, schedule_rows
from sqlmodel import Session

from kolaq_console import dispatch
from kolaq_console.inventory import alert
from kolaq_console.inventory.lowstock import ALERT_JOB, low_stock_products, send_alerts
from kolaq_console.inventory.reconcile import reconcile
from kolaq_console.models import EmailStatus
from kolaq_console.status import collect

NOW = datetime(2026, 1, 6, 7, 0, tzinfo=UTC)  # 08:00 in Lagos


def _shop(engine) -> dict[str, int]:
    ids = add_products(engine, 5, prefix="LS")
    own = add_products(engine, 1, prefix="OWN", threshold=3)[0]
    gone = add_products(engine, 1, prefix="GONE", active=False)[0]
    # LS-000 at the default threshold (10), LS-001 above it, LS-002 well below, LS-003 will
    # drop below only through events the cache does not cover yet, LS-004 never restocked.
    add_events(engine, [(ids[0], 10), (ids[1], 11), (ids[2], 2), (ids[3], 40), (own, 4),
                        (gone, 1)], created_at=NOW - timedelta(days=30))
    reconcile(engine)
    add_events(engine, [(ids[3], -20), (ids[3], -15)], kind="sale",
               created_at=NOW - timedelta(days=2))
    add_events(engine, [(ids[2], -1)], kind="sale", created_at=NOW - timedelta(days=9))
    return {"ids": ids, "own": own}


def test_low_stock_query_uses_true_stock_and_per_product_thresholds(engine, settings):
    _shop(engine)
    with Session(engine) as session:
        items = low_stock_products(session, 10, with_sales=True, now=NOW)

    got = {i.sku: (i.stock, i.threshold, i.sold_7d, i.days_of_cover) for i in items}
    assert got == {
        "LS-004": (0, 10, 0, None),
        "LS-002": (1, 10, 0, None),  # its sale was 9 days ago: outside the 7-day window
        "LS-003": (5, 10, 35, 1.0),  # 40 in the cache, -35 in events not folded yet
        "LS-000": (10, 10, 0, None),  # at the threshold counts as low
    }
    assert [i.sku for i in items] == ["LS-004", "LS-002", "LS-003", "LS-000"]
    assert "OWN-000" not in got and "GONE-000" not in got  # 4 > own threshold 3; inactive


def test_status_json_low_stock_agrees_with_the_inventory_query(engine, settings, huey):
    _shop(engine)
    status = collect(settings, engine, huey)
    with Session(engine) as session:
        ours = [i.status_dict() for i in low_stock_products(session, 10)]
    assert status.as_dict()["low_stock"] == ours
    assert {"sku": "LS-003", "name": "Product LS 3", "stock": 5, "threshold": 10} in ours


def test_one_consolidated_alert_per_day_then_follow_ups_for_newcomers_only(engine, settings):
    ids = _shop(engine)["ids"]

    first = send_alerts(engine, settings, now=NOW)
    again = send_alerts(engine, settings, now=NOW + timedelta(hours=3))
    add_events(engine, [(ids[1], -5)], kind="sale", created_at=NOW)  # LS-001 falls to 6
    follow = send_alerts(engine, settings, now=NOW + timedelta(hours=5))
    quiet = send_alerts(engine, settings, now=NOW + timedelta(hours=6))
    next_day = send_alerts(engine, settings, now=NOW + timedelta(days=1))

    assert first.queued and not first.follow_up
    assert first.skus == ["LS-004", "LS-002", "LS-003", "LS-000"]
    assert not again.queued and "already alerted today" in again.reason
    assert follow.queued and follow.follow_up and follow.skus == ["LS-001"]
    assert not quiet.queued
    assert next_day.queued and not next_day.follow_up and len(next_day.skus) == 5
    rows = outbox(engine)
    assert [r.idempotency_key for r in rows] == [
        "low_stock/2026-01-06/1", "low_stock/2026-01-06/2", "low_stock/2026-01-07/1"]
    assert [r.slot for r in schedule_rows(engine, ALERT_JOB)] == [
        "2026-01-06/1", "2026-01-06/2", "2026-01-07/1"]


def test_alert_row_is_a_queued_low_stock_email_to_the_admin_with_sales_and_cover(
        engine, settings):
    _shop(engine)
    send_alerts(engine, settings, now=NOW)

    (row,) = outbox(engine)
    assert (row.kind, row.to_address, row.status) == ("low_stock", "admin@kolaq.test",
                                                      EmailStatus.queued.value)
    assert row.subject == "Low stock: 4 products at or below threshold"
    for needle in ("LS-003", "Product LS 3", "Sold (7 days)", "Days of cover"):
        assert needle in row.text and needle in row.html
    line = next(x for x in row.text.splitlines() if x.startswith("LS-003"))
    assert line.split()[-4:] == ["5", "10", "35", "1.0"]  # stock, threshold, sold, cover


def test_alert_day_is_the_shops_local_date(engine, settings):
    _shop(engine)
    late = datetime(2026, 1, 6, 23, 30, tzinfo=UTC)  # already 00:30 on the 7th in Lagos
    send_alerts(engine, settings, now=late)
    assert outbox(engine)[0].idempotency_key == "low_stock/2026-01-07/1"


def test_concurrent_checks_send_exactly_one_alert(engine, settings):
    _shop(engine)
    barrier = threading.Barrier(4)
    outcomes = []

    def check() -> None:
        barrier.wait()
        outcomes.append(send_alerts(engine, settings, now=NOW))

    threads = [threading.Thread(target=check) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert len(outcomes) == 4 and sum(o.queued for o in outcomes) == 1
    assert len(outbox(engine)) == 1 and len(schedule_rows(engine, ALERT_JOB)) == 1


def test_seam_hands_the_row_to_the_send_task_only_after_commit(engine, settings):
    _shop(engine)
    calls: list[tuple[str, tuple, int]] = []

    def send_email(call: dispatch.Call) -> None:
        # the row must already be committed when its job is enqueued
        calls.append((call.task, call.args, len(outbox(engine))))

    with dispatch.recording(send_email):
        with Session(engine) as session:
            with session.begin():
                items = low_stock_products(session, 10)
                alert.send_low_stock_alert(session, settings, items, "low_stock/test/1")
                assert calls == []
            (row,) = outbox(engine)
        assert calls == [("send_email", (row.id,), 1)]

        with Session(engine) as session:  # rolled back: nothing is handed over
            session.begin()
            alert.send_low_stock_alert(session, settings, items, "low_stock/test/2")
            session.rollback()
    assert len(calls) == 1 and len(outbox(engine)) == 1


def test_cli_low_stock_lists_and_sends_only_with_send(engine, settings, capsys):
    from kolaq_console.cli import main

    _shop(engine)
    capsys.readouterr()
    main(["inventory", "low-stock", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert [p["sku"] for p in doc["products"]] == ["LS-004", "LS-002", "LS-003", "LS-000"]
    assert doc["alert"] is None and outbox(engine) == []

    main(["inventory", "low-stock", "--send"])
    assert "alert queued to admin@kolaq.test" in capsys.readouterr().out
    main(["inventory", "low-stock", "--send"])
    assert "no alert sent: every low product was already alerted today" in (
        capsys.readouterr().out)
    assert len(outbox(engine)) == 1
