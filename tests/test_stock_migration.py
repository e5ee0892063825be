"""Migration 0019: product_stock loses last_reconciled_at (and, on SQLite, is rebuilt dense);
its downgrade brings the column back empty."""

from __future__ import annotations

from alembic import command
from inventory_helpers import add_events, add_products, stocks
from sqlalchemy import inspect, text

from kolaq_console.db import make_engine
from kolaq_console.inventory.reconcile import reconcile
from kolaq_console.schema import alembic_config, upgrade


def _columns(engine) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns("product_stock")}


def _pages(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM dbstat WHERE name = 'product_stock'")).scalar_one())


def test_the_stock_table_loses_its_timestamp_and_keeps_every_row_through_down_and_up(
    database_url,
):
    engine = make_engine(database_url)
    upgrade(engine)
    ids = add_products(engine, 300)
    add_events(engine, [(pid, pid % 7 + 1) for pid in ids])
    reconcile(engine)
    folded = stocks(engine)
    assert "last_reconciled_at" not in _columns(engine)
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "-1")
    assert "last_reconciled_at" in _columns(engine)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM product_stock "
                                 "WHERE last_reconciled_at IS NOT NULL")).scalar_one() == 0
        # as a run before 0019 left them: every row stamped (wider, on more pages)
        conn.execute(text("UPDATE product_stock SET last_reconciled_at = :t"),
                     {"t": "2026-12-01 02:00:00.000000"})
    sqlite = engine.dialect.name == "sqlite"
    stamped_pages = _pages(engine) if sqlite else 0
    upgrade(engine)
    assert "last_reconciled_at" not in _columns(engine)
    assert stocks(engine) == folded
    if sqlite:  # rebuilt: the narrow rows packed, not left on the pages they had
        assert _pages(engine) < stamped_pages
    engine.dispose()
