"""What a caller asks for (`EmailRequest`) and what the outbox stores (`EmailDraft`), with the
checks every kind shares: addresses, the sender, the idempotency key.

A request names its kind and carries only what that kind's composer reads (see
`kolaq_console.emails.composers`); one object travels from the CLI, the console and the domain
to the outbox instead of a row of keyword arguments.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

from email_validator import EmailNotValidError, validate_email

from kolaq_console.errors import UserError

MAX_KEY_LENGTH = 256
MAX_SUBJECT_CHARS = 200  # what a person types; the stored (rendered) subject fits SUBJECT_COLUMN
SUBJECT_COLUMN = 300  # email_outbox.subject

# Envelope headers kept in the row's `headers` so every attempt sends byte-identical requests
# (the provider refuses a reused idempotency key with a different body).
FROM_HEADER = "From"
REPLY_TO_HEADER = "Reply-To"


@dataclass(frozen=True)
class EmailRequest:
    """One email to compose. Which fields a kind needs is its composer's business:

    - order kinds: `order_number` (recipient: the order's customer unless `to` is given);
    - `low_stock`: `context={"products": [...], "as_of": ...}` and the alert's own
      `idempotency_key`; to the admin unless `to` is given;
    - `broadcast`: one recipient's copy of a broadcast (the broadcasts module makes these);
    - `generic`: `to`, `subject`, `body` (plain text).
    `idempotency_key` replaces the kind's derived key.
    """

    kind: str
    to: str | None = None
    order_number: str | None = None
    subject: str | None = None
    body: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None


@dataclass
class EmailDraft:
    """A validated, rendered email that is not stored yet (what `email preview` shows)."""

    kind: str
    to: str
    subject: str
    html: str
    text: str
    idempotency_key: str
    headers: dict[str, str] = field(default_factory=dict)
    order_id: int | None = None
    broadcast_id: int | None = None


def validate_address(
    value: str | None, what: str = "recipient", *, configured: bool = False
) -> str:
    """A normalised address, or a UserError naming what was wrong. No DNS look-ups.
    `configured` (addresses from settings, e.g. the admin's) also accepts special-use domains
    `.test` (test setups); addresses from users must not use special-use domains."""
    if not value or not value.strip():
        raise UserError(f"{what} address is missing")
    try:
        return validate_email(
            value.strip(), check_deliverability=False, test_environment=configured
        ).normalized
    except EmailNotValidError as exc:
        raise UserError(f"invalid {what} address {value.strip()!r}: {exc}") from None


@functools.lru_cache(maxsize=16)
def validate_sender(value: str) -> str:
    """`Name <addr>` or a bare address, as configured in [email] from_address."""
    _, addr = parseaddr(value)
    try:
        validate_email(addr, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise UserError(f"[email] from_address {value!r} is not a valid sender: {exc}") from None
    return value


_LINE_BREAKS = frozenset("\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def validate_subject(subject: str | None, kind: str) -> str:
    """A subject as typed: one line, at most MAX_SUBJECT_CHARS characters, not empty."""
    subject = (subject or "").strip()
    if not subject:
        raise UserError(f"a {kind} email needs a subject (--subject)")
    if any(c in _LINE_BREAKS for c in subject):
        raise UserError("the subject must be one line: it contains a line break")
    if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in subject):
        raise UserError("the subject contains a control character")
    if len(subject) > MAX_SUBJECT_CHARS:
        raise UserError(
            f"the subject is {len(subject):,} characters; at most {MAX_SUBJECT_CHARS}"
        )
    return subject


def body_limit_error(size: int, limit: int, what: str = "the body") -> UserError:
    return UserError(
        f"{what} is {size:,} bytes; at most {limit:,} bytes ([email] max_body_bytes)"
    )


def validate_body(body: str | None, limit: int) -> str:
    """A body as typed (text or Markdown), within `limit` ([email] max_body_bytes) as UTF-8."""
    body = body or ""
    # 4 bytes per character at most: most bodies are measured without encoding them
    if len(body) * 4 > limit:
        size = len(body.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise body_limit_error(size, limit)
    return body


def validate_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or any(ord(c) < 32 for c in key):
        raise UserError(
            f"idempotency key must be 1-{MAX_KEY_LENGTH} printable characters, got {key!r:.80}"
        )
    return key


def digest(*parts: str, length: int = 24) -> str:
    """A short stable hash of `parts`, for keys derived from content."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]
