"""Transports: `resend` (the official SDK) and `dev` (.eml files), and the failure classes.

A transport sends one `Message` (`send` -> `SendResult`) or up to 100 in one request
(`send_batch` -> `BatchResult`: which were accepted, with their ids, and which the provider
refused, with its reason), or raises one of:
- `RateLimited`      429 rate_limit_exceeded: wait for `retry_after`, retry without spending
                     a retry;
- `QuotaExceeded`    429 daily/monthly quota: defer until the quota resets;
- `TransientError`   5xx, network errors, 408, 409 concurrent_idempotent_requests: retry
                     with the configured backoff;
- `PermanentError`   400/422 validation, 401/403 key, 409 invalid_idempotent_request, 451 and
                     other 4xx: fail at once with the provider's reason.
Every request carries its idempotency key (the message's, or the batch's) on every attempt,
so a retried or re-enqueued send never reaches the recipient twice.

The SDK's HTTP client is ours (emails.http_client: a keep-alive pool per thread, orjson).
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from kolaq_console.config import Settings
from kolaq_console.emails.http_client import session_client_class
from kolaq_console.emails.ratelimit import retry_after_seconds
from kolaq_console.errors import KolaqError
from kolaq_console.models import OUTBOX_TAG
from kolaq_console.redact import redact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """What a transport sends: an outbox row's rendered snapshot plus its envelope."""

    from_address: str
    to: str
    subject: str
    html: str
    text: str
    idempotency_key: str
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # extra headers (List-Unsubscribe)
    outbox_id: int | None = None  # sent as the tag OUTBOX_TAG: webhooks name the row by it


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    headers: dict[str, str] = field(default_factory=dict)  # response headers, lower-case


@dataclass(frozen=True)
class BatchResult:
    """A batch's answer, by position in the request: accepted (provider id) or refused."""

    accepted: dict[int, str]
    refused: dict[int, str]  # the provider's reason, operator-safe
    headers: dict[str, str] = field(default_factory=dict)


class SendError(KolaqError):
    """A send that did not happen (or whose outcome is unknown); `reason` is operator-safe."""

    def __init__(self, reason: str, *, status: int | None = None, headers=None) -> None:
        super().__init__(redact(reason))
        self.reason = redact(reason)
        self.status = status
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}


class RateLimited(SendError):
    def __init__(self, reason: str, retry_after: float, **kw: Any) -> None:
        super().__init__(reason, **kw)
        self.retry_after = retry_after


class QuotaExceeded(SendError):
    def __init__(self, reason: str, retry_after: float, **kw: Any) -> None:
        super().__init__(reason, **kw)
        self.retry_after = retry_after


class TransientError(SendError):
    pass


class PermanentError(SendError):
    pass


class Transport(Protocol):
    name: str
    rate_limited: bool

    def send(self, message: Message) -> SendResult: ...

    def send_batch(self, messages: list[Message], idempotency_key: str) -> BatchResult: ...


# --- classification ----------------------------------------------------------------------------


def _code(exc: Any) -> int:
    try:
        return int(getattr(exc, "code", 0) or 0)
    except (TypeError, ValueError):
        return 0


