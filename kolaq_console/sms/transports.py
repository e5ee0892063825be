"""Transports: `twilio` (the official SDK) and `dev` (a text file per message), and how
Twilio's errors map onto the email failure classes.

- `RateLimited`     429 / 20429: wait, retry without spending a retry;
- `TransientError`  5xx, or a connection that never opened: retry with the backoff;
- `InDoubt`         no answer after the request went out (timeout, reset): it may have been
                    sent, so the next attempt first looks in Twilio's message list;
- `OptedOut`        21610, the recipient replied STOP: fail at once, record the opt-out;
- `PermanentError`  21211 invalid number, 20003 / 401 / 403 auth, other 4xx: fail at once.
Twilio has no idempotency key for messages, so `find_sent` is how a retry asks "did it go?".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from kolaq_console.config import Settings
from kolaq_console.emails.transports import (
    PermanentError,
    RateLimited,
    SendError,
    TransientError,
)
from kolaq_console.errors import KolaqError
from kolaq_console.sms.phone import address
from kolaq_console.sms.segments import count_segments

__all__ = [
    "DevTransport",
    "InDoubt",
    "LookupUnanswerable",
    "OptedOut",
    "Outgoing",
    "PermanentError",
    "RateLimited",
    "SendError",
    "Sent",
    "TransientError",
    "Transport",
    "TwilioTransport",
    "build_transport",
]

log = logging.getLogger(__name__)
TWILIO_ORIGIN = "https://api.twilio.com"
INVALID_NUMBER_CODES = {21211, 21214, 21217, 21401, 21407, 21408, 21612, 21614}
AUTH_CODES = {20003, 20005, 20008}
UNSUBSCRIBED = 21610
RATE_LIMITED = 20429


@dataclass(frozen=True)
class Outgoing:
    """What a transport sends: a message row's snapshot."""

    row_id: int
    channel: str  # sms | whatsapp
    kind: str
    to: str  # E.164
    from_number: str
    body: str
    idempotency_key: str
    content_sid: str | None = None
    content_variables: dict[str, str] = field(default_factory=dict)
    status_callback: str | None = None


@dataclass(frozen=True)
class Sent:
    provider_message_id: str
    provider_status: str | None = None


@dataclass(frozen=True)
class Candidate:
    """A message in the provider's list that may be the one a dead worker sent."""

    provider_message_id: str
    created_at: datetime | None
    status: str | None


class InDoubt(TransientError):
    """The request may have reached Twilio: look before sending again."""


class OptedOut(PermanentError):
    """Twilio 21610: the recipient has opted out (replied STOP) of this sender."""


class LookupUnanswerable(KolaqError):
    """The message list could not say whether a message went out (too long, ambiguous)."""


def with_code(exc: SendError, code: int | None) -> SendError:
    exc.code = code  # type: ignore[attr-defined]
    return exc


def error_code(exc: BaseException) -> int | None:
    return getattr(exc, "code", None)


class Transport(Protocol):
    name: str
    rate_limited: bool

    def send(self, message: Outgoing) -> Sent: ...

    def candidates(self, message: Outgoing, since: datetime) -> list[Candidate]: ...


# --- classification ----------------------------------------------------------------------------


def classify_twilio_error(exc: Any) -> SendError:
    """Map a `twilio.base.exceptions.TwilioRestException` to a failure class."""
    status = int(getattr(exc, "status", 0) or 0)
    code = getattr(exc, "code", None)
    message = str(getattr(exc, "msg", "") or "").strip()
    reason = f"twilio {status} error {code or '?'}: {message}".strip()
    if status == 429 or code == RATE_LIMITED:
        return with_code(RateLimited(reason, 1.0, status=status), code)
    if code == UNSUBSCRIBED:
        return with_code(OptedOut(reason, status=status), code)
    if status >= 500:
        return with_code(TransientError(reason, status=status), code)
    if status in (401, 403) or code in AUTH_CODES:
        return with_code(PermanentError(f"{reason} (check TWILIO_ACCOUNT_SID and "
                                        "TWILIO_AUTH_TOKEN)", status=status), code)
    return with_code(PermanentError(reason, status=status), code)


