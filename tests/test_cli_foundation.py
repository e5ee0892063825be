"""CLI: db upgrade, demo, status --json and worker start-up, in-process (`cli_run`); real
processes only where the process is what is tested (test_cli_startup.py)."""

from __future__ import annotations

import json

from sqlalchemy import func
from sqlmodel import Session, select

from kolaq_console.demo import load_demo
from kolaq_console.models import Customer, InventoryEvent, Order, OrderLine, Product


def counts(engine) -> dict[str, int]:
    with Session(engine) as s:
        return {
            m.__name__: s.exec(select(func.count()).select_from(m)).one()
            for m in (Product, Customer, Order, OrderLine, InventoryEvent)
        }


def test_demo_twice_gives_the_same_shop(engine):
    first = load_demo(engine)
    after_first = counts(engine)
    second = load_demo(engine)
    assert first.changed and not second.changed
    assert counts(engine) == after_first
    assert after_first["Product"] == 40
    assert after_first["Customer"] == 200
    assert after_first["Order"] == 100
    assert 2000 <= after_first["InventoryEvent"] <= 5000


def test_demo_stock_matches_its_event_log_and_some_products_are_low(engine, settings):
    from kolaq_console.status import low_stock_products

    load_demo(engine)
    with Session(engine) as s:
        sums = dict(s.exec(select(InventoryEvent.product_id, func.sum(InventoryEvent.delta))
                           .group_by(InventoryEvent.product_id)).all())
        products = s.exec(select(Product)).all()
        assert all(p.stock_row.stock == sums[p.id] and p.stock_row.stock >= 0
                   for p in products)
        consent = s.exec(select(func.count()).where(Customer.marketing_consent)).one()
        assert 0 < consent < 200
        low = low_stock_products(s, settings.inventory.low_stock_threshold)
    assert 3 <= len(low) <= 15


def test_demo_history_is_in_time_order_and_never_sells_what_the_shelf_lacks(engine):
    """Event ids follow time (a product's history reads newest first by id), and the stock
    replayed in that order never goes below zero, order sales included."""
    load_demo(engine)
    with Session(engine) as s:
        events = s.exec(select(InventoryEvent).order_by(InventoryEvent.id)).all()
    assert [e.created_at for e in events] == sorted(e.created_at for e in events)
    level: dict[int, int] = {}
    for e in events:
        level[e.product_id] = level.get(e.product_id, 0) + e.delta
        assert level[e.product_id] >= 0, (e.id, e.reference)
    assert any(e.reference for e in events)  # the orders' sales are there


STATUS_KEYS = {"queues", "failed_jobs", "low_stock", "outbox", "messages", "storage",
               "queue_backend", "rejected_payloads"}


def test_status_json_has_the_contract_keys_on_both_backends(queue_backend, database_url,
                                                            cli_run):
    assert cli_run("db", "upgrade")[0] == 0
    code, _, err = cli_run("demo")
    assert code == 0, err
    code, out, err = cli_run("status", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == STATUS_KEYS
    assert set(doc["queues"]) == {"emails", "inventory", "webhooks"}
    for depth in doc["queues"].values():
        assert set(depth) == {"pending", "scheduled", "in_flight"}
    assert set(doc["outbox"]) == {"queued", "sent", "failed"}
    assert set(doc["messages"]) == {"queued", "sent", "failed", "unknown"}
    assert doc["storage"] == {"database": "ok", "queue": "ok"}
    assert doc["queue_backend"] == queue_backend
    assert isinstance(doc["failed_jobs"], int)
    assert doc["low_stock"] and set(doc["low_stock"][0]) == {"sku", "name", "stock", "threshold"}


def test_status_exits_1_with_the_reason_when_redis_is_down(cli_run):
    env = {"KOLAQ_QUEUE__BACKEND": "redis", "REDIS_URL": "redis://127.0.0.1:1/0"}
    assert cli_run("db", "upgrade", env=env)[0] == 0
    code, out, err = cli_run("status", "--json", env=env)
    assert code == 1
    doc = json.loads(out)  # still one JSON document for machines
    assert doc["storage"]["database"] == "ok"
    assert "127.0.0.1:1" in doc["storage"]["queue"]
    last = err.strip().splitlines()[-1]
    assert last.startswith("kolaq-console: queue storage redis://127.0.0.1:1")


def test_status_exits_1_when_the_database_is_unreachable(cli_run):
    code, _, err = cli_run(
        "status", env={"KOLAQ_DATABASE__URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert code == 1
    assert "database postgresql+psycopg://nobody@127.0.0.1:1/none" in err


def test_worker_refuses_an_out_of_date_schema_naming_the_fix(cli_run):
    code, _, err = cli_run("worker")
    assert code == 1
    assert err.strip().endswith("run `kolaq-console db upgrade`")
    assert "Traceback" not in err


def test_a_config_typo_is_one_line_on_stderr(cli_run, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[queue]\nbakend = "redis"\n')
    code, _, err = cli_run("status", env={"KOLAQ_CONFIG": str(bad)})
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "[queue] bakend: unknown setting" in lines[0]


def test_every_command_has_help(cli_run):
    for args in (["--help"], ["db", "--help"], ["db", "upgrade", "--help"], ["demo", "--help"],
                 ["status", "--help"], ["worker", "--help"], ["email", "--help"],
                 ["inventory", "--help"], ["jobs", "--help"]):
        code, out, _ = cli_run(*args)
        assert code == 0, args
        assert "Usage" in out
