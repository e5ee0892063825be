"""SQLModel tables. Money is integer minor units (kobo, cents); times are aware UTC.

Every change to these tables needs an Alembic migration (see migrations/README.md).

Longer than ~400 lines on purpose: every table beside the others in one metadata, which
Alembic's autogenerate and tests/test_schema.py compare with the migrations.
"""

from __future__ import annotations

import copy
import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    Join,
    LargeBinary,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    text,
)
from sqlmodel import Field, Relationship, SQLModel


def pg_index(name: str, expression: str) -> Index:
    """An expression index declared for PostgreSQL only (which reflects and compares them);
    migration 0011 builds SQLite's own version of the same lookup index."""
    return Index(name, text(expression)).ddl_if(dialect="postgresql")


def _prefix(name: str, column: str) -> Index:
    # Prefix searches compare lower(column) as a range in the "C" collation (lookup/search.py);
    # migration 0011 builds the index with COLLATE "C", which PostgreSQL's reflection (and so
    # Alembic's comparison) leaves out: declared here as it is compared.
    return pg_index(name, f"lower({column})")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC (SQLite has no zones), always returned aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def ts(nullable: bool = True, index: bool = False, default: bool = False) -> Any:
    """A UTC timestamp column; `default=True` fills it with now()."""
    extra: dict[str, Any] = {"default_factory": utcnow} if default else {"default": None}
    return Field(
        **extra,
        sa_column_kwargs={"nullable": nullable},
        sa_type=UTCDateTime,
        index=index,
    )


def json_field(default: Any = None) -> Any:
    return Field(
        default_factory=lambda: copy.deepcopy(default),
        sa_column=Column(JSON, nullable=default is None),
    )


def text_field(nullable: bool = True) -> Any:
    return Field(default=None if nullable else "", sa_column=Column(Text, nullable=nullable))


def bytes_field() -> Any:
    return Field(default=None, sa_column=Column(LargeBinary, nullable=True))


# --- catalogue and stock ---------------------------------------------------------------------


class Product(SQLModel, table=True):
    """A catalogue entry. Its stored stock is in `product_stock` (`stock_row`), one row per
    product, created with it: reconciliation rewrites ~1,000 stocks a run, and a narrow table
    keeps that to its own pages (~140 for 10,000 products) instead of most of this wide
    table's (bench/README.md)."""

    __tablename__ = "products"
    # uq_products_id_sku: the key product_stock's copy of the sku refers to (migration 0016)
    __table_args__ = (_prefix("ix_products_sku_prefix", "sku"),
                      _prefix("ix_products_name_prefix", "name"),
                      Index("uq_products_id_sku", "id", "sku", unique=True),
                      {"postgresql_with": {"fillfactor": 85}})

    id: int | None = Field(default=None, primary_key=True)
    sku: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    price_minor: int = Field(default=0, ge=0)
    currency: str = Field(default="NGN", max_length=3)
    low_stock_threshold: int | None = None  # None: the global default
    active: bool = Field(default=True, index=True)
    created_at: datetime = ts(nullable=False, default=True)
    updated_at: datetime = ts(nullable=False, default=True)
    # Loaded with the product (one inner join); a new Product gets an empty one (see below).
    stock_row: ProductStock = Relationship(sa_relationship_kwargs={
        "lazy": "joined", "innerjoin": True, "uselist": False,
        "cascade": "all, delete-orphan"})


