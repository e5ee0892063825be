"""A strict local stand-in for the Resend HTTP API, driven by the real `resend` SDK.

It exists so tests and benchmarks exercise the same wire protocol production uses (auth, 422s,
idempotency replays and conflicts, 429s with rate-limit headers, dropped connections) without
network access or a real key. Pure stdlib so it starts in milliseconds and adds no dependency.

In-process::

    with ResendStub(api_keys={"test-key-not-real"}, rate_limit=2) as stub:
        resend.api_url, resend.api_key = stub.url, "test-key-not-real"
        resend.Emails.send({...}, options={"idempotency_key": "order-1/receipt"})
        assert len(stub.deliveries) == 1

As a separate process (for tests that spawn worker subprocesses sharing one stand-in)::

    python tests/stubs/resend_api.py --port 0 --rate-limit 2 --api-key KEY

prints its URL on the first stdout line and serves until SIGTERM/SIGINT. `ResendStubClient(url)`
(or `ResendStubProcess`, which also spawns it) offers the same inspection methods over the
`/_stub/...` control endpoints, so tests can treat both modes alike.

Behaviour mirrors https://resend.com/docs/api-reference (errors, send-email, send-batch-emails,
idempotency keys, rate limits). Where the real API is vaguer than a test needs, the stub picks
the stricter reading: unknown fields, null values and malformed addresses are rejected.

Longer than ~400 lines: one strict stand-in for the API surface the SDK uses (sending, batch,
idempotency, 429s, auth); its parts share the server's state.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_TEST_API_KEY",
    "Delivery",
    "Fault",
    "RequestRecord",
    "ResendStub",
    "ResendStubClient",
    "ResendStubProcess",
    "main",
]

DEFAULT_TEST_API_KEY = "test-key-not-real"
IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60
MAX_IDEMPOTENCY_KEY_LENGTH = 256
MAX_RECIPIENTS = 50
MAX_BATCH_SIZE = 100
# Advertised in the ratelimit-* headers when the stub runs unlimited, so clients that always
# parse those headers keep working instead of hitting a KeyError.
UNLIMITED_HEADER_VALUE = 1_000_000

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
SEND_PATH = "/emails"
BATCH_PATH = "/emails/batch"
CONTROL_PREFIX = "/_stub/"

SEND_FIELDS = frozenset(
    {
        "from", "to", "subject", "bcc", "cc", "reply_to", "html", "text", "headers",
        "attachments", "tags", "scheduled_at", "template", "topic_id",
    }
)  # fmt: skip
BATCH_FORBIDDEN_FIELDS = ("attachments", "scheduled_at")  # documented batch limitation
ATTACHMENT_FIELDS = frozenset(
    {"content", "filename", "path", "content_type", "content_id", "inline_content_id"}
)
BATCH_MODES = ("strict", "permissive")

_ADDR_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
_NAMED_ADDR_RE = re.compile(r"(?P<name>[^<>]*)<(?P<addr>[^<>]+)>")
_TAG_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_HEADER_NAME_RE = re.compile(r"[!-9;-~]{1,200}")  # printable ASCII except the colon
_ADDRESS_FORMAT_HINT = (
    "The email address needs to follow the `email@example.com` or "
    "`Name <email@example.com>` format."
)

# Error names the stub uses for injected statuses, matching Resend's error catalogue so the
# SDK maps them to the same exception classes it would in production.
_DEFAULT_ERROR_NAMES = {
    400: "validation_error",
    401: "missing_api_key",
    403: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    409: "concurrent_idempotent_requests",
    422: "validation_error",
    429: "rate_limit_exceeded",
    500: "application_error",
}


# --------------------------------------------------------------------------------------------
# Records exposed to tests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One email the stand-in accepted ("sent"). Batch items are expanded; replays are not."""

    id: str
    endpoint: str  # "/emails" or "/emails/batch"
    payload: dict[str, Any]
    idempotency_key: str | None
    headers: dict[str, str]  # request headers, lower-cased names, Authorization removed
    accepted_at: float
    batch_index: int | None = None

    @property
    def to(self) -> list[str]:
        value = self.payload.get("to")
        return [value] if isinstance(value, str) else list(value or [])

    @property
    def subject(self) -> str | None:
        return self.payload.get("subject")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Delivery:
        return cls(**data)


