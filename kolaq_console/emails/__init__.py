"""Email: composing (composers/, one per kind, with templates/), the outbox, transports
(resend, dev), the shared rate limiter, delivery with classified retries, and the sweeper.
Other areas call:

- `outbox.add(session, settings, EmailRequest(kind, ...)) -> Added(row, created)` and
  `outbox.enqueue_send(row_id)`;
- `outbox.resend_email(session, settings, row_id, actor)` for an operator's "send again";
- `outbox.list_emails(session, status=..., kind=...)`, `compose(...)` (preview, no writes).
"""

from kolaq_console.emails.composers import KINDS, compose
from kolaq_console.emails.request import EmailDraft, EmailRequest

__all__ = ["KINDS", "EmailDraft", "EmailRequest", "compose"]
