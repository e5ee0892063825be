"""Adjustments: events not edits, the audit trail, refusals that write nothing, the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from inventory_helpers import (
    activity,
    add_events,
    add_products,
    corrupt,
    counts,
    outbox,
    stocks,
    truth,
)
from sqlmodel import Session, col, select

from kolaq_console.cli import main
from kolaq_console.errors import NotFound, UserError
from kolaq_console.inventory.adjust import ACTION_ADJUST, adjust
from kolaq_console.inventory.lowstock import send_alerts
from kolaq_console.inventory.reconcile import ACTION_PRODUCT, reconcile
from kolaq_console.models import InventoryEvent


def cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_adjust_appends_an_event_audits_it_and_updates_stored_stock(engine, settings):
    (pid,) = add_products(engine, 1, prefix="ADJ")
    add_events(engine, [(pid, 30)])
    reconcile(engine)

    result = adjust(engine, settings, "ADJ-000", -4, "  broken bottles  ")

    assert (result.stock_before, result.stock_after) == (30, 26)
    assert stocks(engine)[pid] == 26 == truth(engine)[pid]  # up to date at once
    with Session(engine) as session:
        event = session.exec(select(InventoryEvent).where(
            col(InventoryEvent.id) == result.event_id)).one()
    assert (event.kind, event.delta, event.note, event.actor) == (
        "adjustment", -4, "broken bottles", "test-operator")
    (entry,) = activity(engine, ACTION_ADJUST)
    assert (entry.actor, entry.entity, entry.entity_id) == ("test-operator", "product", "ADJ-000")
    assert entry.details == {"delta": -4, "reason": "broken bottles",
                             "event_id": result.event_id, "stock_before": 30,
                             "stock_after": 26, "allow_negative": False}
    # folding the adjustment's event is no correction: the event and the entry above are the
    # trail, so the one-product reconcile adds no entry of its own
    assert activity(engine, ACTION_PRODUCT) == []


def test_adjusting_a_tampered_product_logs_the_correction_with_its_trigger(engine, settings):
    (pid,) = add_products(engine, 1, prefix="TAM")
    add_events(engine, [(pid, 30)])
    reconcile(engine)
    corrupt(engine, pid, +7)  # stored stock edited behind reconciliation's back: 37

    result = adjust(engine, settings, "TAM-000", -4, "broken bottles")

    assert (result.stock_before, result.stock_after) == (30, 26)
    assert stocks(engine)[pid] == 26 == truth(engine)[pid]
    (fix,) = activity(engine, ACTION_PRODUCT)
    assert fix.details == {"old": 37, "new": 26, "drift": -11, "reason": "reconciliation",
                           "mode": "product", "folded_events": 1, "unexplained": -7,
                           "trigger": f"adjust event {result.event_id}"}


def test_operator_defaults_to_user_when_config_names_none(engine, make_settings, monkeypatch):
    monkeypatch.setenv("USER", "ada")
    s = make_settings(shop__operator="")
    add_products(engine, 1, prefix="USR")
    adjust(engine, s, "USR-000", 5, "count")
    assert activity(engine, ACTION_ADJUST)[0].actor == "ada"


def test_adjustment_below_zero_is_refused_unless_allowed(engine, settings):
    (pid,) = add_products(engine, 1, prefix="NEG")
    add_events(engine, [(pid, 2)])
    reconcile(engine)
    before = counts(engine)

    with pytest.raises(UserError, match=r"below zero \(2 -3 = -1\).*--allow-negative"):
        adjust(engine, settings, "NEG-000", -3, "stock take")
    assert counts(engine) == before

    result = adjust(engine, settings, "NEG-000", -3, "stock take", allow_negative=True)
    assert result.stock_after == -1 and stocks(engine)[pid] == -1


def test_unknown_sku_is_refused_with_a_suggestion(engine, settings):
    add_products(engine, 1, prefix="KB-ORIG")
    before = counts(engine)
    with pytest.raises(NotFound, match=r"unknown SKU 'KB-ORIG-00'.*did you mean KB-ORIG-000"):
        adjust(engine, settings, "KB-ORIG-00", 1, "typo")
    assert counts(engine) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["NOPE-1", "5", "--reason", "x"], "unknown SKU 'NOPE-1'"),
        (["CLI-000", "abc", "--reason", "x"], "DELTA must be a whole number"),
        (["CLI-000", "1.5", "--reason", "x"], "DELTA must be a whole number"),
        (["CLI-000", "0", "--reason", "x"], "DELTA must not be zero"),
        (["CLI-000", "5"], "--reason is required"),
        (["CLI-000", "5", "--reason", "   "], "--reason is required"),
        (["CLI-000", "-9", "--reason", "x"], "below zero"),
    ],
)
def test_cli_adjust_refuses_bad_input_with_one_line_and_writes_nothing(
        engine, settings, capsys, args, message):
    (pid,) = add_products(engine, 1, prefix="CLI")
    add_events(engine, [(pid, 3)])
    reconcile(engine)
    before = counts(engine)
    capsys.readouterr()

    code = cli("inventory", "adjust", *args)

    captured = capsys.readouterr()
    assert code == 1
    assert message in captured.err and captured.err.count("\n") == 1
    assert captured.out == ""
    assert counts(engine) == before


def test_cli_adjust_accepts_a_negative_delta_and_prints_the_result(engine, settings, capsys):
    (pid,) = add_products(engine, 1, prefix="CLI")
    add_events(engine, [(pid, 20)])

    assert cli("inventory", "adjust", "CLI-000", "-3", "--reason", "tasting samples") == 0

    assert "CLI-000: 20 -3 -> 17" in capsys.readouterr().out
    assert stocks(engine)[pid] == 17


def test_cli_history_lists_events_with_running_stock(engine, settings, capsys):
    (pid,) = add_products(engine, 1, prefix="HIS")
    add_events(engine, [(pid, 10), (pid, -2)])
    adjust(engine, settings, "HIS-000", 5, "found a case")
    capsys.readouterr()

    assert cli("inventory", "history", "HIS-000", "--json") == 0

    doc = json.loads(capsys.readouterr().out)
    assert doc["stock"] == 13
    assert [(e["kind"], e["delta"], e["stock_after"]) for e in doc["events"]] == [
        ("adjustment", 5, 13), ("restock", -2, 8), ("restock", 10, 10)]
    assert {a["action"] for a in doc["activity"]} == {ACTION_ADJUST}
    assert cli("inventory", "history", "NOPE") == 1


def test_product_adjusted_down_to_its_threshold_is_picked_up_by_the_low_stock_rules(
        engine, settings):
    a, b = add_products(engine, 2, prefix="LOW", threshold=5)
    add_events(engine, [(a, 3), (b, 40)])
    reconcile(engine)
    morning = datetime(2026, 1, 6, 7, 30, tzinfo=UTC)  # 08:30 in Lagos

    # today's 08:00 check already alerted LOW-000; LOW-001 drops to its threshold at 08:30
    from kolaq_console.schedules import claim_slot
    claim_slot(engine, "inventory.low_stock_check", "2026-01-06T08:00", 60, now=morning)
    send_alerts(engine, settings, now=morning)
    result = adjust(engine, settings, "LOW-001", -35, "spillage", now=morning)

    assert result.low and result.alert and result.alert.queued and result.alert.follow_up
    assert result.alert.skus == ["LOW-001"]
    assert [row.idempotency_key for row in outbox(engine)] == [
        "low_stock/2026-01-06/1", "low_stock/2026-01-06/2"]


def test_adjustment_before_the_days_check_leaves_it_to_the_consolidated_alert(engine, settings):
    (pid,) = add_products(engine, 1, prefix="EARLY", threshold=5)
    add_events(engine, [(pid, 8)])
    dawn = datetime(2026, 1, 6, 5, 0, tzinfo=UTC)  # 06:00 in Lagos, before the 08:00 check

    result = adjust(engine, settings, "EARLY-000", -4, "breakage", now=dawn)

    assert result.low and result.alert is not None and not result.alert.queued
    assert outbox(engine) == []
    later = send_alerts(engine, settings, now=dawn.replace(hour=7))
    assert later.skus == ["EARLY-000"]