@dataclass(frozen=True)
class RequestRecord:
    """One API request as the stand-in saw it (control endpoints are not logged)."""

    method: str
    path: str
    status: int | None  # None: the connection was dropped without a response
    time: float  # arrival time, from the stub's clock
    idempotency_key: str | None = None
    error_name: str | None = None
    replayed: bool = False  # answered from the idempotency store, nothing sent
    fault: str | None = None  # description of the injected fault applied, if any
    emails: int | None = None  # email objects in the body (1 for /emails, n for a batch)
    validation: str | None = None  # the batch's x-batch-validation mode

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RequestRecord:
        return cls(**data)


@dataclass
class Fault:
    """A scripted failure applied to the next `times` matching API requests.

    `status`/`drop` short-circuit before the API does anything (nothing delivered, nothing
    stored), unless `after_processing` is set: then the request is fully processed (delivered,
    idempotency response stored) and only the response is replaced or lost, which is the case
    that makes idempotent retries necessary. A fault with only `delay` slows processing down
    while the idempotency key is held, which is how `concurrent_idempotent_requests` happens.
    """

    status: int | None = None
    drop: bool = False
    delay: float = 0.0
    times: int = 1
    path: str | None = None  # exact path match, e.g. "/emails/batch"; None matches any
    method: str | None = None
    after_processing: bool = False
    name: str | None = None  # error name in the JSON body; defaults by status
    message: str | None = None
    body: str | None = None  # raw body override, e.g. a CDN's HTML error page
    content_type: str = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status is not None and self.drop:
            raise ValueError("a fault either answers with a status or drops, not both")
        if self.status is None and not self.drop and self.delay <= 0:
            raise ValueError("a fault needs a status, drop=True or a positive delay")
        if self.after_processing and self.status is None and not self.drop:
            raise ValueError("after_processing only makes sense with a status or drop=True")
        if self.times < 1:
            raise ValueError("times must be >= 1")
        if self.method is not None:
            self.method = self.method.upper()

    def matches(self, method: str, path: str) -> bool:
        return (self.path is None or self.path == path) and (
            self.method is None or self.method == method
        )

    def describe(self) -> str:
        what = "drop" if self.drop else f"status={self.status}" if self.status else "delay"
        if self.delay and (self.drop or self.status):
            what += f"+delay={self.delay:g}"
        elif not (self.drop or self.status):
            what = f"delay={self.delay:g}"
        return what + (" after processing" if self.after_processing else "")