class ProductStock(SQLModel, table=True):
    """A product's stored stock: a cache of the sum of its inventory events, as of the last
    reconciliation (the event log is the truth; inventory/stock.py states the contract).
    Narrow on purpose: what a reconciliation reads and writes per product, so a run touches
    no products row. That includes a copy of the sku, which every change a run reports
    names: kept equal to the product's by the foreign key (ON UPDATE CASCADE). fillfactor 70 on
    PostgreSQL: every run rewrites many rows, and room on their page keeps those updates HOT
    (no index writes)."""

    __tablename__ = "product_stock"
    __table_args__ = (ForeignKeyConstraint(["product_id", "sku"], ["products.id", "products.sku"],
                                           onupdate="CASCADE", ondelete="CASCADE"),
                      {"postgresql_with": {"fillfactor": 70}})

    product_id: int | None = Field(default=None, primary_key=True,
                                   sa_column_kwargs={"autoincrement": False})
    sku: str | None = Field(default=None, max_length=64, nullable=False)  # set with product_id
    # 64-bit on PostgreSQL too, so the cache can hold any sum of (bounded) events: a product
    # never breaks a reconcile run.
    stock: int = Field(default=0, sa_type=BigInteger().with_variant(Integer(), "sqlite"),
                       sa_column_kwargs={"server_default": "0"})
    # The cache covers this product's events with id <= max(this, the global checkpoint):
    # a one-product reconcile (an adjustment) folds past the checkpoint and records it here.
    stock_event_id: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # No time of its own: when a product was last reconciled follows from the run state and
    # this mark (inventory.stock.reconciled_times); a timestamp in every row made each one
    # 45 bytes instead of 19, and an incremental run rewrites ~950 of them (bench/README.md).


def with_stock() -> Join:
    """products joined with their stock rows (one each): select from this to read a product's
    columns beside `ProductStock.stock` / `stock_event_id`."""
    products, stocks = Product.__table__, ProductStock.__table__  # type: ignore[attr-defined]
    return products.join(stocks, stocks.c.product_id == products.c.id)


@event.listens_for(Product, "init")
def _new_product_has_a_stock_row(target: Product, args: Any, kwargs: dict[str, Any]) -> None:
    """A product always has exactly one stock row: inserted with it (the ORM inserts it after
    the product, in the same flush). A Core insert into products inserts its stock rows itself
    (as bench/inventory.py does: INSERT INTO product_stock (product_id, sku) SELECT id, sku ...)."""
    if "stock_row" not in kwargs:
        kwargs["stock_row"] = ProductStock()


class InventoryEventKind(enum.StrEnum):
    restock = "restock"
    sale = "sale"
    return_ = "return"
    adjustment = "adjustment"
    correction = "correction"


class InventoryEvent(SQLModel, table=True):
    """Append-only. Stock = SUM(delta) per product."""

    __tablename__ = "inventory_events"
    # Covering index: the reconciliation aggregate reads only this index.
    __table_args__ = (Index("ix_inventory_events_product_delta", "product_id", "delta"),)

    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(foreign_key="products.id")
    delta: int
    kind: str = Field(max_length=20)
    reference: str | None = Field(default=None, max_length=120, index=True)
    note: str | None = Field(default=None, max_length=500)
    actor: str = Field(default="system", max_length=120)
    created_at: datetime = ts(nullable=False, default=True, index=True)


# --- customers and orders --------------------------------------------------------------------


class Customer(SQLModel, table=True):
    __tablename__ = "customers"
    # Consent checks look addresses up case-insensitively, a batch of 100 at a time.
    __table_args__ = (Index("ix_customers_email_lower", text("lower(email)")),
                      _prefix("ix_customers_email_prefix", "email"),
                      _prefix("ix_customers_name_prefix", "name"))

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)
    name: str = Field(default="", max_length=200)
    marketing_consent: bool = Field(default=False, index=True)
    unsubscribed_at: datetime | None = ts()
    phone: str | None = Field(default=None, max_length=20, index=True)  # E.164
    sms_consent: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})
    whatsapp_opt_in: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = ts(nullable=False, default=True)