def _never_connected(exc: BaseException) -> bool:
    """Did the connection fail before the request could be sent (refused, DNS, connect
    timeout)? Anything else after the socket opened leaves the outcome unknown."""
    from requests.exceptions import ConnectTimeout
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ConnectTimeout | NewConnectionError | NameResolutionError
                      | ConnectionRefusedError):
            return True
        stack.extend([*item.args, getattr(item, "reason", None), item.__cause__,
                      item.__context__])
    return False


def classify_network_error(exc: BaseException) -> SendError:
    name = type(exc).__name__
    if _never_connected(exc):
        return TransientError(f"could not connect to Twilio ({name}): {exc}")
    return InDoubt(f"no answer from Twilio ({name}); the message may have been sent: {exc}")


# --- twilio ------------------------------------------------------------------------------------

_http_log = logging.getLogger("kolaq_console.sms.twilio_http")
_http_log.setLevel(logging.WARNING)  # the SDK logs every request and header at INFO


def _routed_http_client(base_url: str | None, timeout: float):
    """The SDK's own HTTP client (a pooled requests session), sending what it addresses to
    https://api.twilio.com to `base_url` instead: the SDK has no base-URL setting, and a
    custom `http_client` is its documented extension point."""
    from twilio.http.http_client import TwilioHttpClient

    class RoutedHttpClient(TwilioHttpClient):
        def request(self, method, url, *args, **kwargs):
            if base_url and url.startswith(TWILIO_ORIGIN):
                url = base_url + url[len(TWILIO_ORIGIN):]
            return super().request(method, url, *args, **kwargs)

    return RoutedHttpClient(pool_connections=True, timeout=timeout, logger=_http_log)


class TwilioTransport:
    """Sends through the official `twilio` SDK, one client (and connection pool) per thread."""

    name = "twilio"
    rate_limited = True

    def __init__(self, account_sid: str, auth_token: str, api_url: str | None = None,
                 timeout: float = 30.0, lookup_limit: int = 200) -> None:
        missing = [n for n, v in (("TWILIO_ACCOUNT_SID", account_sid),
                                  ("TWILIO_AUTH_TOKEN", auth_token)) if not v]
        if missing:
            raise KolaqError(f"sms transport 'twilio' needs {' and '.join(missing)} in the "
                             "environment (or set [sms] transport = \"dev\")")
        self._sid = account_sid
        self._token = auth_token
        self._api_url = api_url.rstrip("/") if api_url else None
        self._timeout = timeout
        self.lookup_limit = lookup_limit
        self._local = threading.local()

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            from twilio.rest import Client

            client = self._local.client = Client(
                self._sid, self._token,
                http_client=_routed_http_client(self._api_url, self._timeout),
            )
        return client

    def params(self, message: Outgoing) -> dict[str, Any]:
        params: dict[str, Any] = {
            "to": address(message.channel, message.to),
            "from_": address(message.channel, message.from_number),
        }
        if message.content_sid:
            params["content_sid"] = message.content_sid
            params["content_variables"] = json.dumps(message.content_variables,
                                                     separators=(",", ":"))
        else:
            params["body"] = message.body
        if message.status_callback:
            params["status_callback"] = message.status_callback
        return params

    def _call(self, fn, *args, **kwargs):
        import requests
        from twilio.base.exceptions import TwilioException, TwilioRestException

        try:
            return fn(*args, **kwargs)
        except TwilioRestException as exc:
            raise classify_twilio_error(exc) from None
        except requests.RequestException as exc:
            self._local.client = None  # a broken connection must not be reused
            raise classify_network_error(exc) from None
        except TwilioException as exc:  # an answer the SDK could not read
            raise InDoubt(f"twilio SDK error: {exc}") from None

    def send(self, message: Outgoing) -> Sent:
        created = self._call(self._client().messages.create, **self.params(message))
        if not getattr(created, "sid", None):
            raise InDoubt("twilio answered without a message sid")
        return Sent(str(created.sid), getattr(created, "status", None))

    def candidates(self, message: Outgoing, since: datetime) -> list[Candidate]:
        """Messages to this recipient from this sender created since `since` whose content is
        this message's. Raises LookupUnanswerable if the history is longer than the limit.
        No date filter is sent: Twilio filters on date_sent, which a still-queued message
        does not have yet."""
        limit = self.lookup_limit
        found = self._call(
            self._client().messages.list,
            to=address(message.channel, message.to),
            from_=address(message.channel, message.from_number),
            limit=limit, page_size=min(limit, 1000),
        )
        if len(found) >= limit:
            raise LookupUnanswerable(
                f"more than {limit - 1} messages to {message.to} in Twilio's list "
                "([sms] lookup_limit); cannot tell whether this one went out")
        return [
            Candidate(str(m.sid), m.date_created, m.status)
            for m in found
            if (m.date_created is None or m.date_created >= since)
            and same_content(message, m.body or "")
        ]


