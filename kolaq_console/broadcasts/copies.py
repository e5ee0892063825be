"""Recipients' copies of a broadcast: one rendering per broadcast, each copy its recipient's part.

Every copy is the same email but for the unsubscribe token (in the footer link and the
List-Unsubscribe header). The Markdown, the layout and the inlined CSS are rendered once per
broadcast with a slot where the token goes, and stored (broadcast_renderings) before the first
copy; a copy's outbox row holds only its recipient's part (address, token, headers, key) and
the worker puts the body together at send time (emails.bodies). What a copy sends equals what
`compose` makes for that recipient (tests hold the two byte for byte equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session

from kolaq_console import consent
from kolaq_console.config import Settings
from kolaq_console.emails.bodies import Rendering, renderings
from kolaq_console.emails.composers.broadcast import content, copy_key, template_context
from kolaq_console.emails.render import render
from kolaq_console.emails.request import FROM_HEADER, REPLY_TO_HEADER, validate_sender
from kolaq_console.models import BroadcastRendering, utcnow

SLOT = "kolaq-unsubscribe-token-slot"  # URL-safe, survives escaping and CSS inlining
_TABLE = BroadcastRendering.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Copy:
    to: str
    subject: str
    html: str
    text: str
    headers: dict[str, str]
    idempotency_key: str


class Copies:
    def __init__(self, settings: Settings, broadcast_id: int, rendering: Rendering) -> None:
        self.settings = settings
        self.broadcast_id = broadcast_id
        self.sender = validate_sender(settings.email.from_address)
        self.rendering = rendering
        self._token = consent.token_maker(settings)
        self._reply_to = settings.email.support_email

    @classmethod
    def render(cls, settings: Settings, broadcast_id: int, subject: str, body: str) -> Copies:
        """Render the broadcast once, with the slot where each copy's token goes."""
        subject, body = content(subject, body, settings.email.max_body_bytes)
        slot_url = consent.unsubscribe_url(settings, "", token=SLOT)
        r = render(settings, "broadcast", template_context(subject, body, slot_url))
        return cls(settings, broadcast_id, Rendering(r.subject, r.html, r.text, SLOT))

    @classmethod
    def stored(cls, conn: Connection | Session, settings: Settings, broadcast_id: int,
               subject: str, body: str) -> Copies:
        """The broadcast's stored rendering; rendered and stored (in the caller's
        transaction) on its first use. Once stored it never changes: every copy, retry and
        "send again" is put together from the same one."""
        found = renderings(conn, [broadcast_id]).get(broadcast_id)
        if found is None:
            made = cls.render(settings, broadcast_id, subject, body)
            r = made.rendering
            bind = conn.connection() if isinstance(conn, Session) else conn
            dialect = postgresql if bind.dialect.name == "postgresql" else sqlite
            bind.execute(
                dialect.insert(_TABLE).values(
                    broadcast_id=broadcast_id, subject=r.subject, html=r.html, text=r.text,
                    slot=r.slot, created_at=utcnow(),
                ).on_conflict_do_nothing(index_elements=["broadcast_id"])
            )
            found = renderings(conn, [broadcast_id])[broadcast_id]
        return cls(settings, broadcast_id, found)

    def _headers(self, address: str, token: str) -> dict[str, str]:
        return {FROM_HEADER: self.sender, REPLY_TO_HEADER: self._reply_to,
                **consent.list_unsubscribe_headers(self.settings, address, token)}

    def copy(self, address: str) -> Copy:
        """The whole copy for `address`, as it is sent."""
        token = self._token(address)
        html, text = self.rendering.body(token)
        return Copy(to=address, subject=self.rendering.subject, html=html, text=text,
                    headers=self._headers(address, token),
                    idempotency_key=copy_key(self.broadcast_id, address))

    def part(self, address: str) -> tuple[str, dict[str, str], str]:
        """`address`'s part of its copy's row: (token, headers, idempotency key)."""
        token = self._token(address)
        return token, self._headers(address, token), copy_key(self.broadcast_id, address)

    def row_values(self, address: str) -> dict[str, Any]:
        """The outbox row of `address`'s copy: its recipient's part only, no body (what
        broadcasts.sending stores for it, in one statement per batch)."""
        token, headers, key = self.part(address)
        return {"kind": "broadcast", "to_address": address, "subject": self.rendering.subject,
                "html": "", "text": "", "unsubscribe_token": token, "headers": headers,
                "idempotency_key": key, "broadcast_id": self.broadcast_id}
