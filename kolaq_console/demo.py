"""A believable demo shop for a bitters brand. Deterministic and idempotent: rows are keyed by
SKU, email and order number, and everything is written in one transaction.

Its twelve weeks of history end today (`now`), so the last 7 days have sales and days of
cover mean something; demo_live.py adds what a running shop has (email, jobs, texts...)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kolaq_console.models import (
    ActivityLog,
    Customer,
    InventoryEvent,
    Order,
    OrderLine,
    OrderStatus,
    Product,
    WebhookEvent,
)

SEED = 20261128
FLAVOURS = [
    ("ORIG", "Original"), ("GING", "Ginger & Kola"), ("ORNG", "Bitter Orange"),
    ("HIBI", "Hibiscus"), ("CHOC", "Cocoa Nib"), ("PEPR", "Alligator Pepper"),
    ("LEMN", "Lemongrass"), ("TIGR", "Tiger Nut"),
]
SIZES = [("750", "750 ml", 1_250_000), ("375", "375 ml", 700_000), ("100", "100 ml", 250_000)]
EXTRAS = [
    ("GIFT-DUO", "Gift Set: Original & Ginger", 2_200_000),
    ("GIFT-TRIO", "Tasting Trio (3 x 100 ml)", 700_000),
    ("GIFT-XMAS", "Festive Box", 3_500_000),
    ("BAR-SPOON", "Bar Spoon", 450_000),
    ("BAR-JIGGER", "Double Jigger", 550_000),
    ("BAR-DROPPER", "Dasher Bottle", 300_000),
    ("MERCH-TEE", "Kolaq T-shirt", 900_000),
    ("MERCH-CAP", "Kolaq Cap", 650_000),
    ("BOOK-COCKTAILS", "Bitters Cocktail Book", 1_500_000),
    ("SAMPLE-KIT", "Bartender Sample Kit", 1_800_000),
    ("SYRUP-DEMERARA", "Demerara Syrup", 500_000),
    ("SYRUP-ZOBO", "Zobo Syrup", 500_000),
    ("TONIC-4PK", "Craft Tonic 4-pack", 600_000),
    ("GLASS-ROCKS", "Rocks Glass", 800_000),
    ("GLASS-COUPE", "Coupe Glass", 850_000),
    ("CORK-SET", "Replacement Cork Set", 150_000),
]
FIRST = ["Ada", "Chidi", "Ngozi", "Tunde", "Amaka", "Bayo", "Funmi", "Emeka", "Zainab", "Kemi",
         "Ife", "Obinna", "Yemi", "Halima", "Segun", "Nkechi", "Dayo", "Uche", "Bisi", "Musa"]
LAST = ["Okafor", "Adeyemi", "Bello", "Eze", "Okonkwo", "Balogun", "Nwosu", "Ibrahim", "Ojo",
        "Abubakar"]
CITIES = ["Lagos", "Abuja", "Port Harcourt", "Ibadan", "Enugu", "Kano"]
STATUSES = [OrderStatus.pending, OrderStatus.paid, OrderStatus.processing, OrderStatus.shipped,
            OrderStatus.delivered, OrderStatus.delivered, OrderStatus.delivered,
            OrderStatus.cancelled]
HISTORY_DAYS = 84  # twelve weeks of sales and restocks, ending today


def history_start(now: datetime) -> datetime:
    """09:00 UTC, twelve weeks before `now`'s day: the shop's first day in the demo."""
    return now.replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=HISTORY_DAYS)


@dataclass
class DemoResult:
    products: int = 0
    customers: int = 0
    orders: int = 0
    events: int = 0
    webhooks: int = 0

    @property
    def changed(self) -> bool:
        return any((self.products, self.customers, self.orders, self.events, self.webhooks))


Progress = Callable[[str, int, int], None]


def _catalogue() -> list[tuple[str, str, int]]:
    items = [
        (f"KB-{code}-{size}", f"Kolaq {flavour} Bitters {label}", price)
        for code, flavour in FLAVOURS
        for size, label, price in SIZES
    ]
    return items + [(f"KB-{sku}", name, price) for sku, name, price in EXTRAS]


def load_demo(engine: Engine, progress: Progress | None = None, actor: str = "demo",
              now: datetime | None = None) -> DemoResult:
    """Insert what is missing of the demo shop, its history ending at `now` (default: now);
    a second run changes nothing."""
    now = now or datetime.now(UTC)
    start = history_start(now)
    rng = random.Random(SEED)
    report = progress or (lambda _stage, _done, _total: None)
    result = DemoResult()
    with Session(engine) as session, session.begin():
        catalogue = _catalogue()
        existing = {p.sku: p for p in session.exec(select(Product)).all()}
        new_products: list[Product] = []
        for i, (sku, name, price) in enumerate(catalogue):
            threshold = 5 if sku.startswith("KB-BAR") else None
            if sku not in existing:
                product = Product(sku=sku, name=name, price_minor=price,
                                  low_stock_threshold=threshold)
                session.add(product)
                new_products.append(product)
            report("products", i + 1, len(catalogue))
        session.flush()
        result.products = len(new_products)
        products = {p.sku: p for p in session.exec(select(Product)).all()}

        emails = {c.email for c in session.exec(select(Customer)).all()}
        customers = []
        for i in range(200):
            first, last = FIRST[i % len(FIRST)], LAST[(i * 7) % len(LAST)]
            email = f"{first.lower()}.{last.lower()}{i}@example.com"
            consent = rng.random() < 0.6
            if email not in emails:
                customers.append(Customer(
                    email=email, name=f"{first} {last}", marketing_consent=consent,
                    created_at=start + timedelta(hours=i * 7),
                    unsubscribed_at=start + timedelta(days=30) if consent and i % 23 == 0 else None,
                ))
            report("customers", i + 1, 200)
        session.add_all(customers)
        session.flush()
        result.customers = len(customers)
        all_customers = session.exec(select(Customer).order_by(Customer.id)).all()

        events: list[dict] = []
        level: dict[int | None, int] = {}
        for n, p in enumerate(new_products):
            # Opening stock, weekly walk-in sales, restocks when running low; every fifth product
            # is left without its last restock so the demo has low stock to show.
            leave_low = n % 5 == 2
            level[p.id] = rng.randint(60, 160)
            events.append(_event(p.id, level[p.id], "restock", "opening stock", start))
            for week in range(12):
                when = start + timedelta(days=7 * week + rng.randint(0, 6))
                for _ in range(rng.randint(3, 6)):
                    qty = min(rng.randint(1, 4), level[p.id])
                    if qty:
                        level[p.id] -= qty
                        events.append(_event(p.id, -qty, "sale", "walk-in sale", when))
                if level[p.id] < 30 and not (leave_low and week > 6):
                    qty = rng.randint(40, 80)
                    level[p.id] += qty
                    events.append(_event(p.id, qty, "restock", "supplier delivery", when))
                if rng.random() < 0.1:
                    level[p.id] += 1
                    events.append(_event(p.id, 1, "return", "customer return", when))

        numbers = {o.number for o in session.exec(select(Order)).all()}
        orders = 0
        skus = list(products)
        for i in range(100):
            number = f"KB-{10001 + i}"
            created = start + timedelta(hours=19 * i + rng.randint(0, 12))
            status = STATUSES[rng.randrange(len(STATUSES))]
            lines = rng.sample(skus, rng.randint(1, 3))
            quantities = [rng.randint(1, 3) for _ in lines]
            customer = all_customers[rng.randrange(len(all_customers))]
            if number in numbers:
                report("orders", i + 1, 100)
                continue
            pairs = list(zip(lines, quantities, strict=True))
            subtotal = sum(products[s].price_minor * q for s, q in pairs)
            shipping = 250_000 if subtotal < 5_000_000 else 0
            paid = status not in (OrderStatus.pending, OrderStatus.cancelled)
            order = Order(
                number=number, customer_id=customer.id, status=status.value, currency="NGN",
                subtotal_minor=subtotal, shipping_minor=shipping, total_minor=subtotal + shipping,
                shipping_address={"name": customer.name, "line1": f"{i + 3} Marina Road",
                                  "city": CITIES[i % len(CITIES)], "country": "NG"},
                payment_provider="paystack" if i % 3 else "stripe",
                payment_reference=f"PSK-{SEED % 1000}-{10001 + i}" if paid else None,
                payment_status="paid" if paid else "unpaid",
                carrier="GIG Logistics" if status in (OrderStatus.shipped, OrderStatus.delivered)
                else None,
                tracking_number=f"GIG{7000000 + i}" if status in (OrderStatus.shipped,
                                                                   OrderStatus.delivered)
                else None,
                created_at=created, updated_at=created, paid_at=created if paid else None,
            )
            session.add(order)
            session.flush()
            for sku, qty in zip(lines, quantities, strict=True):
                product = products[sku]
                session.add(OrderLine(order_id=order.id, product_id=product.id, sku=sku,
                                      name=product.name, quantity=qty,
                                      unit_price_minor=product.price_minor))
                if paid and product.id in level:
                    events.append(_event(product.id, -qty, "sale", None, created, number))
            orders += 1
            report("orders", i + 1, 100)
        result.orders = orders
        events = _in_time_order(events)

        for chunk in range(0, len(events), 1000):
            session.execute(insert(InventoryEvent), events[chunk:chunk + 1000])
            report("inventory events", min(chunk + 1000, len(events)), len(events))
        result.events = len(events)

        # Fold the new events into stored stock, as a one-product reconcile would: each new
        # product's cache covers its events up to the last event id (see
        # ProductStock.stock_event_id; nothing else can add events of a product not committed
        # yet). Its reconciled time is then that event's (inventory.stock.reconciled_times):
        # the demo's latest.
        totals: dict[int, int] = {}
        for e in events:
            totals[e["product_id"]] = totals.get(e["product_id"], 0) + e["delta"]
        last_event = session.exec(select(func.max(InventoryEvent.id))).one() or 0
        for p in new_products:
            p.stock_row.stock = totals.get(p.id, 0)
            p.stock_row.stock_event_id = last_event
        result.webhooks = load_payments_demo(session, start)
        if result.changed:
            session.add(ActivityLog(actor=actor, action="demo.load", entity="shop",
                                    details={"products": result.products,
                                             "customers": result.customers,
                                             "orders": result.orders, "events": result.events,
                                    "webhooks": result.webhooks}))
    return result


def _in_time_order(events: list[dict]) -> list[dict]:
    """The events as they happened (ids follow time, as in a running shop), each sale checked
    against the stock at its moment: a walk-in takes what is left, an order's sale that the
    shelf could not cover is left out (the order stays, as one paid from other stock)."""
    level: dict[int | None, int] = {}
    kept = []
    for e in sorted(events, key=lambda e: e["created_at"]):  # stable: same-time order kept
        have = level.get(e["product_id"], 0)
        if e["delta"] < 0 and have + e["delta"] < 0:
            if e["reference"] is not None or not have:
                continue
            e = {**e, "delta": -have}
        level[e["product_id"]] = have + e["delta"]
        kept.append(e)
    return kept


def _event(product_id: int | None, delta: int, kind: str, note: str | None, when: datetime,
           reference: str | None = None) -> dict:
    return {"product_id": product_id, "delta": delta, "kind": kind, "note": note,
            "reference": reference, "actor": "demo", "created_at": when}


def _provider_reference(order: Order) -> str:
    if order.payment_provider == "stripe":
        return f"pi_demo{order.number.removeprefix('KB-')}"
    return f"PSK-{SEED % 1000}-{order.number.removeprefix('KB-')}"


def load_payments_demo(session: Session, start: datetime) -> int:
    """What the webhook receiver would have left: payment references on unpaid orders (so a
    test payment can be sent to them), tracking links on shipped ones, and stored webhook
    events in every state (payments processed, a mismatch flagged, a bounce, an ignored type;
    the delivery news of the order emails comes with those emails, in demo_live).
    Idempotent: events are keyed by (provider, event id), fields filled only if empty.
    Returns the number of events added."""
    from kolaq_console.emails.render import money

    orders = session.exec(select(Order).order_by(col(Order.id))).all()
    for order in orders:
        if order.payment_reference is None and order.status in ("pending", "cancelled"):
            order.payment_reference = _provider_reference(order)
        if order.tracking_number and not order.tracking_url:
            order.tracking_url = f"https://giglogistics.example/track/{order.tracking_number}"
        session.add(order)
    existing = {(e.provider, e.event_id) for e in session.exec(select(WebhookEvent)).all()}
    customers = {c.id: c.email for c in session.exec(select(Customer)).all()}
    # The newest orders: the webhooks screen shows this week's payments, not last quarter's.
    paid = [o for o in orders if o.paid_at is not None][-12:]
    pending = [o for o in orders if o.status == "pending"][-1:]
    rows: list[WebhookEvent] = []

    def add(provider: str, event_id: str, kind: str, payload: dict, status: str,
            at: datetime, order: Order | None = None, error: str | None = None) -> None:
        if (provider, event_id) in existing:
            return
        rows.append(WebhookEvent(provider=provider, event_id=event_id, event_type=kind,
                                 payload=payload, status=status, error=error, attempts=1,
                                 order_id=order.id if order else None, received_at=at,
                                 processed_at=at + timedelta(seconds=2)))

    for order in paid:
        at = order.paid_at or order.created_at
        if order.payment_provider == "stripe":
            reference = order.payment_reference or _provider_reference(order)
            add("stripe", f"evt_demo_{order.number}", "payment_intent.succeeded",
                {"type": "payment_intent.succeeded", "data": {"object": {
                    "id": reference, "amount_received": order.total_minor,
                    "currency": order.currency.lower(),
                    "metadata": {"order_number": order.number}}}}, "processed", at, order)
        else:
            add("paystack", f"charge.success:{order.id + 4_000_000}", "charge.success",
                {"event": "charge.success", "data": {
                    "id": order.id + 4_000_000, "status": "success",
                    "reference": order.payment_reference, "amount": order.total_minor,
                    "currency": order.currency}}, "processed", at, order)
    for order in pending:
        add("paystack", f"charge.success:{order.id + 5_000_000}", "charge.success",
            {"event": "charge.success", "data": {
                "id": order.id + 5_000_000, "status": "success",
                "reference": order.payment_reference, "amount": order.total_minor - 50_000,
                "currency": order.currency}}, "flagged", order.created_at + timedelta(hours=1),
            order, f"amount mismatch: paid {money(order.total_minor - 50_000, order.currency)},"
                   f" order {order.number} is {money(order.total_minor, order.currency)}")
    if paid:
        bounced = customers.get(paid[-1].customer_id, "")
        add("resend", "msg_demo_bounce", "email.bounced",
            {"type": "email.bounced", "data": {
                "email_id": "demo-bounce", "to": [bounced],
                "bounce": {"type": "Permanent", "subType": "General",
                           "message": "mailbox does not exist"}}},
            "processed", start + timedelta(days=HISTORY_DAYS - 2), None, None)
        if ("resend", "msg_demo_bounce") not in existing and bounced:
            from kolaq_console import consent

            consent.suppress(session, bounced, "bounced", source="resend:msg_demo_bounce",
                             actor="demo")
    add("stripe", "evt_demo_customer_created", "customer.created",
        {"type": "customer.created", "data": {"object": {"id": "cus_demo"}}}, "ignored",
        start + timedelta(days=HISTORY_DAYS - 1), None, "stripe customer.created is not acted on")
    rows.sort(key=lambda r: r.received_at)  # ids in arrival order, as the receiver stores them
    session.add_all(rows)
    session.flush()
    return len(rows)