class OrderStatus(enum.StrEnum):
    pending = "pending"
    paid = "paid"
    processing = "processing"
    shipped = "shipped"
    delivered = "delivered"
    cancelled = "cancelled"
    refunded = "refunded"


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (_prefix("ix_orders_number_prefix", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=40, unique=True, index=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    status: str = Field(default=OrderStatus.pending.value, max_length=20, index=True)
    currency: str = Field(default="NGN", max_length=3)
    subtotal_minor: int = 0
    shipping_minor: int = 0
    total_minor: int = 0
    shipping_address: dict[str, Any] = json_field(default={})
    payment_provider: str | None = Field(default=None, max_length=20)
    payment_reference: str | None = Field(default=None, max_length=120, index=True)
    payment_status: str = Field(default="unpaid", max_length=20)
    carrier: str | None = Field(default=None, max_length=80)
    tracking_number: str | None = Field(default=None, max_length=120)
    tracking_url: str | None = Field(default=None, max_length=500)
    created_at: datetime = ts(nullable=False, default=True, index=True)
    updated_at: datetime = ts(nullable=False, default=True)
    paid_at: datetime | None = ts()


class OrderLine(SQLModel, table=True):
    __tablename__ = "order_lines"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    product_id: int = Field(foreign_key="products.id", index=True)
    sku: str = Field(max_length=64)
    name: str = Field(max_length=200)
    quantity: int = Field(ge=1)
    unit_price_minor: int = Field(ge=0)


# --- audit -----------------------------------------------------------------------------------


class ActivityLog(SQLModel, table=True):
    """Who did what to which entity: reconciliations, adjustments, operator actions."""

    __tablename__ = "activity_log"
    __table_args__ = (Index("ix_activity_log_entity", "entity", "entity_id"),)

    id: int | None = Field(default=None, primary_key=True)
    actor: str = Field(max_length=120)
    action: str = Field(max_length=80, index=True)
    entity: str = Field(max_length=40)
    entity_id: str | None = Field(default=None, max_length=120)
    details: dict[str, Any] = json_field(default={})
    created_at: datetime = ts(nullable=False, default=True, index=True)


# --- email -----------------------------------------------------------------------------------


class EmailStatus(enum.StrEnum):
    queued = "queued"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    cancelled = "cancelled"


_WAITING_SQL = "status = 'queued' AND batch_id IS NULL"
# The email list's kind filter (emails.outbox.list_emails) adds this term, as written, for
# other kinds; a broadcast's copies, most of the table, are not in that index.
NOT_BROADCAST_SQL = "kind <> 'broadcast'"
# Columns NULL for many rows when they are written (a transactional email has no broadcast;
# no row has a provider id or delivery news until later): indexed where set, as queried.
_SOMETIMES_SET = ("order_id", "broadcast_id", "batch_id", "delivery_status")
# Provider ids are random: each entry dirties its own index page (a batch of 100 copies wrote
# ~90 pages). A row sent with its id as the provider tag `OUTBOX_TAG` is found by that tag,
# which the provider's webhooks return; only rows sent without it are indexed (migration 0018).
OUTBOX_TAG = "kolaq_outbox_id"
UNTAGGED_PROVIDER_ID_SQL = "provider_message_id IS NOT NULL AND provider_tagged IS NULL"


def _partial(name: str, column: str, where: str) -> Index:
    return Index(name, column, sqlite_where=text(where), postgresql_where=text(where))


class EmailOutbox(SQLModel, table=True):
    """Every email is a row before it is a job; the job carries only the row id."""

    __tablename__ = "email_outbox"
    __table_args__ = (
        Index("ix_email_outbox_status_updated", "status", "updated_at"),
        # Rows waiting for a batch: a claim walks this, however many sent rows the table holds.
        Index("ix_email_outbox_waiting", "id", sqlite_where=text(_WAITING_SQL),
              postgresql_where=text(_WAITING_SQL)),
        pg_index("ix_email_outbox_to_lower", "lower(to_address)"),
        # Only the rows a lookup can find there (migration 0017): every index entry is a write
        # per copy of a broadcast, and NULL (or broadcast) entries were never searched for.
        *(_partial(f"ix_email_outbox_{c}", c, f"{c} IS NOT NULL") for c in _SOMETIMES_SET),
        _partial("ix_email_outbox_kind", "kind", NOT_BROADCAST_SQL),
        _partial("ix_email_outbox_provider_message_id", "provider_message_id",
                 UNTAGGED_PROVIDER_ID_SQL),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=40)
    to_address: str = Field(max_length=320)  # found by lower()
    subject: str = Field(max_length=300)
    # Empty for a broadcast copy that has an `unsubscribe_token`: its body is the broadcast's
    # one rendering (broadcast_renderings) with the token put in at send time (emails.bodies).
    html: str = text_field(nullable=False)
    text: str = text_field(nullable=False)
    headers: dict[str, Any] = json_field(default={})
    unsubscribe_token: str | None = text_field()
    status: str = Field(default=EmailStatus.queued.value, max_length=20)
    attempts: int = 0
    last_error: str | None = text_field()
    provider_message_id: str | None = Field(default=None, max_length=120)
    # True for rows made since migration 0018: every request for them carries the row's id as
    # the provider tag OUTBOX_TAG. NULL for earlier rows: they are sent as they first were (a
    # retry under the same idempotency key must repeat the same request), found by provider id.
    provider_tagged: bool | None = Field(default=True)
    idempotency_key: str = Field(max_length=256, unique=True)
    order_id: int | None = Field(default=None, foreign_key="orders.id")
    broadcast_id: int | None = Field(default=None, foreign_key="broadcasts.id")
    # The provider request this row is (or was last) sent in; fixed before the call.
    batch_id: int | None = Field(default=None, foreign_key="email_batches.id")
    task_id: str | None = Field(default=None, max_length=64)
    claimed_by: str | None = Field(default=None, max_length=200)  # worker id while sending
    created_at: datetime = ts(nullable=False, default=True)
    updated_at: datetime = ts(nullable=False, default=True)
    lease_until: datetime | None = ts()  # past this, a queued/sending row is swept
    next_attempt_at: datetime | None = ts()
    sent_at: datetime | None = ts()
    # What the provider later told us (Resend webhooks): delivered, delayed, bounced,
    # soft_bounced, complained; None = nothing heard yet. `sent` only means accepted.
    delivery_status: str | None = Field(default=None, max_length=20)
    delivery_detail: str | None = text_field()
    delivery_updated_at: datetime | None = ts()


class BatchStatus(enum.StrEnum):
    queued = "queued"  # formed, not sent yet, or released for a retry
    sending = "sending"  # claimed by a worker (until lease_until)
    sent = "sent"  # the provider answered; `failed` counts members it refused
    failed = "failed"  # the request failed for good; every member with it


class EmailBatch(SQLModel, table=True):
    """Outbox rows sent in one provider request. Its members (email_outbox.batch_id) and
    idempotency key are fixed before the first call, so a retried or swept batch resends the
    same members under the same key and the provider answers it from its idempotency store."""

    __tablename__ = "email_batches"

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=256, unique=True)
    status: str = Field(default=BatchStatus.queued.value, max_length=20, index=True)
    attempts: int = 0
    size: int = 0
    sent: int = 0
    failed: int = 0
    broadcast_id: int | None = Field(default=None, foreign_key="broadcasts.id", index=True)
    last_error: str | None = text_field()
    task_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = ts(nullable=False, default=True)
    updated_at: datetime = ts(nullable=False, default=True)
    lease_until: datetime | None = ts()
    next_attempt_at: datetime | None = ts()
    finished_at: datetime | None = ts()


class BroadcastStatus(enum.StrEnum):
    draft = "draft"  # saved, not submitted
    sending = "sending"  # recipients materialised; batches being formed and sent
    paused = "paused"  # no new batch is formed; resume goes on where it stopped
    cancelled = "cancelled"  # what was not handed to the provider never will be
    done = "done"  # every recipient sent, failed or skipped


class Broadcast(SQLModel, table=True):
    """One marketing message to an audience. Counts are written when it ends; while it runs
    they are computed from its recipients and their outbox rows."""

    __tablename__ = "broadcasts"

    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(max_length=300)
    body_markdown: str = text_field(nullable=False)
    audience: str = Field(max_length=80)  # subscribers, customers, admin or sku:SKU
    status: str = Field(default=BroadcastStatus.draft.value, max_length=20, index=True)
    # Drafts: draft/<uuid>. Submitted: broadcast/<digest of subject, body, audience>, so the
    # same broadcast submitted twice is one broadcast.
    idempotency_key: str = Field(max_length=256, unique=True)
    total: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_by: str = Field(default="operator", max_length=120)
    created_at: datetime = ts(nullable=False, default=True)
    updated_at: datetime | None = ts()
    started_at: datetime | None = ts()
    finished_at: datetime | None = ts()


class BroadcastRendering(SQLModel, table=True):
    """A broadcast's one rendering (subject, HTML, text), written once before its first copy:
    every copy is this with its recipient's unsubscribe token in place of `slot`, so a retry
    or a "send again" sends byte for byte the same body, whatever the templates became."""

    __tablename__ = "broadcast_renderings"

    broadcast_id: int = Field(foreign_key="broadcasts.id", primary_key=True)
    subject: str = Field(max_length=300)
    html: str = text_field(nullable=False)
    text: str = text_field(nullable=False)
    slot: str = Field(max_length=80)
    created_at: datetime = ts(nullable=False, default=True)


class RecipientStatus(enum.StrEnum):
    pending = "pending"  # not yet in a batch
    queued = "queued"  # its copy is an outbox row (outbox_id): that row's status is the news
    skipped = "skipped"  # consent withdrawn or address refused before its copy was made
    cancelled = "cancelled"  # the broadcast was cancelled first


class BroadcastRecipient(SQLModel, table=True):
    """A broadcast's audience, materialised once when it is submitted."""

    __tablename__ = "broadcast_recipients"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "email", name="uq_broadcast_recipients_email"),
        Index("ix_broadcast_recipients_status", "broadcast_id", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    broadcast_id: int = Field(foreign_key="broadcasts.id")
    email: str = Field(max_length=320)  # normalised (lower case)
    customer_id: int | None = Field(default=None, foreign_key="customers.id")
    status: str = Field(default=RecipientStatus.pending.value, max_length=20)
    reason: str | None = Field(default=None, max_length=300)
    outbox_id: int | None = Field(default=None, foreign_key="email_outbox.id")


class Suppression(SQLModel, table=True):
    """Addresses we must not email: bounces, complaints, unsubscribes, manual blocks."""

    __tablename__ = "suppressions"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)
    reason: str = Field(max_length=40)
    source: str | None = Field(default=None, max_length=120)
    created_at: datetime = ts(nullable=False, default=True)


