"""A broadcast's copies are keyed by their address and stored in address order, so a batch's
keys go into the unique index one after another (bench/README.md, broadcasts.py)."""

from __future__ import annotations

from broadcast_fixtures import resend_stub, resend_workers  # noqa: F401
from broadcast_support import seed_customers, subscribers
from sqlmodel import Session, select

from kolaq_console.broadcasts import lifecycle
from kolaq_console.emails.composers.broadcast import copy_key
from kolaq_console.emails.request import MAX_KEY_LENGTH, digest
from kolaq_console.models import EmailOutbox


def submit(engine, settings):
    with Session(engine, expire_on_commit=False) as s:
        return lifecycle.submit(s, settings, actor="ops", subject="Harmattan cocktails",
                                body="Three drinks for dry season.", audience="subscribers")


def test_copies_are_keyed_by_address_and_stored_in_address_order_so_key_inserts_append(
    engine, settings, stub, workers
):
    addresses = list(reversed(subscribers(150)))  # customers' ids against address order
    seed_customers(engine, addresses)
    b = submit(engine, settings).broadcast
    workers.run()
    with Session(engine) as s:
        rows = s.exec(select(EmailOutbox).where(EmailOutbox.broadcast_id == b.id)
                      .order_by(EmailOutbox.id)).all()
    assert [r.to_address for r in rows] == sorted(addresses)
    keys = [r.idempotency_key for r in rows]
    assert keys == sorted(keys) == [f"broadcast/{b.id}/{a}" for a in sorted(addresses)]
    assert sorted(d.to[0] for d in stub.deliveries) == sorted(addresses)


def test_a_copy_key_too_long_to_hold_its_address_is_the_addresses_digest():
    short = "Ada@Example.com"
    assert copy_key(7, short) == "broadcast/7/ada@example.com"
    long = "a" * 64 + "@" + "b" * 180 + ".example.com"
    key = copy_key(7, long)
    assert key == f"broadcast/7/{digest(long.lower(), length=16)}" and len(key) <= MAX_KEY_LENGTH
    assert "@" not in key  # the digest form cannot be mistaken for an address's key


def test_a_copy_key_for_an_address_beyond_ascii_is_the_digest_so_it_fits_an_http_header():
    for address in ("用户@例子.广告", "zoë@example.com"):
        key = copy_key(7, address)
        assert key.isascii() and "@" not in key
        key.encode("latin-1")  # the Idempotency-Key header's encoding
