"""Find orders, customers and products as an operator types: by order number (also its
digits alone: "10009" finds KB-10009), by a customer's email or name, by SKU or product name.

Every search is a case-insensitive prefix, compared as a range on lower(column) so that the
expression indexes of migration 0011 serve it on SQLite and PostgreSQL alike (a LIKE on an
expression is not index-backed on SQLite).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from kolaq_console.models import Customer, Order, Product, ProductStock, with_stock

ORD = Order.__table__  # type: ignore[attr-defined]
C = Customer.__table__  # type: ignore[attr-defined]
P = Product.__table__  # type: ignore[attr-defined]
MAX_TERM = 200


@dataclass(frozen=True)
class Match:
    kind: str  # order | customer | product
    key: str  # the order number, the customer's email, the SKU
    title: str  # what the operator sees first
    detail: str  # one line of context

    def as_dict(self) -> dict[str, str]:
        return dict(vars(self))


def normalise(term: str) -> str:
    return " ".join(term.split()).lower()[:MAX_TERM]


def _next(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def prefix_of(column: Any, prefix: str, dialect: str) -> Any:
    """lower(column) starts with `prefix` (already lower case), as an index-backed range.
    PostgreSQL compares in the "C" collation, as its index is built (byte order, so the range
    is exactly the prefix's)."""
    expr = func.lower(column)
    if dialect == "postgresql":
        expr = expr.collate("C")
    return (expr >= prefix) & (expr < _next(prefix))


def order_prefixes(conn: Session | Connection, term: str) -> list[str]:
    """What an order number typed as digits alone may start with: the term itself and the
    term after the newest order's prefix ("10009" -> "kb-10009")."""
    prefixes = [term]
    if term.isdigit():
        newest = conn.execute(select(ORD.c.number).order_by(ORD.c.id.desc()).limit(1)).scalar()
        lead = re.sub(r"\d+$", "", newest or "").lower()
        if lead:
            prefixes.append(lead + term)
    return prefixes


def find(session: Session, term: str, limit: int = 8) -> list[Match]:
    """Matches for `term`, orders first, then customers, then products; at most `limit` of
    each kind, each kind in key order."""
    term = normalise(term)
    if not term:
        return []
    dialect = session.get_bind().dialect.name
    out: list[Match] = []
    for prefix in order_prefixes(session, term):
        rows = session.execute(
            select(ORD.c.number, ORD.c.status, ORD.c.total_minor, ORD.c.currency, C.c.email)
            .join(C, C.c.id == ORD.c.customer_id, isouter=True)
            .where(prefix_of(ORD.c.number, prefix, dialect))
            .order_by(func.lower(ORD.c.number)).limit(limit)
        ).all()
        seen = {m.key for m in out}
        out.extend(Match("order", r.number, f"Order {r.number}",
                         f"{r.status} · {r.email or 'no customer'}")
                   for r in rows if r.number not in seen)
    customers: dict[str, Any] = {}
    for column in (C.c.email, C.c.name):
        for r in session.execute(
            select(C.c.email, C.c.name).where(prefix_of(column, term, dialect))
            .order_by(func.lower(column)).limit(limit)
        ).all():
            customers.setdefault(r.email, r)
    out.extend(Match("customer", r.email, f"Customer {r.name or r.email}", r.email)
               for r in list(customers.values())[:limit])
    products: dict[str, Any] = {}
    for column in (P.c.sku, P.c.name):
        for r in session.execute(
            select(P.c.sku, P.c.name, ProductStock.stock).select_from(with_stock())
            .where(prefix_of(column, term, dialect))
            .order_by(func.lower(column)).limit(limit)
        ).all():
            products.setdefault(r.sku, r)
    out.extend(Match("product", r.sku, f"Product {r.sku} {r.name}",
                         f"stock {r.stock} at the last reconcile")
               for r in list(products.values())[:limit])
    return out
