"""Recipients' copies of a broadcast, rendered once and personalised per address.

Every copy is the same email but for the unsubscribe token (in the footer link and the
List-Unsubscribe header). Rendering the Markdown, the layout and the inlined CSS once per
broadcast and putting each recipient's token into a slot is what `compose` would produce for
that recipient (a test holds the two equal), at a fraction of the cost.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from kolaq_console import consent
from kolaq_console.config import Settings
from kolaq_console.emails.composers.broadcast import content, copy_key, template_context
from kolaq_console.emails.render import render
from kolaq_console.emails.request import FROM_HEADER, REPLY_TO_HEADER, validate_sender

SLOT = "kolaq-unsubscribe-token-slot"  # URL-safe, survives escaping and CSS inlining
_lock = threading.Lock()
_made: dict[tuple, Copies] = {}


@dataclass(frozen=True)
class Copy:
    to: str
    subject: str
    html: str
    text: str
    headers: dict[str, str]
    idempotency_key: str


class Copies:
    @classmethod
    def of(cls, settings: Settings, broadcast_id: int, subject: str, body: str) -> Copies:
        """The renderer of this broadcast, made once per process: a worker forms its batches
        over many short jobs, and rendering is most of a batch's cost."""
        e, shop = settings.email, settings.shop
        key = (broadcast_id, subject, body, e.from_address, e.support_email, e.templates_dir,
               e.max_body_bytes, shop.name, shop.public_url,
               hash(settings.secrets.signing_key.get_secret_value())
               if settings.secrets.signing_key else None)
        with _lock:
            made = _made.get(key)
        if made is None:
            made = cls(settings, broadcast_id, subject, body)
            with _lock:
                _made[key] = made
                while len(_made) > 8:
                    _made.pop(next(iter(_made)))
        return made

    def __init__(self, settings: Settings, broadcast_id: int, subject: str, body: str) -> None:
        subject, body = content(subject, body, settings.email.max_body_bytes)
        self.settings = settings
        self.broadcast_id = broadcast_id
        self.sender = validate_sender(settings.email.from_address)
        slot_url = consent.unsubscribe_url(settings, "", token=SLOT)
        self.rendered = render(settings, "broadcast", template_context(subject, body, slot_url))

    def copy(self, address: str) -> Copy:
        token = consent.make_token(self.settings, address)
        r = self.rendered
        return Copy(
            to=address,
            subject=r.subject,
            html=r.html.replace(SLOT, token),
            text=r.text.replace(SLOT, token),
            headers={FROM_HEADER: self.sender, REPLY_TO_HEADER: self.settings.email.support_email,
                     **consent.list_unsubscribe_headers(self.settings, address, token)},
            idempotency_key=copy_key(self.broadcast_id, address),
        )

    def row_values(self, address: str) -> dict[str, Any]:
        c = self.copy(address)
        return {"kind": "broadcast", "to_address": c.to, "subject": c.subject, "html": c.html,
                "text": c.text, "headers": c.headers, "idempotency_key": c.idempotency_key,
                "broadcast_id": self.broadcast_id}
