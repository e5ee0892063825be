"""Schedules on the shop's clock, once per slot, and the catch-up of a missed 08:00 check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from inventory_helpers import activity, add_events, add_products, outbox, schedule_rows

from kolaq_console.config import ConfigError
from kolaq_console.cron import CronError, parse_cron
from kolaq_console.inventory import periodic as jobs
from kolaq_console.inventory.lowstock import CHECK_JOB
from kolaq_console.inventory.reconcile import ACTION_RUN
from kolaq_console.schedules import ShopCrontab, claim_slot, run_in_slot, slot_key

LAGOS = ZoneInfo("Africa/Lagos")


# --- cron expressions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 25 * * *", "hour: 25 is out of range 0-23"),
        ("61 2 * * *", "minute: 61 is out of range 0-59"),
        ("0 2 * *", "expected 5 fields 'minute hour day month weekday', got 4"),
        ("x 2 * * *", "minute: 'x' is not a number"),
        ("0 2 * foo *", "month: 'foo' is not a number or a name (jan-dec)"),
        ("0 2 5-1 * *", "day of month: range '5-1' starts after it ends"),
        ("0 2 * * 1#2", "day of week: '1#2' is not a value, range"),
        ("@sometimes", "unknown alias '@sometimes'"),
    ],
)
def test_bad_cron_expressions_are_refused_naming_the_field(expr, message):
    with pytest.raises(CronError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_cron(expr)


def test_cron_reads_names_steps_lists_and_sunday_as_7():
    cron = parse_cron("*/15 8-18/5 * jan,jul sun,7")
    assert cron.minutes == {0, 15, 30, 45} and cron.hours == {8, 13, 18}
    assert cron.months == {1, 7} and cron.weekdays == {0}
    weekday_or_day = parse_cron("0 2 1 * mon")  # both restricted: either matches (cron rule)
    assert weekday_or_day.matches(datetime(2026, 1, 5, 2, 0))  # a Monday, not the 1st
    assert weekday_or_day.matches(datetime(2026, 1, 1, 2, 0))  # the 1st, a Thursday
    assert not weekday_or_day.matches(datetime(2026, 1, 6, 2, 0))


def test_a_bad_cron_in_config_names_the_setting(make_settings, tmp_path):
    with pytest.raises(ConfigError, match=r"KOLAQ_INVENTORY__RECONCILE_CRON.*hour: 25"):
        make_settings(inventory__reconcile_cron="0 25 * * *")
    config = tmp_path / "config.toml"
    config.write_text('[inventory]\nlow_stock_cron = "0 8 * *"\n')
    with pytest.raises(ConfigError, match=r"config.toml: \[inventory\] low_stock_cron.*5 fields"):
        make_settings(KOLAQ_CONFIG=str(config))


# --- the shop's clock under Huey's UTC -------------------------------------------------------


def _fires(huey, zone: str, expr: str, utc: datetime) -> bool:
    """Whether Huey, at this UTC instant, would enqueue a periodic task on `expr` in `zone`."""
    name = f"job_{abs(hash((zone, expr)))}"
    if name not in {t.name for t in huey._registry.periodic_tasks}:
        huey.periodic_task(ShopCrontab(expr, ZoneInfo(zone)), name=name)(lambda: None)
    with time_machine.travel(utc, tick=False):
        return name in {t.name for t in huey.read_periodic(None)}  # Huey's own utcnow()


@pytest.mark.parametrize(
    ("zone", "fires_at_utc", "not_at_utc"),
    [
        ("Africa/Lagos", datetime(2026, 1, 15, 1, 0), datetime(2026, 1, 15, 2, 0)),
        ("Africa/Lagos", datetime(2026, 7, 15, 1, 0), datetime(2026, 7, 15, 2, 0)),
        ("Europe/London", datetime(2026, 1, 15, 2, 0), datetime(2026, 1, 15, 1, 0)),
        ("Europe/London", datetime(2026, 7, 15, 1, 0), datetime(2026, 7, 15, 2, 0)),
        ("America/New_York", datetime(2026, 1, 15, 7, 0), datetime(2026, 1, 15, 6, 0)),
        ("America/New_York", datetime(2026, 7, 15, 6, 0), datetime(2026, 7, 15, 7, 0)),
    ],
)
def test_0200_on_the_shops_clock_fires_at_the_right_utc_minute(huey, zone, fires_at_utc,
                                                               not_at_utc):
    assert _fires(huey, zone, "0 2 * * *", fires_at_utc.replace(tzinfo=UTC))
    assert not _fires(huey, zone, "0 2 * * *", not_at_utc.replace(tzinfo=UTC))


def test_tasks_module_schedules_fire_on_lagos_time():
    import tasks

    def due(utc: datetime) -> set[str]:
        with time_machine.travel(utc, tick=False):
            return {t.name for t in tasks.huey.read_periodic(None)}

    assert "nightly_reconcile" in due(datetime(2026, 1, 15, 1, 0, tzinfo=UTC))  # 02:00 Lagos
    assert "nightly_reconcile" not in due(datetime(2026, 1, 15, 2, 0, tzinfo=UTC))
    assert "low_stock_check" in due(datetime(2026, 1, 15, 7, 0, tzinfo=UTC))  # 08:00 Lagos
    assert "full_reconcile" in due(datetime(2026, 1, 18, 1, 30, tzinfo=UTC))  # Sunday 02:30


def test_daylight_saving_gap_skips_and_repeat_is_one_slot(sqlite_engine):
    london = ShopCrontab("30 1 * * *", ZoneInfo("Europe/London"))
    # 2026-03-29: clocks go 01:00 -> 02:00; 01:30 does not exist that day
    spring = [datetime(2026, 3, 29, 0, 0, tzinfo=UTC) + timedelta(minutes=m)
              for m in range(0, 180)]
    assert not any(london(t) for t in spring)
    # 2026-10-25: 01:30 happens twice (BST then GMT): both minutes match, as one slot
    autumn = [t for t in (datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
                          datetime(2026, 10, 25, 1, 30, tzinfo=UTC)) if london(t)]
    assert len(autumn) == 2
    keys = {slot_key(t.astimezone(london.zone)) for t in autumn}
    assert keys == {"2026-10-25T01:30"}
    assert claim_slot(sqlite_engine, "dst", "2026-10-25T01:30", 60)
    assert not claim_slot(sqlite_engine, "dst", "2026-10-25T01:30", 60)


def test_latest_slot_is_todays_last_match_on_the_local_clock():
    check = ShopCrontab("0 8 * * *", LAGOS)
    assert check.latest_slot(datetime(2026, 1, 6, 6, 59, tzinfo=UTC)) is None  # 07:59 Lagos
    slot = check.latest_slot(datetime(2026, 1, 6, 8, 30, tzinfo=UTC))  # 09:30 Lagos
    assert slot is not None and slot_key(slot) == "2026-01-06T08:00"
    late = check.latest_slot(datetime(2026, 1, 6, 22, 59, tzinfo=UTC))  # 23:59 Lagos
    assert late is not None and slot_key(late) == "2026-01-06T08:00"


# --- once per slot ---------------------------------------------------------------------------


def test_a_failed_run_releases_its_slot_and_a_crashed_claim_is_taken_over(sqlite_engine):
    every = ShopCrontab("* * * * *", LAGOS)
    now = datetime(2026, 1, 6, 7, 0, tzinfo=UTC)

    def boom() -> dict:
        raise RuntimeError("flaky")

    with pytest.raises(RuntimeError):
        run_in_slot(sqlite_engine, "job", every, boom, stale_after=60, now=now)
    retry = run_in_slot(sqlite_engine, "job", every, lambda: {"ok": 1}, stale_after=60, now=now)
    assert retry.ran and retry.slot == "2026-01-06T08:00"

    assert claim_slot(sqlite_engine, "crash", "s", 60, now=now)  # then the process died
    assert not claim_slot(sqlite_engine, "crash", "s", 60, now=now + timedelta(seconds=30))
    assert claim_slot(sqlite_engine, "crash", "s", 60, now=now + timedelta(seconds=61))


def test_scheduled_job_runs_once_per_slot_however_often_it_is_called(engine, settings):
    ids = add_products(engine, 2, threshold=5)
    add_events(engine, [(ids[0], 2)])
    at_0800 = datetime(2026, 1, 6, 7, 0, 20, tzinfo=UTC)

    outcomes = [jobs.run_scheduled(engine, settings, CHECK_JOB, now=at_0800 + timedelta(
        seconds=i)) for i in range(3)]

    assert [o.ran for o in outcomes] == [True, False, False]
    assert [r.slot for r in schedule_rows(engine, CHECK_JOB)] == ["2026-01-06T08:00"]
    assert len(outbox(engine)) == 1


# --- catch-up --------------------------------------------------------------------------------


def _catch_up_at(engine, settings, utc: datetime) -> dict:
    with time_machine.travel(utc, tick=False):  # the jobs read the (frozen) real clock
        return jobs.catch_up(engine, settings)


def test_missed_0800_check_runs_once_when_a_consumer_comes_up_later_that_day(engine, settings):
    ids = add_products(engine, 3, threshold=5)
    add_events(engine, [(ids[0], 1), (ids[1], 50)])
    early = _catch_up_at(engine, settings, datetime(2026, 1, 6, 6, 30, tzinfo=UTC))
    # 07:30 Lagos: the missed 02:00 reconcile runs, the 08:00 check is not due yet
    assert early[jobs.RECONCILE_JOB]["ran"] and not early[CHECK_JOB]["ran"]
    assert outbox(engine) == []

    up_at = datetime(2026, 1, 6, 9, 40, tzinfo=UTC)  # 10:40 Lagos: 08:00 was missed
    first = _catch_up_at(engine, settings, up_at)
    second = _catch_up_at(engine, settings, up_at + timedelta(minutes=5))

    assert first[CHECK_JOB]["ran"] and first[CHECK_JOB]["slot"] == "2026-01-06T08:00"
    assert not first[jobs.RECONCILE_JOB]["ran"]  # its slot already ran at 07:30
    assert not second[CHECK_JOB]["ran"] and not second[jobs.RECONCILE_JOB]["ran"]
    (row,) = outbox(engine)
    assert row.idempotency_key == "low_stock/2026-01-06/1"
    assert len(activity(engine, ACTION_RUN)) == 1
    next_day = _catch_up_at(engine, settings, up_at + timedelta(days=1))
    assert next_day[CHECK_JOB]["slot"] == "2026-01-07T08:00" and next_day[CHECK_JOB]["ran"]


def test_inventory_tasks_are_on_the_inventory_queue_and_retry_with_the_configured_backoff(
        settings):
    import tasks
    from kolaq_console.taskqueue import queue_for_priority

    q = tasks.settings.queue
    for task in (tasks.reconcile_inventory, tasks.nightly_reconcile, tasks.full_reconcile,
                 tasks.low_stock_check):
        t = task.s()
        assert queue_for_priority(t.priority) == "inventory"
        assert (t.retries, t.retry_delay) == (q.retries, q.retry_delay)
        assert t.retry_backoff == q.retry_backoff
    assert queue_for_priority(tasks.inventory_catch_up.s().priority) == "inventory"


def test_reconcile_task_fails_at_once_for_an_unknown_sku(sqlite_engine, settings):
    from kolaq_console.errors import PermanentJobError

    with pytest.raises(PermanentJobError, match="unknown SKU 'NOPE'"):
        jobs.reconcile_now(sqlite_engine, settings, sku="NOPE")