# --- SMS and WhatsApp ------------------------------------------------------------------------


class TextStatus(enum.StrEnum):
    queued = "queued"
    sending = "sending"
    sent = "sent"  # Twilio accepted it (provider_message_id); delivery_status says what next
    failed = "failed"
    unknown = "unknown"  # a worker died mid-send and Twilio's list could not say: an operator
    cancelled = "cancelled"


class TextMessage(SQLModel, table=True):
    """An SMS or WhatsApp message: a row before it is a job, like an email. Twilio has no
    idempotency key, so `doubt_since` marks an attempt whose outcome is not known: before
    sending again, the worker looks for it in Twilio's message list."""

    __tablename__ = "text_messages"
    __table_args__ = (Index("ix_text_messages_status_updated", "status", "updated_at"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=10, index=True)  # sms | whatsapp
    kind: str = Field(max_length=40, index=True)
    to_number: str = Field(max_length=20, index=True)  # E.164, no channel prefix
    from_number: str = Field(max_length=20)  # the sender when queued, kept for every attempt
    body: str = text_field(nullable=False)  # SMS text; for WhatsApp our preview of the template
    encoding: str | None = Field(default=None, max_length=8)  # gsm7 | ucs2 (SMS only)
    segments: int | None = None  # SMS only
    content_sid: str | None = Field(default=None, max_length=40)  # WhatsApp template
    content_variables: dict[str, Any] = json_field(default={})
    status: str = Field(default=TextStatus.queued.value, max_length=20)
    delivery_status: str | None = Field(default=None, max_length=20)  # from status callbacks
    error_code: int | None = None  # Twilio's, from an error answer or a callback
    attempts: int = 0
    last_error: str | None = text_field()
    provider_message_id: str | None = Field(default=None, max_length=64, index=True)
    idempotency_key: str = Field(max_length=256, unique=True)
    order_id: int | None = Field(default=None, foreign_key="orders.id", index=True)
    customer_id: int | None = Field(default=None, foreign_key="customers.id", index=True)
    task_id: str | None = Field(default=None, max_length=64)
    claimed_by: str | None = Field(default=None, max_length=200)  # the worker sending it
    created_at: datetime = ts(nullable=False, default=True, index=True)
    updated_at: datetime = ts(nullable=False, default=True)
    lease_until: datetime | None = ts()  # past this, a queued/sending row is swept
    next_attempt_at: datetime | None = ts()
    attempt_started_at: datetime | None = ts()  # start of the current/last provider call
    doubt_since: datetime | None = ts()  # an earlier call may have sent it: look before sending
    sent_at: datetime | None = ts()
    delivery_updated_at: datetime | None = ts()


class PhoneOptOut(SQLModel, table=True):
    """Numbers that must not get messages on a channel: STOP received, Twilio's 21610, or an
    operator's block. START removes the row."""

    __tablename__ = "phone_opt_outs"
    __table_args__ = (UniqueConstraint("number", "channel", name="uq_phone_opt_outs_number"),)

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=20)
    channel: str = Field(max_length=10)
    reason: str = Field(max_length=40)
    source: str | None = Field(default=None, max_length=120)
    created_at: datetime = ts(nullable=False, default=True)


