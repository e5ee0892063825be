"""Email: rendering (templates/), the outbox, transports (resend, dev), the shared rate limiter,
delivery with classified retries, and the sweeper. Other areas call:

- `queue_email(session, settings, kind, ...) -> EmailOutbox` and `enqueue_send(row_id)`;
- `resend_email(session, settings, row_id, actor)` for an operator's "send again";
- `list_emails(session, status=..., kind=...)`, `build_email(...)` (preview, no writes).
"""

from kolaq_console.emails.outbox import (
    EmailDraft,
    build_email,
    enqueue_send,
    list_emails,
    queue_email,
    resend_email,
    sweep_stale,
)
from kolaq_console.emails.render import KINDS

__all__ = [
    "KINDS",
    "EmailDraft",
    "build_email",
    "enqueue_send",
    "list_emails",
    "queue_email",
    "resend_email",
    "sweep_stale",
]
