"""Marketing consent, unsubscribe tokens and the suppression list.

- An unsubscribe link carries a signed token naming the address (itsdangerous, keyed by the
  queue's signing key with its own salt), so the endpoint needs no login and a link cannot be
  forged for someone else's address. Tokens do not expire: RFC 8058 links must keep working.
  A token is made with itsdangerous' `Signer` over the base64 of the address's JSON, which is
  byte for byte what its `URLSafeSerializer` makes for an address it does not compress (at
  a quarter of the cost, for every copy of a broadcast); tokens are read with the serializer,
  so those it made compressed, already sent out, keep working.
- `unsubscribe` withdraws marketing consent (the customer row, or a suppression row for an
  address that is not a customer); it is idempotent and audited.
- `suppress` records an address we must not email at all (hard bounce, complaint, manual).
- Marketing goes only to `marketing_allowed` addresses; transactional email ignores consent but
  not suppression of hard bounces and complaints (callers decide which check applies).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import string
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from itsdangerous import BadSignature, Signer, URLSafeSerializer
from itsdangerous.encoding import base64_encode
from sqlalchemy import func, text
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection
from sqlmodel import Session, col, select

from kolaq_console.config import Settings
from kolaq_console.errors import UserError
from kolaq_console.models import ActivityLog, Customer, Suppression, utcnow
from kolaq_console.signing import queue_signing_key
from kolaq_console.sqlutil import is_postgres

SALT = "kolaq.unsubscribe"
UNSUBSCRIBED = "unsubscribed"  # suppression reason for a non-customer's unsubscribe
# Reasons that block every email, transactional too (the address does not work or objects).
BLOCKING_REASONS = ("bounced", "complained", "manual")


class InvalidToken(UserError):
    """An unsubscribe token that was not made by this shop (or was mangled in transit)."""


def _serializer(settings: Settings) -> URLSafeSerializer:
    return _serializer_for(queue_signing_key(settings))


@functools.lru_cache(maxsize=4)
def _serializer_for(key: str) -> URLSafeSerializer:
    return URLSafeSerializer(key, salt=SALT)


@functools.lru_cache(maxsize=4)
def _signer_for(key: str) -> Signer:
    # The signer URLSafeSerializer(key, salt=SALT) uses: same key derivation and digest
    # (HMAC-SHA1); given as hashlib's sha1, hmac takes OpenSSL's fast path, where
    # itsdangerous' own lazy wrapper of it makes hmac fall back to its pure-Python one.
    return Signer(key, salt=SALT, digest_method=hashlib.sha1)


def normalise(address: str) -> str:
    return address.strip().lower()


def make_token(settings: Settings, address: str) -> str:
    return token_maker(settings)(address)


@functools.lru_cache(maxsize=4)
def _derived_key(key: str) -> bytes:
    return _signer_for(key).derive_key()


def token_maker(settings: Settings) -> Callable[[str], str]:
    """`make_token` for many addresses: byte for byte what `_signer_for(key).sign` makes of
    the address's JSON, with the key derived once (Signer derives it again on every call)
    and the JSON of a plain address written directly (a broadcast makes one per copy)."""
    derived = _derived_key(queue_signing_key(settings))

    def make(address: str) -> str:
        normal = normalise(address)
        if normal.isascii() and normal.isprintable() and '"' not in normal \
                and "\\" not in normal:
            payload = f'"{normal}"'  # what json.dumps gives: nothing to escape
        else:
            payload = json.dumps(normal, ensure_ascii=False, separators=(",", ":"))
        value = base64_encode(payload.encode())
        signature = base64_encode(hmac.digest(derived, value, "sha1"))
        return (value + b"." + signature).decode("ascii")

    return make


def read_token(settings: Settings, token: str) -> str:
    """The address a token was made for; InvalidToken if it was not made with our key."""
    try:
        address = _serializer(settings).loads(token)
    except BadSignature:
        raise InvalidToken("this unsubscribe link is not valid (it may be incomplete)") from None
    if not isinstance(address, str) or "@" not in address:
        raise InvalidToken("this unsubscribe link is not valid")
    return address


def unsubscribe_url(settings: Settings, address: str, token: str | None = None) -> str:
    """The https link for List-Unsubscribe and the visible footer link (`token`: the
    address's token, when the caller already made it)."""
    token = token or make_token(settings, address)
    return f"{settings.shop.public_url.rstrip('/')}/unsubscribe/{token}"


_PLAIN = string.ascii_letters + string.digits + "_.-~@"  # what quote() keeps, and "@"


def unsubscribe_mailto(settings: Settings, address: str) -> str:
    """The mailto: alternative of List-Unsubscribe (to the support address)."""
    address = normalise(address)
    if address.strip(_PLAIN):  # anything quote() would escape but "@"
        subject = quote(f"unsubscribe {address}")
    else:  # the usual address: what quote() gives, without its per-character work
        subject = "unsubscribe%20" + address.replace("@", "%40")
    return f"mailto:{settings.email.support_email}?subject={subject}"


def list_unsubscribe_headers(settings: Settings, address: str,
                             token: str | None = None) -> dict[str, str]:
    """RFC 2369 + RFC 8058 headers for one recipient of a marketing message."""
    https = unsubscribe_url(settings, address, token)
    return {
        "List-Unsubscribe": f"<{https}>, <{unsubscribe_mailto(settings, address)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def _customer(session: Session, address: str) -> Customer | None:
    return session.exec(
        select(Customer).where(func.lower(col(Customer.email)) == normalise(address))
    ).first()


def _suppression(session: Session, address: str) -> Suppression | None:
    return session.exec(
        select(Suppression).where(Suppression.email == normalise(address))
    ).first()


def unsubscribe(session: Session, address: str, *, source: str, actor: str = "recipient") -> bool:
    """Withdraw marketing consent for `address`; True if it changed anything. The caller
    commits. Idempotent: a second unsubscribe changes nothing and logs nothing."""
    address = normalise(address)
    now = utcnow()
    changed = False
    customer = _customer(session, address)
    if customer is not None:
        if customer.unsubscribed_at is None or customer.marketing_consent:
            customer.unsubscribed_at = customer.unsubscribed_at or now
            customer.marketing_consent = False
            session.add(customer)
            changed = True
    elif _suppression(session, address) is None:
        session.add(Suppression(email=address, reason=UNSUBSCRIBED, source=source))
        changed = True
    if changed:
        session.add(ActivityLog(actor=actor, action="consent.unsubscribe", entity="customer",
                                entity_id=address, details={"source": source}))
    return changed


def suppress(session: Session, address: str, reason: str, *, source: str,
             actor: str = "system") -> bool:
    """Add `address` to the suppression list (bounced, complained, manual); True if new. A
    stronger reason replaces an unsubscribe-only row. The caller commits."""
    address = normalise(address)
    row = _suppression(session, address)
    if row is not None and (row.reason == reason or row.reason in BLOCKING_REASONS):
        return False
    if row is None:
        row = Suppression(email=address, reason=reason, source=source)
    else:
        row.reason, row.source = reason, source
    session.add(row)
    session.add(ActivityLog(actor=actor, action="consent.suppress", entity="customer",
                            entity_id=address, details={"reason": reason, "source": source}))
    return True


def is_blocked(session: Session, address: str) -> str | None:
    """The suppression reason that forbids ANY email to `address` (bounce, complaint,
    manual block), or None."""
    row = _suppression(session, address)
    return row.reason if row is not None and row.reason in BLOCKING_REASONS else None


# The addresses as one parameter (a JSON array on SQLite, an array on PostgreSQL), not an
# expanding IN: SQLAlchemy wrote 100 placeholders into the SQL on every call (per batch),
# twice the statements' own cost. Both stay index lookups per address.
_ADDRESSES_IN = {
    "sqlite": "{} IN (SELECT value FROM json_each(:emails))",
    "postgresql": "{} = ANY(CAST(:emails AS text[]))",
}


@functools.lru_cache(maxsize=2)
def _refusal_statements(dialect: str) -> tuple[Any, Any]:
    """Built once (a reused statement keeps its cache key: `refusals` runs per batch)."""
    s, c = Suppression.__table__, Customer.__table__  # type: ignore[attr-defined]
    among = _ADDRESSES_IN[dialect]
    return (
        sa_select(s.c.email, s.c.reason).where(text(among.format("suppressions.email"))),
        sa_select(func.lower(c.c.email), c.c.unsubscribed_at, c.c.marketing_consent)
        .where(text(among.format("lower(customers.email)"))),
    )


def _addresses(dialect: str, addresses: list[str]) -> Any:
    return addresses if dialect == "postgresql" else json.dumps(addresses)


def refusals(session: Session | Connection, addresses: Iterable[str], marketing: Iterable[str] = (),
             *, consent_required: bool = False) -> dict[str, str]:
    """Why each of these addresses may not be written to now, by normalised address: a
    blocking suppression (bounced, complained, manual) stops any email; for `marketing`
    addresses an unsubscribe (customer or suppression row) stops it too, and with
    `consent_required` so does the lack of marketing consent. Addresses not named may be
    written to. Two queries at most, whatever the number of addresses."""
    wanted = {normalise(a) for a in addresses}
    # A broadcast's batch passes the same list twice: normalised once.
    market = wanted if marketing is addresses else {normalise(a) for a in marketing}
    if not wanted | market:
        return {}
    out: dict[str, str] = {}
    dialect = "postgresql" if is_postgres(session) else "sqlite"
    suppressed, customers_of = _refusal_statements(dialect)
    rows = session.execute(suppressed,
                           {"emails": _addresses(dialect, sorted(wanted | market))}).all()
    for email, reason in rows:
        if reason in BLOCKING_REASONS:
            out[email] = f"suppressed ({reason})"
        elif email in market:
            out[email] = "unsubscribed"
    if market:
        customers = session.execute(customers_of,
                                    {"emails": _addresses(dialect, sorted(market))}).all()
        consented = set()
        for email, unsubscribed_at, given in customers:
            if unsubscribed_at is not None:
                out.setdefault(email, "unsubscribed")
            elif given:
                consented.add(email)
        if consent_required:
            for email in market - consented:
                out.setdefault(email, "no marketing consent")
    return out


def marketing_allowed(session: Session, address: str) -> bool:
    """May this address receive marketing now? Consent given, not withdrawn, not suppressed.
    (Addresses that are not customers never gave consent.)"""
    customer = _customer(session, address)
    if customer is None or not customer.marketing_consent or customer.unsubscribed_at:
        return False
    return _suppression(session, address) is None
