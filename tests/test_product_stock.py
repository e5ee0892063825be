"""product_stock (migration 0016): one stock row per product, created with it, whose copy of
the sku the database keeps equal to the product's."""

from __future__ import annotations

import logging

from inventory_helpers import add_events, add_products
from sqlalchemy import delete, select, text, update
from sqlmodel import Session

from kolaq_console.inventory.reconcile import reconcile
from kolaq_console.models import Product, ProductStock, with_stock


def _stock_rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(ProductStock.product_id, ProductStock.sku, ProductStock.stock)
            .order_by(ProductStock.product_id))]


def test_a_new_product_gets_its_one_stock_row_in_the_same_flush(engine):
    with Session(engine) as session:
        product = Product(sku="ROW-1", name="Row one")
        session.add(product)
        session.commit()
        pid = product.id
    assert _stock_rows(engine) == [(pid, "ROW-1", 0)]


def test_a_changed_sku_is_followed_by_the_stock_row_and_a_run_reports_the_new_one(engine):
    (pid,) = add_products(engine, 1, prefix="OLD")
    reconcile(engine)
    with engine.begin() as conn:
        conn.execute(update(Product).where(Product.id == pid).values(sku="NEW-000"))
    add_events(engine, [(pid, 4)])
    result = reconcile(engine)
    assert [(c.sku, c.old, c.new) for c in result.changes] == [("NEW-000", 0, 4)]
    with engine.connect() as conn:
        joined = conn.execute(select(Product.sku, ProductStock.sku, ProductStock.stock)
                              .select_from(with_stock())).all()
    assert [tuple(r) for r in joined] == [("NEW-000", "NEW-000", 4)]


def test_deleting_a_product_deletes_its_stock_row(engine):
    a, b = add_products(engine, 2, prefix="DEL")
    with engine.begin() as conn:
        conn.execute(delete(Product).where(Product.id == a))
    assert [row[0] for row in _stock_rows(engine)] == [b]


def test_a_stock_row_for_no_product_is_refused(engine):
    import pytest
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO product_stock (product_id, sku) VALUES (999, 'NONE')"))


def test_a_full_run_gives_a_product_inserted_without_its_stock_row_one_and_folds_it(engine,
                                                                                    caplog):
    (pid,) = add_products(engine, 1, prefix="KEEP")
    with engine.begin() as conn:  # a product inserted by hand, with no stock row
        conn.execute(text("INSERT INTO products (sku, name, price_minor, currency, "
                          "low_stock_threshold, active, created_at, updated_at) SELECT "
                          "'BARE-1', 'Bare', price_minor, currency, low_stock_threshold, "
                          "active, created_at, updated_at FROM products WHERE id = :p"),
                     {"p": pid})
        bare = conn.execute(select(Product.id).where(Product.sku == "BARE-1")).scalar_one()
    add_events(engine, [(bare, 5), (bare, -2)])
    with caplog.at_level(logging.WARNING, logger="kolaq_console"):
        reconcile(engine, full=True)
        assert (bare, "BARE-1", 3) in _stock_rows(engine)
        missing = [r.getMessage() for r in caplog.records if "no stock row" in r.getMessage()]
        assert missing == ["1 product(s) had no stock row: added, and folded by this full run"]
        caplog.clear()
        reconcile(engine, full=True)  # every product has its row now: nothing to say
        assert not [r for r in caplog.records if "no stock row" in r.getMessage()]
