"""Three real consumer processes, each enqueueing every periodic task: each slot runs once."""

from __future__ import annotations

import re

import pytest
from helpers import wait_until
from inventory_helpers import activity, add_events, add_products, outbox, schedule_rows

from kolaq_console.inventory import periodic as jobs
from kolaq_console.inventory.lowstock import CHECK_JOB
from kolaq_console.inventory.reconcile import ACTION_RUN

EVERY_MINUTE = {
    # every consumer enqueues these as it starts (Huey checks periodic tasks at start-up and
    # then every 60 s): the scheduled check, the nightly reconcile and the catch-up all fire
    "KOLAQ_INVENTORY__LOW_STOCK_CRON": "* * * * *",
    "KOLAQ_INVENTORY__RECONCILE_CRON": "* * * * *",
    "KOLAQ_INVENTORY__CATCH_UP_CRON": "* * * * *",
}


def _executed(procs, task: str) -> int:
    pattern = re.compile(rf"tasks\.{task}: [^\n]* executed in")
    return sum(len(pattern.findall(p.output())) for p in procs)


@pytest.mark.slow
def test_three_consumers_run_each_slot_once_and_send_one_alert(queue_backend, engine, spawn):
    ids = add_products(engine, 4, threshold=5)
    add_events(engine, [(ids[0], 2), (ids[1], 3), (ids[2], 50)])

    procs = [spawn("worker", "-w", "2", env=EVERY_MINUTE, name=f"consumer{i}") for i in range(3)]

    def all_ran() -> bool:
        return all(_executed(procs, t) >= 3 for t in
                   ("low_stock_check", "nightly_reconcile", "inventory_catch_up"))

    wait_until(all_ran, timeout=60, message="every consumer's periodic tasks to run")
    for p in procs:  # each consumer enqueued its own copy of the scheduled check
        assert "Enqueueing periodic task tasks.low_stock_check" in p.output()
    for p in procs:
        assert p.stop() == 0, p.output()[-2000:]

    # nine or more attempts at the check and at the reconcile, a slot per minute they
    # straddled (one or two), each slot run exactly once
    check_slots = schedule_rows(engine, CHECK_JOB)
    reconcile_slots = (schedule_rows(engine, jobs.RECONCILE_JOB)
                       + schedule_rows(engine, jobs.FULL_RECONCILE_JOB))
    assert 1 <= len(check_slots) <= 2 and 1 <= len(reconcile_slots) <= 3
    assert all(r.finished_at is not None for r in check_slots + reconcile_slots)
    assert len(activity(engine, ACTION_RUN)) == len(reconcile_slots)
    (alert,) = outbox(engine)  # one alert for the day, however many slots ran the check
    assert alert.kind == "low_stock" and alert.idempotency_key.endswith("/1")
    assert "SKU-000" in alert.text and "SKU-001" in alert.text and "SKU-002" not in alert.text
