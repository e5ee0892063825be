"""The audit trail for the Activity screen: filters by actor, action and subject; each entry
names the record it is about."""

from __future__ import annotations

from sqlmodel import Session

from kolaq_console.activity import list_activity
from kolaq_console.models import ActivityLog


def log(engine, *entries: tuple[str, str, str, str | None]) -> None:
    with Session(engine) as session:
        for actor, action, entity, entity_id in entries:
            session.add(ActivityLog(actor=actor, action=action, entity=entity,
                                    entity_id=entity_id, details={"n": 1}))
        session.commit()


def test_filters_by_actor_action_prefix_and_subject_newest_first(sqlite_engine):
    log(sqlite_engine,
        ("ada", "inventory.adjust", "product", "KB-ORNG-375"),
        ("scheduler", "inventory.reconcile", "product", "KB-ORNG-375"),
        ("ada", "order.status", "order", "KB-10004"),
        ("bola", "jobs.retry", "failed_jobs", "3,4"))
    with Session(sqlite_engine) as session:
        everything = list_activity(session)
        by_ada = list_activity(session, actor="ADA")
        inventory = list_activity(session, action="inventory")
        about_order = list_activity(session, subject="KB-10004")
        products = list_activity(session, subject="product")
        both = list_activity(session, actor="ada", action="inventory")
    assert [e.action for e in everything] == ["jobs.retry", "order.status",
                                              "inventory.reconcile", "inventory.adjust"]
    assert {e.actor for e in by_ada} == {"ada"} and len(by_ada) == 2
    assert {e.action for e in inventory} == {"inventory.adjust", "inventory.reconcile"}
    assert [e.subject for e in about_order] == ["order KB-10004"]
    assert len(products) == 2
    assert [e.action for e in both] == ["inventory.adjust"]


def test_an_entry_names_the_record_to_open_only_when_it_is_one(sqlite_engine):
    log(sqlite_engine,
        ("ada", "inventory.adjust", "product", "KB-ORNG-375"),
        ("ada", "email.resend", "email_outbox", "12"),
        ("bola", "jobs.retry", "failed_jobs", "3,4"),
        ("demo", "demo.load", "shop", None))
    with Session(sqlite_engine) as session:
        records = [e.record for e in list_activity(session)]
    assert records == [None, None, ("email", "12"), ("product", "KB-ORNG-375")]


def test_entries_are_ordered_by_when_they_happened_not_when_they_were_written(sqlite_engine):
    from datetime import timedelta

    from kolaq_console.models import utcnow

    now = utcnow()
    with Session(sqlite_engine) as session:
        session.add(ActivityLog(actor="ada", action="order.status", entity="order",
                                entity_id="KB-10001", created_at=now))
        session.add(ActivityLog(actor="import", action="order.status", entity="order",
                                entity_id="KB-10000", created_at=now - timedelta(days=3)))
        session.commit()
        entries = list_activity(session)
    assert [e.actor for e in entries] == ["ada", "import"]


def test_an_entrys_summary_reads_as_text_not_as_python():
    from datetime import UTC, datetime

    from kolaq_console.activity import ActivityEntry

    def entry(details: dict) -> ActivityEntry:
        return ActivityEntry(id=1, at=datetime(2026, 12, 1, tzinfo=UTC), actor="ops",
                             action="jobs.retry", entity="failed_jobs", entity_id="2",
                             details=details)

    assert entry({"count": 1, "filter": {"ids": [2]}, "retried_as": [], "note": None}
                 ).summary() == "count 1, filter ids 2, retried_as -, note -"
    skipped = [f"#{i}: gone" for i in range(1, 7)]
    assert entry({"skipped": skipped}).summary() == (
        "skipped #1: gone, #2: gone, #3: gone, #4: gone, #5: gone (+1)")
