"""Who a broadcast goes to, net of unsubscribed and suppressed addresses.

- `subscribers`: customers who gave marketing consent and have not withdrawn it;
- `customers`: everyone who placed an order and has not unsubscribed;
- `sku:SKU`: everyone who bought that product (a paid order holding it), not unsubscribed;
- `admin`: the admin address (`[email] admin_email`), for a rehearsal to oneself.
Every audience leaves out addresses on the suppression list, whatever the reason.
The same query counts (the composer's figure) and materialises (the recipients' rows), so the
count shown is the count sent, unless consent changes in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, literal, select
from sqlmodel import Session, col

from kolaq_console.config import Settings
from kolaq_console.errors import NotFound, UserError
from kolaq_console.models import Customer, Order, OrderLine, OrderStatus, Product, Suppression

NAMES = ("subscribers", "customers", "admin", "sku:SKU")
# An order that reached the buyer's money: these count as having bought its products.
BOUGHT = (OrderStatus.paid.value, OrderStatus.processing.value, OrderStatus.shipped.value,
          OrderStatus.delivered.value)


@dataclass(frozen=True)
class Audience:
    kind: str  # subscribers, customers, admin, sku
    sku: str | None = None

    @property
    def name(self) -> str:
        return f"sku:{self.sku}" if self.kind == "sku" else self.kind


def parse(value: str | None) -> Audience:
    """`subscribers`, `customers`, `admin` or `sku:SKU`; a UserError otherwise."""
    text = (value or "").strip()
    if text in ("subscribers", "customers", "admin"):
        return Audience(text)
    if text.startswith("sku:") and text[4:].strip():
        return Audience("sku", text[4:].strip())
    raise UserError(f"unknown audience {value!r}; expected one of: {', '.join(NAMES)}")


def _not_suppressed(address):
    return address.not_in(select(Suppression.email))


def query(session: Session, settings: Settings, audience: Audience) -> Select:
    """SELECT (normalised address, customer id) of every recipient, one row per address."""
    email = func.lower(col(Customer.email))
    base = select(email.label("email"), func.min(Customer.id).label("customer_id"))
    not_withdrawn = (col(Customer.unsubscribed_at).is_(None), _not_suppressed(email))
    if audience.kind == "subscribers":
        stmt = base.where(col(Customer.marketing_consent).is_(True), *not_withdrawn)
    elif audience.kind == "customers":
        ordered = select(Order.customer_id)
        stmt = base.where(col(Customer.id).in_(ordered), *not_withdrawn)
    elif audience.kind == "sku":
        product = session.execute(
            select(Product.id).where(col(Product.sku) == audience.sku)
        ).scalar_one_or_none()
        if product is None:
            raise NotFound(f"no product with SKU {audience.sku!r}")
        bought = (
            select(Order.customer_id)
            .join(OrderLine, col(OrderLine.order_id) == col(Order.id))
            .where(col(OrderLine.product_id) == product, col(Order.status).in_(BOUGHT))
        )
        stmt = base.where(col(Customer.id).in_(bought), *not_withdrawn)
    else:  # admin
        address = settings.email.admin_email.strip().lower()
        customer = select(func.min(Customer.id)).where(email == address).scalar_subquery()
        return select(literal(address).label("email"), customer.label("customer_id")).where(
            _not_suppressed(literal(address))
        )
    return stmt.group_by(email)


def count(session: Session, settings: Settings, audience: Audience) -> int:
    """How many addresses the broadcast would go to now."""
    inner = query(session, settings, audience).subquery()
    return int(session.execute(select(func.count()).select_from(inner)).scalar_one())