# --- webhooks --------------------------------------------------------------------------------


class WebhookStatus(enum.StrEnum):
    received = "received"  # stored and acknowledged; its processing job is queued (or lost)
    processed = "processed"  # its effects are applied (or it had none left to apply)
    ignored = "ignored"  # a type we do not act on, or nothing to do (stored for the record)
    flagged = "flagged"  # needs an operator: amount mismatch, unknown order, partial refund
    failed = "failed"  # processing raised until its retries ran out


class WebhookEvent(SQLModel, table=True):
    """Inbox: verified, stored (unique per provider event), acknowledged, then processed."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_webhook_provider_event"),
        Index("ix_webhook_events_status_lease", "status", "lease_until"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=20)
    event_id: str = Field(max_length=200)
    event_type: str = Field(max_length=80)
    payload: dict[str, Any] = json_field(default={})
    status: str = Field(default=WebhookStatus.received.value, max_length=20, index=True)
    error: str | None = text_field()
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Past this, a `received` event is re-enqueued by the sweeper (its job was lost).
    lease_until: datetime | None = ts()
    order_id: int | None = Field(default=None, foreign_key="orders.id", index=True)
    email_id: int | None = Field(default=None, foreign_key="email_outbox.id", index=True)
    received_at: datetime = ts(nullable=False, default=True, index=True)
    processed_at: datetime | None = ts()


# --- jobs ------------------------------------------------------------------------------------


class FailedJobStatus(enum.StrEnum):
    failed = "failed"  # retries exhausted or a permanent error
    interrupted = "interrupted"  # shutdown or crash with the job unfinished
    retried = "retried"  # an operator (or the sweeper) enqueued it again
    discarded = "discarded"
    completed = "completed"  # presumed lost, but its worker finished it after all


OPEN_FAILED_STATUSES = (FailedJobStatus.failed.value, FailedJobStatus.interrupted.value)
_OPEN_SQL = "status IN ('failed', 'interrupted')"


class FailedJob(SQLModel, table=True):
    """The durable record of jobs that did not complete. Huey keeps none.

    `args`/`kwargs` are the call as shown to people (secrets redacted when it was recorded);
    `payload` is the exact call as Huey's signed message, which a retry re-enqueues.
    """

    __tablename__ = "failed_jobs"
    __table_args__ = (
        Index("ix_failed_jobs_status_id", "status", "id"),
        Index("ix_failed_jobs_queue_status", "queue", "status"),
        # Open entries of one error type (rejected payloads, counted every refresh).
        Index("ix_failed_jobs_error_type_status", "error_type", "status"),
        # The failed list: open rows, newest first, a page at a time, whatever the table size.
        Index(
            "ix_failed_jobs_open_id",
            "id",
            sqlite_where=text(_OPEN_SQL),
            postgresql_where=text(_OPEN_SQL),
        ),
        # Failed jobs about an email, an order or a SKU (jobs/failed.py calls_about)
        pg_index("ix_failed_jobs_first_arg", "(args ->> 0)"),
    )

    id: int | None = Field(default=None, primary_key=True)
    task_id: str = Field(max_length=64, index=True)
    task_name: str = Field(max_length=200, index=True)
    queue: str = Field(max_length=20)
    args: list[Any] = json_field(default=[])
    kwargs: dict[str, Any] = json_field(default={})
    payload: bytes | None = bytes_field()
    status: str = Field(default=FailedJobStatus.failed.value, max_length=20)
    error_type: str = Field(default="", max_length=200)
    error_message: str = text_field(nullable=False)
    traceback: str | None = text_field()
    attempts: int = 0  # total executions, the first one included
    first_attempt_at: datetime | None = ts()  # start of the first execution
    last_attempt_at: datetime | None = ts(index=True)  # start of the last execution
    worker_host: str | None = Field(default=None, max_length=200)
    worker_pid: int | None = None
    retried_as: str | None = Field(default=None, max_length=64)
    resolved_by: str | None = Field(default=None, max_length=120)
    resolved_at: datetime | None = ts()
    created_at: datetime = ts(nullable=False, default=True)


class JobRun(SQLModel, table=True):
    """A job a worker is executing right now; its worker's heartbeat keeps it alive."""

    __tablename__ = "job_runs"

    task_id: str = Field(primary_key=True, max_length=64)
    task_name: str = Field(max_length=200)
    queue: str = Field(max_length=20, index=True)
    args: list[Any] = json_field(default=[])
    kwargs: dict[str, Any] = json_field(default={})
    payload: bytes | None = bytes_field()  # the exact call, to re-enqueue or record it if lost
    attempt: int = 1
    worker_id: str = Field(max_length=200, index=True)
    started_at: datetime = ts(nullable=False, default=True)


