"""`generic`: a free subject and plain-text body to one address."""

from __future__ import annotations

from sqlmodel import Session

from kolaq_console.config import Settings
from kolaq_console.emails.composers.base import Composition, composer
from kolaq_console.emails.request import (
    REPLY_TO_HEADER,
    EmailRequest,
    digest,
    validate_address,
    validate_body,
    validate_subject,
)
from kolaq_console.errors import UserError


@composer("generic")
def generic(session: Session, settings: Settings, request: EmailRequest) -> Composition:
    # The configured admin address may use a special-use domain (test setups), as for
    # low_stock; addresses typed by users may not.
    to = validate_address(request.to, configured=request.to == settings.email.admin_email)
    ctx = dict(request.context)
    subject = validate_subject(request.subject or ctx.get("subject"), "generic")
    body = validate_body(request.body if request.body is not None else ctx.get("body"),
                         settings.email.max_body_bytes)
    if not body.strip():
        raise UserError("a generic email needs a body (--body-file)")
    ctx.update(subject=subject, body=(body or "").strip())
    return Composition(to=to, context=ctx, key=f"generic/{digest(to, subject, body or '')}",
                       headers={REPLY_TO_HEADER: settings.email.support_email})
