"""`broadcast`: one recipient's copy of a broadcast (Markdown body, unsubscribe link)."""

from __future__ import annotations

from sqlmodel import Session

from kolaq_console.config import Settings
from kolaq_console.emails.composers.base import Composition, composer
from kolaq_console.emails.request import EmailRequest, digest, validate_address
from kolaq_console.errors import UserError


@composer("broadcast")
def broadcast(session: Session, settings: Settings, request: EmailRequest) -> Composition:
    from kolaq_console.emails.render import markdown_html

    to = validate_address(request.to)
    ctx = dict(request.context)
    subject = (request.subject or ctx.get("subject") or "").strip()
    body = request.body if request.body is not None else ctx.get("body_markdown")
    if not subject or not (body or "").strip():
        raise UserError("a broadcast email needs a subject and a body")
    broadcast_id = ctx.get("broadcast_id")
    unsubscribe = ctx.get("unsubscribe_url") or ""
    ctx.update(subject=subject, body_html=markdown_html(body or ""),
               body_text=(body or "").strip(), unsubscribe_url=unsubscribe)
    headers = {}
    if unsubscribe:
        headers["List-Unsubscribe"] = f"<{unsubscribe}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    scope = str(broadcast_id) if broadcast_id is not None else digest(subject, body or "")
    return Composition(to=to, context=ctx, key=f"broadcast/{scope}/{digest(to, length=16)}",
                       headers=headers, broadcast_id=broadcast_id)