class JobAttempt(SQLModel, table=True):
    """How many times a job Huey is retrying has run, and since when (a retry keeps its task
    id). Written only when an attempt fails and will be retried; removed when the job ends."""

    __tablename__ = "job_attempts"

    task_id: str = Field(primary_key=True, max_length=64)
    attempts: int = 0  # executions so far, all failed
    first_attempt_at: datetime = ts(nullable=False)
    updated_at: datetime = ts(nullable=False, default=True, index=True)


class Worker(SQLModel, table=True):
    __tablename__ = "workers"

    id: str = Field(primary_key=True, max_length=200)  # host:pid:started
    host: str = Field(max_length=200)
    pid: int
    queues: list[str] = json_field(default=[])
    threads: int = 1
    periodic: bool = False
    started_at: datetime = ts(nullable=False, default=True)
    heartbeat_at: datetime = ts(nullable=False, default=True, index=True)
    stopped_at: datetime | None = ts()
    # The OS start time of the process and where its pid is meaningful (jobs/process.py), so
    # a worker on the same machine can tell at once that this one is gone (kill -9).
    process_started: float | None = None
    pid_scope: str | None = Field(default=None, max_length=200)
    found_dead_at: datetime | None = ts()  # when a worker on its machine saw it gone


HISTOGRAM_BUCKETS = 22
"""Run-time histogram: bucket i < 21 counts runs shorter than 2**i ms (and at least 2**(i-1));
bucket 21 counts the rest (17.5 minutes and over)."""