def same_content(message: Outgoing, provider_body: str) -> bool:
    """Is `provider_body` (as Twilio lists it) this message's? An SMS body is ours verbatim
    (a trial account prefixes its notice); a template's rendered text contains every value."""
    if message.content_sid:
        values = [str(v) for v in message.content_variables.values() if str(v)]
        return bool(provider_body) and bool(values) and all(v in provider_body for v in values)
    return provider_body == message.body or provider_body.endswith(message.body)


# --- dev ---------------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_name(message: Outgoing) -> str:
    """One file per idempotency key: a re-sent message replaces its file, never doubles."""
    key = message.idempotency_key
    slug = _UNSAFE.sub("_", key).strip("_")[:80]
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:10]}.txt"


class DevTransport:
    """Writes each message as a readable text file; needs no account."""

    name = "dev"
    rate_limited = False

    def __init__(self, outbox_dir: str | Path) -> None:
        self.outbox_dir = Path(outbox_dir)

    @staticmethod
    def message_id(message: Outgoing) -> str:
        return "dev-" + hashlib.sha256(message.idempotency_key.encode()).hexdigest()[:24]

    @staticmethod
    def render(message: Outgoing) -> str:
        lines = [
            f"Channel: {message.channel}",
            f"Kind: {message.kind}",
            f"To: {address(message.channel, message.to)}",
            f"From: {address(message.channel, message.from_number or '(not set)')}",
            f"Key: {message.idempotency_key}",
        ]
        if message.content_sid:
            lines.append(f"Template: {message.content_sid} "
                         f"{json.dumps(message.content_variables, ensure_ascii=False)}")
        else:
            lines.append(f"Segments: {count_segments(message.body).describe()}")
        return "\n".join(lines) + "\n\n" + message.body + "\n"

    def send(self, message: Outgoing) -> Sent:
        try:
            self.outbox_dir.mkdir(parents=True, exist_ok=True)
            path = self.outbox_dir / file_name(message)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(self.render(message), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            raise TransientError(f"dev transport could not write {self.outbox_dir}: {exc}") from exc
        log.debug("dev transport: wrote %s", path)
        return Sent(self.message_id(message), "sent")

    def candidates(self, message: Outgoing, since: datetime) -> list[Candidate]:
        path = self.outbox_dir / file_name(message)
        return [Candidate(self.message_id(message), None, "sent")] if path.exists() else []


def build_transport(settings: Settings) -> Transport:
    """The configured transport (runtime.sms_transport() keeps one per process)."""
    s = settings.sms
    if s.transport == "twilio":
        sid, token = settings.secrets.twilio_account_sid, settings.secrets.twilio_auth_token
        return TwilioTransport(
            sid.get_secret_value() if sid else "",
            token.get_secret_value() if token else "",
            s.api_url or os.environ.get("TWILIO_API_URL") or None,
            s.request_timeout,
            s.lookup_limit,
        )
    return DevTransport(s.outbox_dir)
