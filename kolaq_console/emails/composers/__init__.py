"""One small composer per email kind; `compose` turns an `EmailRequest` into an `EmailDraft`.

Adding a kind = a module here with one `@composer("kind")` function, imported below, and its
three templates (`<kind>.subject.txt`, `<kind>.html`, `<kind>.txt`).
"""

from __future__ import annotations

from sqlmodel import Session

from kolaq_console.config import Settings

# Importing a kind's module registers its composer.
from kolaq_console.emails.composers import broadcast, generic, low_stock, orders  # noqa: F401
from kolaq_console.emails.composers.base import REGISTRY, Composition, composer
from kolaq_console.emails.request import (
    FROM_HEADER,
    EmailDraft,
    EmailRequest,
    validate_key,
    validate_sender,
)
from kolaq_console.errors import UserError

KINDS: tuple[str, ...] = tuple(REGISTRY)

__all__ = ["KINDS", "Composition", "compose", "composer", "known_kind"]


def known_kind(kind: str) -> str:
    if kind not in REGISTRY:
        raise UserError(f"unknown email kind {kind!r}; expected one of: {', '.join(KINDS)}")
    return kind


def compose(session: Session, settings: Settings, request: EmailRequest) -> EmailDraft:
    """Validate the request and render it; raises UserError/NotFound, writes nothing."""
    from kolaq_console.emails.render import render

    compose_kind = REGISTRY[known_kind(request.kind)]
    validate_sender(settings.email.from_address)
    made = compose_kind(session, settings, request)
    rendered = render(settings, request.kind, made.context)
    return EmailDraft(
        kind=request.kind,
        to=made.to,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        idempotency_key=validate_key(request.idempotency_key or made.key),
        headers={FROM_HEADER: settings.email.from_address, **made.headers},
        order_id=made.order_id,
        broadcast_id=made.broadcast_id,
    )