def _hist() -> Any:
    return Field(default=0, sa_type=BigInteger)


class JobStat(SQLModel, table=True):
    """Per-minute counters per logical queue and task; bounded by jobs.stats_retention_hours.

    Every column is a counter, so concurrent workers merge into a row with one atomic
    `INSERT ... ON CONFLICT DO UPDATE SET c = c + excluded.c`, and a day of rows sums in SQL.
    """

    __tablename__ = "job_stats"
    __table_args__ = (UniqueConstraint("minute", "queue", "task_name", name="uq_job_stats_bucket"),)

    id: int | None = Field(default=None, primary_key=True)
    minute: datetime = ts(nullable=False, index=True)
    queue: str = Field(max_length=20)
    task_name: str = Field(max_length=200)
    completed: int = 0
    failed: int = 0  # terminal failures
    retried: int = 0  # failed attempts Huey will retry, and re-enqueues by operators/sweeper
    runtime_us_total: int = Field(default=0, sa_type=BigInteger)
    runtime_us_max: int = Field(default=0, sa_type=BigInteger)
    h00: int = _hist()
    h01: int = _hist()
    h02: int = _hist()
    h03: int = _hist()
    h04: int = _hist()
    h05: int = _hist()
    h06: int = _hist()
    h07: int = _hist()
    h08: int = _hist()
    h09: int = _hist()
    h10: int = _hist()
    h11: int = _hist()
    h12: int = _hist()
    h13: int = _hist()
    h14: int = _hist()
    h15: int = _hist()
    h16: int = _hist()
    h17: int = _hist()
    h18: int = _hist()
    h19: int = _hist()
    h20: int = _hist()
    h21: int = _hist()