def until_quota_reset(kind: str, now: datetime | None = None) -> float:
    """Seconds until a daily (next UTC midnight) or monthly (1st of next month) quota resets."""
    now = now or datetime.now(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    if kind == "monthly":
        year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
        midnight = datetime(year, month, 1, tzinfo=UTC)
    return max(1.0, (midnight - now).total_seconds())


def classify_resend_error(exc: Any) -> SendError:
    """Map a `resend.exceptions.ResendError` to one of our failure classes."""
    code = _code(exc)
    name = str(getattr(exc, "error_type", "") or "")
    message = str(getattr(exc, "message", "") or exc)
    headers = {k.lower(): str(v) for k, v in (getattr(exc, "headers", None) or {}).items()}
    reason = f"resend {code or '?'} {name}: {message}".strip()
    kw = {"status": code or None, "headers": headers}
    if code == 429:
        if name in ("daily_quota_exceeded", "monthly_quota_exceeded"):
            kind = "monthly" if name.startswith("monthly") else "daily"
            wait = retry_after_seconds(headers, default=0) or until_quota_reset(kind)
            return QuotaExceeded(reason, wait, **kw)
        return RateLimited(reason, retry_after_seconds(headers, default=1.0), **kw)
    if name == "HttpClientError":
        return TransientError(f"network error talking to Resend: {message}", **kw)
    if code == 409:
        if name == "concurrent_idempotent_requests":
            return TransientError(reason, **kw)
        return PermanentError(reason, **kw)
    if code >= 500 or code == 408 or code == 0:
        return TransientError(reason, **kw)
    return PermanentError(reason, **kw)


# --- resend ------------------------------------------------------------------------------------


_sdk_lock = threading.Lock()
MAX_BATCH = 100


class ResendTransport:
    """Sends through the official `resend` SDK (its module globals hold key, URL and client)."""

    name = "resend"
    rate_limited = True  # goes through the shared provider rate limiter

    def __init__(self, api_key: str, api_url: str | None = None, timeout: float = 30.0) -> None:
        import resend

        if not api_key:
            raise KolaqError(
                "email transport 'resend' needs RESEND_API_KEY in the environment "
                "(or set [email] transport = \"dev\")"
            )
        self._resend = resend
        self._api_key = api_key
        self._api_url = api_url.rstrip("/") if api_url else None
        self._client = session_client_class()(timeout)
        self._point_sdk()

    def _point_sdk(self) -> None:
        # The SDK keeps key, URL and HTTP client in module globals; one process normally has one
        # transport, but re-asserting them per call keeps a second one (tests) honest.
        with _sdk_lock:
            self._resend.api_key = self._api_key
            if self._api_url:
                self._resend.api_url = self._api_url
            self._resend.default_http_client = self._client

    def params(self, message: Message) -> dict[str, Any]:
        params: dict[str, Any] = {
            "from": message.from_address,
            "to": [message.to],
            "subject": message.subject,
            "html": message.html,
            "text": message.text,
        }
        if message.reply_to:
            params["reply_to"] = message.reply_to
        if message.headers:
            params["headers"] = dict(message.headers)
        if message.outbox_id is not None:
            params["tags"] = [{"name": OUTBOX_TAG, "value": str(message.outbox_id)}]
        return params

    def send(self, message: Message) -> SendResult:
        from resend.exceptions import ResendError

        self._point_sdk()
        try:
            response = self._resend.Emails.send(
                self.params(message),  # type: ignore[arg-type]
                options={"idempotency_key": message.idempotency_key},
            )
        except ResendError as exc:
            raise classify_resend_error(exc) from None
        except Exception as exc:  # the SDK's own bugs or unexpected payloads: retry, visibly
            raise TransientError(f"resend SDK error: {type(exc).__name__}: {exc}") from None
        return self._result(response)

    def send_batch(self, messages: list[Message], idempotency_key: str) -> BatchResult:
        """Up to 100 messages in one POST /emails/batch, permissive (a message the provider
        refuses fails alone), under one idempotency key for the whole batch (the messages' own
        keys are not sent). Raises the same failure classes as `send` for the request."""
        from resend.exceptions import ResendError

        if not 1 <= len(messages) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1-{MAX_BATCH} messages, got {len(messages)}")
        self._point_sdk()
        try:
            response = self._resend.Batch.send(
                [self.params(m) for m in messages],  # type: ignore[misc]
                options={"idempotency_key": idempotency_key, "batch_validation": "permissive"},
            )
        except ResendError as exc:
            raise classify_resend_error(exc) from None
        except Exception as exc:
            raise TransientError(f"resend SDK error: {type(exc).__name__}: {exc}") from None
        headers = {k.lower(): str(v) for k, v in (response.get("http_headers") or {}).items()}
        refused = {
            int(e["index"]): redact(f"resend refused it: {e.get('message') or 'invalid'}")
            for e in (response.get("errors") or [])
        }
        ids = [str(item["id"]) for item in (response.get("data") or [])]
        positions = [i for i in range(len(messages)) if i not in refused]
        if len(ids) != len(positions):
            raise TransientError(
                f"resend batch answered {len(ids)} ids and {len(refused)} errors for "
                f"{len(messages)} emails"
            )
        return BatchResult(dict(zip(positions, ids, strict=True)), refused, headers)

    @staticmethod
    def _result(response: Any) -> SendResult:
        headers = {k.lower(): str(v) for k, v in (response.get("http_headers") or {}).items()}
        message_id = response.get("id")
        if not message_id:
            raise TransientError("resend answered without an email id")
        return SendResult(str(message_id), headers)


# --- dev ---------------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def eml_name(idempotency_key: str) -> str:
    """A file name per idempotency key, so a re-sent message replaces its file, never doubles."""
    slug = _UNSAFE.sub("_", idempotency_key).strip("_")[:80]
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:10]
    return f"{slug}-{digest}.eml"


class DevTransport:
    """Writes each message as an .eml file (open it in any mail client); needs no key."""

    name = "dev"
    rate_limited = False  # no provider, no limit

    def __init__(self, outbox_dir: str | Path) -> None:
        self.outbox_dir = Path(outbox_dir)

    def build(self, message: Message) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = message.from_address
        msg["To"] = message.to
        msg["Subject"] = message.subject
        if message.reply_to:
            msg["Reply-To"] = message.reply_to
        msg["Date"] = email.utils.formatdate(localtime=False)
        msg["Message-ID"] = f"<{self.message_id(message)}@kolaq.dev>"
        msg["X-Kolaq-Idempotency-Key"] = message.idempotency_key
        for name, value in message.headers.items():
            msg[name] = value
        msg.set_content(message.text)
        msg.add_alternative(message.html, subtype="html")
        return msg

    @staticmethod
    def message_id(message: Message) -> str:
        return "dev-" + hashlib.sha256(message.idempotency_key.encode()).hexdigest()[:24]

    def send(self, message: Message) -> SendResult:
        try:
            self.outbox_dir.mkdir(parents=True, exist_ok=True)
            path = self.outbox_dir / eml_name(message.idempotency_key)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(bytes(self.build(message)))
            os.replace(tmp, path)
        except OSError as exc:
            raise TransientError(f"dev transport could not write {self.outbox_dir}: {exc}") from exc
        log.info("dev transport: wrote %s (subject %r)", path, message.subject)
        return SendResult(self.message_id(message))

    def send_batch(self, messages: list[Message], idempotency_key: str) -> BatchResult:
        """Each message as its own file (a batch is a provider's request, not a file's)."""
        return BatchResult(
            {i: self.send(m).provider_message_id for i, m in enumerate(messages)}, {}
        )


def build_transport(settings: Settings) -> Transport:
    """The configured transport (runtime.transport() keeps one per process)."""
    e = settings.email
    if e.transport == "resend":
        key = settings.secrets.resend_api_key
        return ResendTransport(
            key.get_secret_value() if key else "",
            e.api_url or os.environ.get("RESEND_API_URL") or None,
            e.request_timeout,
        )
    return DevTransport(e.outbox_dir)
