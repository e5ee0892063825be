"""`generic`: a free subject and plain-text body to one address."""

from __future__ import annotations

from sqlmodel import Session

from kolaq_console.config import Settings
from kolaq_console.emails.composers.base import Composition, composer
from kolaq_console.emails.request import EmailRequest, digest, validate_address
from kolaq_console.errors import UserError


@composer("generic")
def generic(session: Session, settings: Settings, request: EmailRequest) -> Composition:
    to = validate_address(request.to)
    ctx = dict(request.context)
    subject = (request.subject or ctx.get("subject") or "").strip()
    body = request.body if request.body is not None else ctx.get("body")
    if not subject:
        raise UserError("a generic email needs a subject (--subject)")
    if not (body or "").strip():
        raise UserError("a generic email needs a body (--body-file)")
    ctx.update(subject=subject, body=(body or "").strip())
    return Composition(to=to, context=ctx, key=f"generic/{digest(to, subject, body or '')}")