class QueueDepthSample(SQLModel, table=True):
    """Jobs waiting per logical queue, sampled once a minute by the `sample_queue_depth`
    periodic task, for the overview's charts; a minute without a row is a gap, not 0. Kept
    as long as job_stats ([jobs] stats_retention_hours)."""

    __tablename__ = "queue_depth_samples"
    __table_args__ = (UniqueConstraint("minute", "queue", name="uq_queue_depth_samples_minute"),)

    id: int | None = Field(default=None, primary_key=True)
    minute: datetime = ts(nullable=False, index=True)
    queue: str = Field(max_length=20)
    pending: int = 0
    scheduled: int = 0
    in_flight: int | None = None  # None: the ledger could not be read at that minute


# --- scheduling guards and bookkeeping -------------------------------------------------------


class ScheduleRun(SQLModel, table=True):
    """One row per (job, slot): the unique key makes a periodic job run once per slot."""

    __tablename__ = "schedule_runs"
    __table_args__ = (UniqueConstraint("job", "slot", name="uq_schedule_runs_job_slot"),)

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=80)
    slot: str = Field(max_length=80)  # e.g. local date "2026-11-28" or "2026-11-28T08:00"
    details: dict[str, Any] = json_field(default={})
    started_at: datetime = ts(nullable=False, default=True)
    finished_at: datetime | None = ts()


class SystemState(SQLModel, table=True):
    """Small named values: reconciliation checkpoint, last full run, and the like."""

    __tablename__ = "system_state"

    key: str = Field(primary_key=True, max_length=80)
    value: dict[str, Any] = json_field(default={})
    updated_at: datetime = ts(nullable=False, default=True)