def _max_in_window(times: Iterable[float], window: float = 1.0) -> int:
    """Largest number of timestamps falling in any half-open window of `window` seconds."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


class _Inspection:
    """Inspection helpers shared by the in-process stub and the HTTP client."""

    @property
    def deliveries(self) -> list[Delivery]:
        raise NotImplementedError

    @property
    def requests(self) -> list[RequestRecord]:
        raise NotImplementedError

    def deliveries_by_key(self) -> dict[str | None, list[Delivery]]:
        """Deliveries grouped by idempotency key (None for requests sent without one)."""
        grouped: dict[str | None, list[Delivery]] = {}
        for delivery in self.deliveries:
            grouped.setdefault(delivery.idempotency_key, []).append(delivery)
        return grouped

    def max_requests_in_any_second(
        self, path: str | None = None, *, include_rejected: bool = True
    ) -> int:
        """Peak API requests received within any 1 s window: what a client-side limiter
        has to keep at or under the plan's limit. Rejected (429) requests count by default
        because the real limiter sees them too."""
        return _max_in_window(
            r.time
            for r in self.requests
            if (path is None or r.path == path) and (include_rejected or r.status != 429)
        )


# --------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------


class _ApiError(Exception):
    def __init__(
        self, status: int, name: str, message: str, headers: Mapping[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.name = name
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    error_name: str | None = None


@dataclass
class _IdempotencyEntry:
    fingerprint: str
    in_progress: bool = True
    stored_at: float = 0.0
    status: int = 0
    body: bytes = b""


@dataclass
class _Meta:
    """Per-request facts gathered while serving, for the request log."""

    replayed: bool = False
    emails: int | None = None
    validation: str | None = None


def _json_body(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> _Response:
    return _Response(
        status, _json_body(payload), {"content-type": JSON_CONTENT_TYPE, **(headers or {})}
    )


def _error_response(err: _ApiError) -> _Response:
    payload = {"statusCode": err.status, "name": err.name, "message": err.message}
    resp = _json_response(err.status, payload, err.headers)
    resp.error_name = err.name
    return resp


def _is_valid_address(value: str) -> bool:
    named = _NAMED_ADDR_RE.fullmatch(value.strip())
    candidate = named.group("addr").strip() if named else value.strip()
    return _ADDR_RE.fullmatch(candidate) is not None


def _address_problem(name: str, value: Any, *, max_items: int | None = None) -> str | None:
    if isinstance(value, str):
        values: list[Any] = [value]
    elif isinstance(value, list):
        values = value
    else:
        return f"Invalid `{name}` field. Expected a string or an array of strings."
    if max_items is not None and len(values) > max_items:
        return (
            f"Too many recipients in `{name}` field: got {len(values)}, the maximum is {max_items}."
        )
    for item in values:
        if not isinstance(item, str) or not _is_valid_address(item):
            return f"Invalid `{name}` field. {_ADDRESS_FORMAT_HINT}"
    return None


def _validate_email(item: Any, *, in_batch: bool) -> tuple[str, str] | None:
    """Return (error name, message) for the first problem in one email payload, or None."""
    if not isinstance(item, dict):
        return "validation_error", "Each email must be a JSON object."
    unknown = sorted(set(item) - SEND_FIELDS)
    if unknown:
        return "validation_error", f"Unknown field `{unknown[0]}` in the request body."
    if in_batch:
        for name in BATCH_FORBIDDEN_FIELDS:
            if name in item:
                return "validation_error", f"The `{name}` field is not supported for batch emails."

    template = item.get("template")
    required = ("to",) if template is not None else ("from", "to", "subject")
    for name in required:
        if item.get(name) in (None, "", []):
            return "missing_required_field", f"Missing `{name}` field."

    if "from" in item and (
        not isinstance(item["from"], str) or not _is_valid_address(item["from"])
    ):
        return "validation_error", f"Invalid `from` field. {_ADDRESS_FORMAT_HINT}"
    problem = _address_problem("to", item["to"], max_items=MAX_RECIPIENTS)
    if problem:
        return "validation_error", problem
    for name in ("cc", "bcc", "reply_to"):
        if name in item and (problem := _address_problem(name, item[name])):
            return "validation_error", problem

    for name in ("subject", "html", "text", "scheduled_at", "topic_id"):
        if name in item and not isinstance(item[name], str):
            return "validation_error", f"Invalid `{name}` field. Expected a string."

    if template is not None:
        if not isinstance(template, dict) or not isinstance(template.get("id"), str):
            return "validation_error", "Invalid `template` field. Expected an object with `id`."
        if "html" in item or "text" in item:
            return "validation_error", "Cannot send `html` or `text` together with `template`."
    elif not item.get("html") and not item.get("text"):
        return "validation_error", "Missing `html` or `text` field."

    headers = item.get("headers")
    if "headers" in item and not (
        isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())
    ):
        return "validation_error", "Invalid `headers` field. Expected an object of strings."
    for name, value in (headers or {}).items():
        # RFC 5322 field names; a line break in a value would inject headers of its own.
        if not _HEADER_NAME_RE.fullmatch(name) or any(c in value for c in "\r\n\0"):
            return "validation_error", f"Invalid `headers` field. Header {name!r} is malformed."

    if "tags" in item:
        tags = item["tags"]
        if not isinstance(tags, list):
            return "validation_error", "Invalid `tags` field. Expected an array."
        for tag in tags:
            ok = (
                isinstance(tag, dict)
                and set(tag) <= {"name", "value"}
                and isinstance(tag.get("name"), str)
                and _TAG_RE.fullmatch(tag["name"]) is not None
                and ("value" not in tag or (
                    isinstance(tag["value"], str) and _TAG_RE.fullmatch(tag["value"]) is not None
                ))
            )  # fmt: skip
            if not ok:
                return "validation_error", (
                    "Invalid `tags` field. Tag names and values can only contain ASCII letters, "
                    "numbers, underscores or dashes, up to 256 characters."
                )

    if "attachments" in item:
        attachments = item["attachments"]
        if not isinstance(attachments, list):
            return "validation_error", "Invalid `attachments` field. Expected an array."
        for att in attachments:
            if not isinstance(att, dict) or set(att) - ATTACHMENT_FIELDS:
                return "invalid_attachment", "Invalid attachment object."
            if not att.get("content") and not att.get("path"):
                return "invalid_attachment", "Attachment must have either a `content` or `path`."
    return None


def _fingerprint(path: str, mode: str | None, body: Any) -> str:
    canonical = json.dumps([path, mode, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class ResendStub(_Inspection):
    """In-process Resend API stand-in on a free loopback port. Thread-safe throughout."""

    def __init__(
        self,
        api_keys: Iterable[str] | str = (DEFAULT_TEST_API_KEY,),
        rate_limit: int | None = None,
        *,
        daily_quota: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        idempotency_ttl: float = IDEMPOTENCY_TTL_SECONDS,
    ) -> None:
        keys = {api_keys} if isinstance(api_keys, str) else set(api_keys)
        if not keys:
            raise ValueError("the stub needs at least one accepted API key")
        self._api_keys = frozenset(keys)
        self._host = host
        self._port = port
        self._clock = clock
        self._idempotency_ttl = idempotency_ttl
        self._initial_daily_quota = daily_quota

        self._lock = threading.Lock()
        self._rate_limit = rate_limit
        self._daily_quota_remaining = daily_quota
        self._window: deque[float] = deque()  # admitted request times, sliding 1 s window
        self._idempotency: dict[tuple[str, str], _IdempotencyEntry] = {}
        self._faults: list[Fault] = []
        self._deliveries: list[Delivery] = []
        self._requests: list[RequestRecord] = []
        self._emails: dict[str, dict[str, Any]] = {}

        self._stopping = threading.Event()
        # Set by stop() or release_delays(): injected delays end at once (the provider done).
        self._wake = threading.Event()
        self._httpd: _StubHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> ResendStub:
        if self._httpd is not None:
            raise RuntimeError("stub already started")
        self._stopping.clear()
        self._wake.clear()
        self._httpd = _StubHTTPServer((self._host, self._port), _Handler, self)
        self._thread = threading.Thread(
            # A short poll interval keeps stop() fast; shutdown() waits for the next poll.
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"resend-stub:{self._httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        self._wake.set()  # wakes handlers sleeping on an injected delay
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ResendStub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("stub not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    # ---- configuration and fault injection -------------------------------------------------

    def inject(
        self,
        status: int | None = None,
        *,
        drop: bool = False,
        delay: float = 0.0,
        times: int = 1,
        path: str | None = None,
        method: str | None = None,
        after_processing: bool = False,
        name: str | None = None,
        message: str | None = None,
        body: str | None = None,
        content_type: str = JSON_CONTENT_TYPE,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue a fault for the next `times` API requests matching `path`/`method` (FIFO)."""
        fault = Fault(
            status=status, drop=drop, delay=delay, times=times, path=path, method=method,
            after_processing=after_processing, name=name, message=message, body=body,
            content_type=content_type, headers=dict(headers or {}),
        )  # fmt: skip
        with self._lock:
            self._faults.append(fault)

    def release_delays(self) -> None:
        """End every injected delay now, and any later one at once: the provider finishes
        what it holds (a test waits for that instead of sleeping a delay out)."""
        self._wake.set()

    def set_rate_limit(self, rate_limit: int | None) -> None:
        with self._lock:
            self._rate_limit = rate_limit
            self._window.clear()

    def set_daily_quota(self, remaining: int | None) -> None:
        """Emails still allowed today; 0 makes every send fail with `daily_quota_exceeded`."""
        with self._lock:
            self._daily_quota_remaining = remaining

    def reset(self) -> None:
        """Forget deliveries, requests, idempotency keys, faults and rate-limit history."""
        with self._lock:
            self._window.clear()
            self._idempotency.clear()
            self._faults.clear()
            self._deliveries.clear()
            self._requests.clear()
            self._emails.clear()
            self._daily_quota_remaining = self._initial_daily_quota
        if not self._stopping.is_set():
            self._wake.clear()

    # ---- inspection ------------------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def pending_idempotency_keys(self) -> list[str]:
        """Keys whose first request is still being processed (lets tests avoid sleeps)."""
        with self._lock:
            return [key for (_, key), e in self._idempotency.items() if e.in_progress]

    # ---- request handling ------------------------------------------------------------------

    def _dispatch(
        self, method: str, path: str, headers: Mapping[str, str], raw: bytes
    ) -> _Response:
        if path.startswith(CONTROL_PREFIX):
            return self._control(method, path, raw)
        arrived = self._clock()
        fault = self._take_fault(method, path)
        meta = _Meta()
        try:
            if fault is not None and not fault.after_processing and (fault.drop or fault.status):
                self._sleep(fault.delay)
                resp = self._fault_response(fault)
            else:
                try:
                    resp = self._serve(method, path, headers, raw, fault, meta)
                except _ApiError as err:
                    resp = _error_response(err)
                if fault is not None and fault.after_processing:
                    resp = self._fault_response(fault)
        except Exception as exc:  # a stub bug must surface loudly, not as a hung client
            traceback.print_exc()
            resp = _error_response(
                _ApiError(500, "internal_server_error", f"resend stub crashed: {exc!r}")
            )
        with self._lock:
            # Every response carries the rate-limit headers, as the real API does.
            resp.headers = {**self._rate_headers_locked(self._clock()), **resp.headers}
            self._requests.append(
                RequestRecord(
                    method=method,
                    path=path,
                    status=None if resp.drop else resp.status,
                    time=arrived,
                    idempotency_key=headers.get("idempotency-key"),
                    error_name=resp.error_name,
                    replayed=meta.replayed,
                    fault=fault.describe() if fault else None,
                    emails=meta.emails,
                    validation=meta.validation,
                )
            )
        return resp

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times == 0:
                        del self._faults[index]
                    return fault
        return None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._wake.wait(seconds)  # interruptible: stop() and release_delays() end it

    def _fault_response(self, fault: Fault) -> _Response:
        if fault.drop:
            return _Response(0, drop=True)
        status = int(fault.status or 500)
        headers = dict(fault.headers)
        if status == 429:
            headers.setdefault("retry-after", "1")
        if fault.body is not None:
            return _Response(
                status, fault.body.encode(), {"content-type": fault.content_type, **headers}
            )
        name = fault.name or _DEFAULT_ERROR_NAMES.get(
            status, "internal_server_error" if status >= 500 else "validation_error"
        )
        message = fault.message or f"Injected fault: HTTP {status}."
        return _error_response(_ApiError(status, name, message, headers))

    def _serve(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        raw: bytes,
        fault: Fault | None,
        meta: _Meta,
    ) -> _Response:
        self._authenticate(headers)
        self._admit()
        delay = fault.delay if fault is not None and not fault.after_processing else 0.0

        if path in (SEND_PATH, BATCH_PATH):
            if method != "POST":
                raise _ApiError(405, "method_not_allowed", "Method is not allowed for this path.")
            return self._send(path, headers, raw, delay, meta)
        if path.startswith(SEND_PATH + "/") and path.count("/") == 2:
            if method != "GET":
                raise _ApiError(405, "method_not_allowed", "Method is not allowed for this path.")
            self._sleep(delay)
            with self._lock:
                email = self._emails.get(path.rsplit("/", 1)[1])
            if email is None:
                raise _ApiError(404, "not_found", "Email not found.")
            return _json_response(200, email)
        raise _ApiError(404, "not_found", "The requested endpoint does not exist.")

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        auth = headers.get("authorization", "").strip()
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        # The SDK sends "Bearer " + str(api_key), so an unset key arrives as "Bearer None"
        # (-> 403) and an empty one as "Bearer" (-> 401).
        if not auth or not token:
            raise _ApiError(401, "missing_api_key", "Missing API key in the authorization header.")
        if scheme.lower() != "bearer" or token not in self._api_keys:
            raise _ApiError(403, "invalid_api_key", "API key is invalid.")

    def _admit(self) -> None:
        with self._lock:
            now = self._clock()
            limit = self._rate_limit
            if limit is None:
                return
            self._expire_window_locked(now)
            if len(self._window) >= limit:
                retry_after = max(1, math.ceil(self._window[0] + 1.0 - now))
                raise _ApiError(
                    429,
                    "rate_limit_exceeded",
                    f"Too many requests. You can only make {limit} requests per second. See "
                    "rate limit response headers for more information.",
                    {"retry-after": str(retry_after)},
                )
            self._window.append(now)

    def _expire_window_locked(self, now: float) -> None:
        while self._window and now - self._window[0] >= 1.0:
            self._window.popleft()

    def _rate_headers_locked(self, now: float) -> dict[str, str]:
        limit = self._rate_limit
        if limit is None:
            value = str(UNLIMITED_HEADER_VALUE)
            return {"ratelimit-limit": value, "ratelimit-remaining": value, "ratelimit-reset": "1"}
        self._expire_window_locked(now)
        reset = max(1, math.ceil(self._window[0] + 1.0 - now)) if self._window else 1
        return {
            "ratelimit-limit": str(limit),
            "ratelimit-remaining": str(max(0, limit - len(self._window))),
            "ratelimit-reset": str(reset),
        }

    def _send(
        self, path: str, headers: Mapping[str, str], raw: bytes, delay: float, meta: _Meta
    ) -> _Response:
        key = headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
            raise _ApiError(
                400,
                "invalid_idempotency_key",
                f"Idempotency keys, if present, must have between 1 and "
                f"{MAX_IDEMPOTENCY_KEY_LENGTH} characters.",
            )
        batch = path == BATCH_PATH
        mode: str | None = None
        if batch:
            mode = headers.get("x-batch-validation", "strict")
            if mode not in BATCH_MODES:
                raise _ApiError(
                    422, "validation_error", "`x-batch-validation` must be strict or permissive."
                )
        body = self._parse_json(headers, raw)
        meta.emails = len(body) if batch and isinstance(body, list) else 1
        meta.validation = mode

        scope = (path, key) if key is not None else None
        entry: _IdempotencyEntry | None = None
        if scope is not None:
            fingerprint = _fingerprint(path, mode, body)
            with self._lock:
                now = self._clock()
                existing = self._idempotency.get(scope)
                expired = (
                    existing is not None
                    and not existing.in_progress
                    and now - existing.stored_at >= self._idempotency_ttl
                )
                if expired:
                    del self._idempotency[scope]
                    existing = None
                if existing is not None:
                    if existing.in_progress:
                        raise _ApiError(
                            409,
                            "concurrent_idempotent_requests",
                            "Same idempotency key used while original request is still in "
                            "progress.",
                        )
                    if existing.fingerprint != fingerprint:
                        raise _ApiError(
                            409,
                            "invalid_idempotent_request",
                            "Same idempotency key used with a different request payload.",
                        )
                    meta.replayed = True
                    return _json_response(existing.status, json.loads(existing.body))
                entry = self._idempotency[scope] = _IdempotencyEntry(fingerprint)

        committed = False
        try:
            items, errors = self._validate(body, batch=batch, mode=mode)
            self._sleep(delay)
            with self._lock:
                quota = self._daily_quota_remaining
                if quota is not None and len(items) > quota:
                    raise _ApiError(
                        429,
                        "daily_quota_exceeded",
                        "You have reached your daily email sending quota.",
                    )
                now = self._clock()
                ids = self._commit_locked(path, items, key, headers, now)
                if quota is not None:
                    self._daily_quota_remaining = quota - len(ids)
                response: dict[str, Any]
                if batch:
                    # Permissive: `data` lists the accepted emails in request order; `errors`
                    # the refused ones by request index (all refused is still a 200).
                    response = {"data": [{"id": i} for i in ids]}
                    if mode == "permissive":
                        response["errors"] = errors
                else:
                    response = {"id": ids[0]}
                resp = _json_response(200, response)
                if entry is not None:
                    # Only successes are stored: a failed request may be retried with the key.
                    entry.in_progress = False
                    entry.stored_at = now
                    entry.status = resp.status
                    entry.body = resp.body
                committed = True
            return resp
        finally:
            if scope is not None and not committed:
                with self._lock:
                    if self._idempotency.get(scope) is entry:
                        del self._idempotency[scope]

    def _parse_json(self, headers: Mapping[str, str], raw: bytes) -> Any:
        content_type = headers.get("content-type", "")
        if "application/json" not in content_type.lower():
            raise _ApiError(
                400, "validation_error", "The request body must be JSON (application/json)."
            )
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _ApiError(
                400, "validation_error", "The request body is not valid JSON."
            ) from None

    def _validate(
        self, body: Any, *, batch: bool, mode: str | None
    ) -> tuple[list[tuple[int | None, dict[str, Any]]], list[dict[str, Any]]]:
        """Return (accepted items with their batch index, permissive-mode errors)."""
        if not batch:
            if not isinstance(body, dict):
                raise _ApiError(422, "validation_error", "The request body must be an object.")
            problem = _validate_email(body, in_batch=False)
            if problem:
                raise _ApiError(422, *problem)
            return [(None, body)], []

        if not isinstance(body, list):
            raise _ApiError(422, "validation_error", "The request body must be an array of emails.")
        if not body:
            raise _ApiError(422, "validation_error", "The batch must contain at least one email.")
        if len(body) > MAX_BATCH_SIZE:
            raise _ApiError(
                422,
                "validation_error",
                f"Too many emails in batch: got {len(body)}, the maximum is {MAX_BATCH_SIZE}.",
            )
        accepted: list[tuple[int | None, dict[str, Any]]] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(body):
            problem = _validate_email(item, in_batch=True)
            if problem is None:
                accepted.append((index, item))
            elif mode == "strict":
                raise _ApiError(422, problem[0], f"emails[{index}]: {problem[1]}")
            else:
                errors.append({"index": index, "message": problem[1]})
        return accepted, errors

    def _commit_locked(
        self,
        path: str,
        items: Sequence[tuple[int | None, dict[str, Any]]],
        key: str | None,
        headers: Mapping[str, str],
        now: float,
    ) -> list[str]:
        kept_headers = {k: v for k, v in headers.items() if k != "authorization"}
        created_at = datetime.fromtimestamp(now, UTC).isoformat()
        ids = []
        for index, payload in items:
            email_id = str(uuid.uuid4())
            ids.append(email_id)
            self._deliveries.append(
                Delivery(
                    id=email_id,
                    endpoint=path,
                    payload=payload,
                    idempotency_key=key,
                    headers=kept_headers,
                    accepted_at=now,
                    batch_index=index,
                )
            )
            self._emails[email_id] = self._email_object(email_id, payload, created_at)
        return ids

    @staticmethod
    def _email_object(email_id: str, payload: Mapping[str, Any], created_at: str) -> dict[str, Any]:
        def as_list(value: Any) -> list[Any] | None:
            return None if value is None else [value] if isinstance(value, str) else list(value)

        return {
            "object": "email",
            "id": email_id,
            "to": as_list(payload.get("to")),
            "from": payload.get("from"),
            "created_at": created_at,
            "subject": payload.get("subject"),
            "html": payload.get("html"),
            "text": payload.get("text"),
            "bcc": as_list(payload.get("bcc")),
            "cc": as_list(payload.get("cc")),
            "reply_to": as_list(payload.get("reply_to")),
            "last_event": "scheduled" if payload.get("scheduled_at") else "delivered",
            "scheduled_at": payload.get("scheduled_at"),
        }

    # ---- control endpoints (process mode inspection) ----------------------------------------

    def _control(self, method: str, path: str, raw: bytes) -> _Response:
        route = path[len(CONTROL_PREFIX) :]
        try:
            args = json.loads(raw) if raw else {}
            if method == "GET" and route == "deliveries":
                return _json_response(200, {"deliveries": [d.to_json() for d in self.deliveries]})
            if method == "GET" and route == "requests":
                return _json_response(200, {"requests": [r.to_json() for r in self.requests]})
            if method == "GET" and route == "pending_idempotency_keys":
                return _json_response(200, {"keys": self.pending_idempotency_keys()})
            if method == "POST" and route == "reset":
                self.reset()
                return _json_response(200, {"ok": True})
            if method == "POST" and route == "inject":
                self.inject(**args)
                return _json_response(200, {"ok": True})
            if method == "POST" and route == "release_delays":
                self.release_delays()
                return _json_response(200, {"ok": True})
            if method == "POST" and route == "config":
                if "rate_limit" in args:
                    self.set_rate_limit(args["rate_limit"])
                if "daily_quota" in args:
                    self.set_daily_quota(args["daily_quota"])
                return _json_response(200, {"ok": True})
        except (TypeError, ValueError) as exc:
            return _json_response(400, {"error": str(exc)})
        return _json_response(404, {"error": f"unknown control endpoint {method} {path}"})


