"""One low-stock alert a day for the same products, whichever road sent it: a manual
`email queue low_stock` or `inventory low-stock --send` counts for the day, the 08:00 check then
sends only a follow-up for products that fell low since, and the other way round."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from inventory_helpers import add_events, add_products, outbox
from sqlmodel import Session, col, select

from kolaq_console import dispatch
from kolaq_console.cli import main
from kolaq_console.inventory.periodic import CHECK_JOB, catch_up, run_scheduled
from kolaq_console.inventory.reconcile import reconcile
from kolaq_console.models import ActivityLog, utcnow
from kolaq_console.schedules import as_utc

MANUAL_ROADS = {
    "email queue": ("email", "queue", "low_stock"),
    "inventory low-stock --send": ("inventory", "low-stock", "--send"),
}


def cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def shop_time(settings, hour: int, minute: int = 5) -> datetime:
    """Today at hour:minute on the shop's clock, as UTC (the day the CLI's alert used)."""
    local = utcnow().astimezone(settings.shop.zone)
    return as_utc(local.replace(hour=hour, minute=minute, second=0, microsecond=0))


def low_shop(engine) -> list[int]:
    a, b, c = add_products(engine, 3, prefix="LOW", threshold=5)
    add_events(engine, [(a, 2), (b, 3), (c, 50)])
    reconcile(engine)
    return [a, b, c]


@pytest.fixture
def recorded():
    with dispatch.recording() as calls:
        yield calls


@pytest.mark.parametrize("road", MANUAL_ROADS)
def test_a_manual_alert_counts_for_the_day_and_the_check_sends_only_newcomers(
        engine, settings, capsys, recorded, road):
    _a, _b, c = low_shop(engine)

    code, _out, err = cli(capsys, *MANUAL_ROADS[road])
    assert code == 0, err
    [first] = outbox(engine)

    # the 08:00 check of the same shop day lists nobody new: no second email
    check = run_scheduled(engine, settings, CHECK_JOB, now=shop_time(settings, 8))
    assert check.ran
    assert check.result["reason"] == "every low product was already alerted today"
    assert [r.id for r in outbox(engine)] == [first.id]

    # a product that falls low afterwards gets a follow-up listing it alone
    add_events(engine, [(c, -47)], kind="sale")
    catch_up(engine, settings, now=shop_time(settings, 9))
    rows = outbox(engine)
    assert len(rows) == 2 and rows[1].idempotency_key.endswith("/2")
    with Session(engine) as session:
        alerts = session.exec(select(ActivityLog.details).where(
            col(ActivityLog.action) == "inventory.low_stock.alert")
            .order_by(col(ActivityLog.id))).all()
    assert [d["skus"] for d in alerts] == [["LOW-000", "LOW-001"], ["LOW-002"]]
    assert [call.task for call in recorded] == ["send_email", "send_email"]


@pytest.mark.parametrize("road", MANUAL_ROADS)
def test_after_the_days_check_a_manual_alert_sends_nothing_new(engine, settings, capsys,
                                                               recorded, road):
    low_shop(engine)
    check = run_scheduled(engine, settings, CHECK_JOB, now=shop_time(settings, 8))
    assert check.ran and len(outbox(engine)) == 1

    code, out, err = cli(capsys, *MANUAL_ROADS[road])

    assert code == 0, err
    assert "already alerted today" in out
    assert len(outbox(engine)) == 1


def test_email_queue_low_stock_json_names_the_alert_and_refuses_a_key(
        engine, settings, capsys, recorded):
    low_shop(engine)
    code, out, _ = cli(capsys, "email", "queue", "low_stock", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["created"] and doc["kind"] == "low_stock"
    assert doc["alert"]["skus"] == ["LOW-000", "LOW-001"]
    assert doc["idempotency_key"] == doc["alert"]["key"]

    code, out, _ = cli(capsys, "email", "queue", "low_stock", "--json")
    assert code == 0 and json.loads(out)["created"] is False

    code, _out, err = cli(capsys, "email", "queue", "low_stock", "--key", "mine")
    assert code == 1 and "--key is not taken for low_stock" in err
    assert len(outbox(engine)) == 1


def test_nothing_low_is_still_an_error(engine, settings, capsys, recorded):
    (pid,) = add_products(engine, 1, prefix="FULL", threshold=5)
    add_events(engine, [(pid, 50)])
    code, _out, err = cli(capsys, "email", "queue", "low_stock")
    assert code == 1 and "no product is at or below its low-stock threshold" in err
    assert outbox(engine) == [] and recorded == []


def test_shop_time_helper_is_today_on_the_shops_clock(settings):
    moment = shop_time(settings, 8)
    local = moment.astimezone(settings.shop.zone)
    assert (local.hour, local.minute) == (8, 5)
    assert abs(moment - utcnow()) < timedelta(days=1)
