"""`broadcast`: one recipient's copy of a broadcast — the Markdown body in the brand layout, a
visible unsubscribe link and RFC 8058 one-click headers, both with a signed token naming the
recipient (`consent`).

Real copies are made by the broadcasts module (context `broadcast_id`), which checks consent
and suppression for every recipient; `test` copies go to the admin. A copy for an address with
neither is refused: a broadcast goes to an audience, through its checks.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import Session

from kolaq_console import consent
from kolaq_console.config import Settings
from kolaq_console.emails.composers.base import Composition, composer
from kolaq_console.emails.request import (
    MAX_KEY_LENGTH,
    REPLY_TO_HEADER,
    EmailRequest,
    digest,
    validate_address,
    validate_body,
    validate_subject,
)
from kolaq_console.errors import UserError

RETIRED = (
    "a broadcast goes to an audience, with consent checks and one-click unsubscribe: use "
    "`kolaq-console broadcast send --subject S --body-file F.md --audience A` "
    "(or kind `generic` for one address)"
)


def content(subject: str | None, body: str | None, max_body_bytes: int) -> tuple[str, str]:
    """The subject (one line, at most 200 characters) and Markdown body (within [email]
    max_body_bytes) as they will be sent, or a UserError naming what is wrong."""
    if not (subject or "").strip() or not (body or "").strip():
        raise UserError("a broadcast needs a subject and a body")
    subject = validate_subject(subject, "broadcast")
    return subject, validate_body(body, max_body_bytes).strip()


def template_context(subject: str, body: str, unsubscribe_url: str) -> dict[str, Any]:
    from kolaq_console.emails.render import markdown_html

    return {"subject": subject, "body_html": markdown_html(body), "body_text": body,
            "unsubscribe_url": unsubscribe_url}


def copy_key(broadcast_id: int, address: str) -> str:
    """The idempotency key of one recipient's copy: one copy per address per broadcast.
    The address itself, so a broadcast's copies (formed in address order: recipients are
    materialised sorted) go into the unique index one after another rather than at 100
    random places a batch. An address too long for that, or not ASCII (the key travels in
    an HTTP header, which takes Latin-1 at most), keeps the digest form that every copy had
    before (it has no "@", so the two forms never collide); rows keep the key they were
    stored with, so a batch formed earlier is resent under its old keys."""
    normal = consent.normalise(address)
    key = f"broadcast/{broadcast_id}/{normal}"
    if key.isascii() and len(key) <= MAX_KEY_LENGTH:
        return key
    return f"broadcast/{broadcast_id}/{digest(normal, length=16)}"


@composer("broadcast")
def broadcast(session: Session, settings: Settings, request: EmailRequest) -> Composition:
    ctx = request.context
    broadcast_id = ctx.get("broadcast_id")
    test = bool(ctx.get("test"))
    if broadcast_id is None and not test:
        raise UserError(RETIRED)
    to = validate_address(request.to, configured=test)
    subject, body = content(request.subject, request.body, settings.email.max_body_bytes)
    return Composition(
        to=to,
        context=template_context(subject, body, consent.unsubscribe_url(settings, to)),
        key=copy_key(broadcast_id, to) if broadcast_id is not None
        else f"broadcast-test/{uuid.uuid4().hex}",
        headers={REPLY_TO_HEADER: settings.email.support_email,
                 **consent.list_unsubscribe_headers(settings, to)},
        broadcast_id=broadcast_id,
    )