class _StubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Many worker processes connect at once in the benchmarks; the default backlog is 5.
    request_queue_size = 256

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], stub: ResendStub
    ) -> None:
        self.stub = stub
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for clients that pool connections (httpx)
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK holds the
    # body back ~40 ms on every keep-alive response, which would dominate any throughput bench.
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections must not pin handler threads forever
    server: _StubHTTPServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        if self.server.stub._stopping.is_set():
            # A pooled keep-alive connection outlived stop(): behave like a closed port.
            self.close_connection = True
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.close_connection = True
            self._write(
                _error_response(_ApiError(411, "validation_error", "Content-Length is required."))
            )
            return
        raw = self.rfile.read(int(headers.get("content-length") or 0))
        path = urllib.parse.urlsplit(self.path).path
        resp = self.server.stub._dispatch(method, path, headers, raw)
        if resp.drop:
            # Close without a status line: the client sees a reset/empty reply, as when a
            # load balancer or the network drops the connection mid-request.
            self.close_connection = True
            return
        self._write(resp)

    def _write(self, resp: _Response) -> None:
        try:
            self.send_response(resp.status)
            for name, value in resp.headers.items():
                self.send_header(name, value)  # lower-case names, like Resend's HTTP/2 edge
            self.send_header("content-length", str(len(resp.body)))
            self.end_headers()
            self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean; the request log is on the stub


# --------------------------------------------------------------------------------------------
# Process mode: client and launcher
# --------------------------------------------------------------------------------------------


class ResendStubClient(_Inspection):
    """Inspect and steer a stand-in running in another process, via `/_stub/...`."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout

    def _call(self, method: str, route: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.url}{CONTROL_PREFIX}{route}",
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"resend stub control call failed: {err.read().decode()}") from err

    @property
    def deliveries(self) -> list[Delivery]:
        return [Delivery.from_json(d) for d in self._call("GET", "deliveries")["deliveries"]]

    @property
    def requests(self) -> list[RequestRecord]:
        return [RequestRecord.from_json(r) for r in self._call("GET", "requests")["requests"]]

    def pending_idempotency_keys(self) -> list[str]:
        return list(self._call("GET", "pending_idempotency_keys")["keys"])

    def reset(self) -> None:
        self._call("POST", "reset", {})

    def inject(self, status: int | None = None, **kwargs: Any) -> None:
        """Same arguments as `ResendStub.inject`."""
        self._call("POST", "inject", {"status": status, **kwargs})

    def release_delays(self) -> None:
        self._call("POST", "release_delays", {})

    def set_rate_limit(self, rate_limit: int | None) -> None:
        self._call("POST", "config", {"rate_limit": rate_limit})

    def set_daily_quota(self, remaining: int | None) -> None:
        self._call("POST", "config", {"daily_quota": remaining})


class ResendStubProcess(ResendStubClient):
    """Spawn this file as a process (`python tests/stubs/resend_api.py`); inspect it like a
    `ResendStub`."""

    def __init__(
        self,
        api_keys: Iterable[str] | str = (DEFAULT_TEST_API_KEY,),
        rate_limit: int | None = None,
        *,
        daily_quota: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 10.0,
    ) -> None:
        super().__init__("")
        keys = [api_keys] if isinstance(api_keys, str) else list(api_keys)
        script = str(Path(__file__).resolve())
        self._argv = [sys.executable, script, "--host", host, "--port", str(port)]
        for key in keys:
            self._argv += ["--api-key", key]
        if rate_limit is not None:
            self._argv += ["--rate-limit", str(rate_limit)]
        if daily_quota is not None:
            self._argv += ["--daily-quota", str(daily_quota)]
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> ResendStubProcess:
        if self._proc is not None:
            raise RuntimeError("stub process already started")
        # Pure stdlib: the child runs this file as a script and needs no import path.
        self._proc = subprocess.Popen(self._argv, stdout=subprocess.PIPE, text=True, close_fds=True)
        assert self._proc.stdout is not None
        watchdog = threading.Timer(self._startup_timeout, self._proc.kill)
        watchdog.start()
        try:
            line = self._proc.stdout.readline().strip()
        finally:
            watchdog.cancel()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"resend stub process failed to start (first line: {line!r})")
        self.url = line
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> ResendStubProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tests/stubs/resend_api.py",
        description="Run the Resend API stand-in; prints its URL on the first stdout line.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--rate-limit", type=int, default=None, help="requests/second; omit=none")
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        help=f"accepted key (repeatable; default {DEFAULT_TEST_API_KEY!r})",
    )
    parser.add_argument("--daily-quota", type=int, default=None, help="emails allowed; omit=none")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    stub = ResendStub(
        args.api_keys or [DEFAULT_TEST_API_KEY],
        rate_limit=args.rate_limit,
        daily_quota=args.daily_quota,
        host=args.host,
        port=args.port,
    )
    with stub:
        print(stub.url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
