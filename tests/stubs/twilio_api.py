"""A strict local stand-in for Twilio's Messages API, driven by the real `twilio` SDK.

It models what the SMS/WhatsApp code relies on, so tests and benchmarks exercise the wire
protocol production uses without network access or a real account:

- `POST /2010-04-01/Accounts/{sid}/Messages.json`, form-encoded, HTTP basic auth (account sid,
  auth token): 201 with a message resource (`sid` SM + 32 hex, `status` queued, `date_sent`
  null until the message is sent). Errors as Twilio answers them, `{"code", "message",
  "more_info", "status"}`: 21211 invalid `To`, 21610 unsubscribed recipient (replied STOP),
  21602/21603/21604 missing body/from/to, 21617 body over 1,600 characters, 21910 `From`/`To`
  on different channels, 21655 unknown content template, 21656 bad `ContentVariables`,
  20003 authentication (401), 20429 too many requests (429). Unknown parameters are refused
  (Twilio ignores them; a stand-in that refuses catches our typos).
- `GET .../Messages.json` with the filters `To`, `From`, `DateSent`, `DateSent<`, `DateSent>`
  (dates or date-times, inclusive; a message not sent yet has no `date_sent` and never matches
  a date filter), paged by `PageSize`/`Page`/`PageToken` with `next_page_uri`; newest first.
  `GET .../Messages/{sid}.json` fetches one.
- WhatsApp: `whatsapp:+...` addresses; a `ContentSid` of a registered template is rendered
  (`{{1}}` ... from `ContentVariables`); free text (a `Body` without a template) is accepted
  and then fails with 63016, as it does outside a customer-opened 24-hour session.
- Status callbacks: `advance(sid, status)` (or `auto_status=[...]`) moves a message on and
  POSTs Twilio's callback form to its `StatusCallback`, signed with `X-Twilio-Signature`
  (HMAC-SHA1 of URL + sorted parameters, base64, keyed by the auth token).
- Inbound messages: `inbound(from_, body)` POSTs Twilio's inbound form to `inbound_url`, signed;
  STOP words opt the number out (later sends get 21610, as Twilio's opt-out handling does),
  START words opt it back in.
- Faults: `inject(status=..., code=..., drop=..., delay=..., after_processing=...)` as in the
  Resend stand-in; with `after_processing` the message is created and only the answer is
  replaced, held (`delay`) or lost, which is the crash window the "look before sending again"
  logic exists for.

In-process::

    with TwilioStub(ACCOUNT, TOKEN) as stub:
        client = Client(ACCOUNT, TOKEN, http_client=...)  # pointed at stub.url
        assert len(stub.messages) == 1

As a process (`python tests/stubs/twilio_api.py --port 0 --account-sid AC.. --auth-token T`)
it prints its URL on the first stdout line; `TwilioStubProcess` spawns it and offers the same
inspection over `/_stub/...`. Pure stdlib.

Longer than ~400 lines: one strict stand-in for the API surface the SDK uses; its parts share
the server's state.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
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
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

API_VERSION = "2010-04-01"
CONTROL_PREFIX = "/_stub/"
FORM = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json; charset=utf-8"
MAX_BODY = 1600
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
E164 = re.compile(r"\+[1-9][0-9]{7,14}")
WHATSAPP = "whatsapp:"
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
START_WORDS = {"START", "YES", "UNSTOP"}
# Parameters the SDK's messages.create may send; anything else is refused.
CREATE_PARAMS = frozenset({
    "To", "StatusCallback", "ApplicationSid", "MaxPrice", "ProvideFeedback", "Attempt",
    "ValidityPeriod", "ForceDelivery", "ContentRetention", "AddressRetention", "SmartEncoded",
    "PersistentAction", "TrafficType", "ShortenUrls", "ScheduleType", "SendAt", "SendAsMms",
    "ContentVariables", "MessageIntent", "RiskCheck", "From", "FallbackFrom",
    "MessagingServiceSid", "Body", "MediaUrl", "ContentSid",
})
LIST_PARAMS = frozenset({"To", "From", "DateSent", "DateSent<", "DateSent>", "PageSize", "Page",
                         "PageToken"})
STATUS_ORDER = {"accepted": 0, "queued": 0, "sending": 1, "sent": 2, "delivered": 3,
                "undelivered": 3, "failed": 3, "read": 4}


def signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(token, url + each key+value sorted by key))."""
    data = url + "".join(k + params[k] for k in sorted(params))
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def rfc2822(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(ts, UTC).replace(microsecond=0))


def _segments(body: str) -> int:
    """Segments as Twilio bills them (a stand-in's own count: GSM-7 basic/extended set)."""
    basic = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
             "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
    extended = "^{}\\[~]|€\f"
    if all(c in basic or c in extended for c in body):
        widths = [2 if c in extended else 1 for c in body]
        single, part = 160, 153
    else:
        widths = [2 if ord(c) > 0xFFFF else 1 for c in body]
        single, part = 70, 67
    if sum(widths) <= single:
        return 1
    parts, used = 1, 0
    for w in widths:
        if used + w > part:
            parts, used = parts + 1, 0
        used += w
    return parts


# --------------------------------------------------------------------------------------------
# Records exposed to tests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    status: int | None  # None: dropped without an answer
    time: float
    code: int | None = None  # Twilio error code answered, if any
    to: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    fault: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CallbackRecord:
    url: str
    params: dict[str, str]
    status: int | None  # the receiver's answer; None if it could not be reached
    kind: str  # "status" | "inbound"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Fault:
    """A scripted failure for the next `times` matching API requests (see the Resend stub).
    `code` is the Twilio error code of an injected error status."""

    status: int | None = None
    code: int | None = None
    drop: bool = False
    delay: float = 0.0
    times: int = 1
    method: str | None = None
    after_processing: bool = False
    message: str | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.drop:
            raise ValueError("a fault either answers with a status or drops, not both")
        if self.status is None and not self.drop and self.delay <= 0:
            raise ValueError("a fault needs a status, drop=True or a positive delay")
        if self.times < 1:
            raise ValueError("times must be >= 1")
        if self.method is not None:
            self.method = self.method.upper()

    def describe(self) -> str:
        what = "drop" if self.drop else f"status={self.status}" if self.status else "delay"
        if self.delay and (self.drop or self.status):
            what += f"+delay={self.delay:g}"
        return what + (" after processing" if self.after_processing else "")


class _ApiError(Exception):
    def __init__(self, status: int, code: int | None, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    code: int | None = None
    hold: float = 0.0  # after_processing + delay: the answer is held this long


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> _Response:
    return _Response(status, json.dumps(payload, separators=(",", ":")).encode(),
                     {"content-type": JSON_TYPE, **(headers or {})})


def _error(err: _ApiError) -> _Response:
    more = f"https://www.twilio.com/docs/errors/{err.code}" if err.code else None
    resp = _json(err.status, {"code": err.code, "message": err.message, "more_info": more,
                              "status": err.status}, err.headers)
    resp.code = err.code
    return resp


class _Inspection:
    @property
    def messages(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    @property
    def requests(self) -> list[RequestRecord]:
        raise NotImplementedError

    def sent_to(self, number: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["to"].removeprefix(WHATSAPP) == number]

    def max_creates_in_any_second(self) -> int:
        """Peak accepted message creations within any 1 s window."""
        times = sorted(r.time for r in self.requests
                       if r.method == "POST" and r.status == 201)
        best = start = 0
        for end, t in enumerate(times):
            while t - times[start] >= 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class TwilioStub(_Inspection):
    """In-process Twilio Messages API stand-in on a free loopback port. Thread-safe."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        rate_limit: int | None = None,
        templates: Mapping[str, str] | None = None,
        invalid_numbers: Iterable[str] = (),
        senders: Iterable[str] | None = None,
        auto_status: Sequence[str] = (),
        inbound_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not account_sid.startswith("AC") or not auth_token:
            raise ValueError("the stub needs an account sid (AC...) and an auth token")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._host, self._port, self._clock = host, port, clock
        self._lock = threading.Lock()
        self._rate_limit = rate_limit
        self._window: deque[float] = deque()
        self._templates = dict(templates or {})
        self._invalid = set(invalid_numbers)
        self._senders = set(senders) if senders is not None else None
        self._auto_status = list(auto_status)
        self.inbound_url = inbound_url
        self._opted_out: set[tuple[str, str]] = set()  # (channel, number)
        self._faults: list[Fault] = []
        self._messages: dict[str, dict[str, Any]] = {}
        self._callbacks_meta: dict[str, str] = {}  # sid -> StatusCallback
        self._order: list[str] = []
        self._requests: list[RequestRecord] = []
        self._callbacks: list[CallbackRecord] = []
        self._auto_queue: deque[str] = deque()
        self._auto_wakeup = threading.Event()
        self._stopping = threading.Event()
        self._httpd: _StubHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> TwilioStub:
        if self._httpd is not None:
            raise RuntimeError("stub already started")
        self._stopping.clear()
        self._httpd = _StubHTTPServer((self._host, self._port), _Handler, self)
        serve = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                 name="twilio-stub", daemon=True)
        auto = threading.Thread(target=self._auto_loop, name="twilio-stub-auto", daemon=True)
        self._threads = [serve, auto]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        self._auto_wakeup.set()
        httpd.shutdown()
        httpd.server_close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> TwilioStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("stub not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # ---- configuration ---------------------------------------------------------------------

    def inject(self, status: int | None = None, **kwargs: Any) -> None:
        fault = Fault(status=status, **kwargs)
        with self._lock:
            self._faults.append(fault)

    def configure(self, **options: Any) -> None:
        """rate_limit, templates (merged), invalid_numbers (added), auto_status, inbound_url."""
        with self._lock:
            if "rate_limit" in options:
                self._rate_limit = options["rate_limit"]
                self._window.clear()
            self._templates.update(options.get("templates") or {})
            self._invalid.update(options.get("invalid_numbers") or ())
            if "auto_status" in options:
                self._auto_status = list(options["auto_status"] or ())
            if "inbound_url" in options:
                self.inbound_url = options["inbound_url"]

    def opt_out(self, number: str, channel: str = "sms") -> None:
        with self._lock:
            self._opted_out.add((channel, number))

    def reset(self) -> None:
        with self._lock:
            self._window.clear()
            self._faults.clear()
            self._messages.clear()
            self._order.clear()
            self._requests.clear()
            self._callbacks.clear()
            self._opted_out.clear()

    # ---- inspection ------------------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every message created, oldest first (as the API would show them)."""
        with self._lock:
            return [dict(self._messages[sid]) for sid in self._order]

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    @property
    def callbacks(self) -> list[CallbackRecord]:
        with self._lock:
            return list(self._callbacks)

    def opted_out(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._opted_out)

    # ---- status progression and callbacks -----------------------------------------------------

    def advance(self, sid: str, status: str, error_code: int | None = None) -> int | None:
        """Move message `sid` to `status` and POST its status callback (if it asked for one);
        returns the receiver's HTTP status (None: no callback or unreachable)."""
        if status not in STATUS_ORDER:
            raise ValueError(f"unknown message status {status!r}")
        with self._lock:
            msg = self._messages.get(sid)
            if msg is None:
                raise KeyError(f"no message {sid}")
            now = self._clock()
            msg["status"] = status
            msg["date_updated"] = rfc2822(now)
            if status in ("sent", "delivered", "undelivered", "read") and not msg["date_sent"]:
                msg["date_sent"] = rfc2822(now)
                msg["_sent_at"] = now
            if error_code is not None:
                msg["error_code"] = error_code
                msg["error_message"] = f"stand-in error {error_code}"
            callback = self._callbacks_meta.get(sid)
            params = {
                "AccountSid": self.account_sid, "ApiVersion": API_VERSION,
                "From": msg["from"], "To": msg["to"], "MessageSid": sid, "SmsSid": sid,
                "MessageStatus": status, "SmsStatus": status,
            }
            if msg.get("error_code"):
                params["ErrorCode"] = str(msg["error_code"])
        if not callback:
            return None
        return self._post_signed(callback, params, "status")

    def inbound(self, from_: str, body: str, to: str | None = None) -> int | None:
        """A customer texts the shop: POST Twilio's inbound form to `inbound_url`, signed.
        STOP words opt `from_` out of that channel (21610 from then on), START words in."""
        channel = "whatsapp" if from_.startswith(WHATSAPP) else "sms"
        number = from_.removeprefix(WHATSAPP)
        word = body.strip().upper()
        params = {
            "AccountSid": self.account_sid, "ApiVersion": API_VERSION, "Body": body,
            "From": from_, "To": to or "", "MessageSid": "SM" + uuid.uuid4().hex,
            "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received",
        }
        params["SmsSid"] = params["SmsMessageSid"] = params["MessageSid"]
        with self._lock:
            if word in STOP_WORDS:
                self._opted_out.add((channel, number))
                params["OptOutType"] = "STOP"
            elif word in START_WORDS:
                self._opted_out.discard((channel, number))
                params["OptOutType"] = "START"
            url = self.inbound_url
        if not url:
            raise RuntimeError("no inbound_url configured")
        return self._post_signed(url, params, "inbound")

    def _post_signed(self, url: str, params: dict[str, str], kind: str) -> int | None:
        data = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(url, data=data, method="POST", headers={
            "content-type": FORM, "x-twilio-signature": signature(self.auth_token, url, params),
            "user-agent": "TwilioProxy/1.1",
        })
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status: int | None = response.status
        except urllib.error.HTTPError as err:
            status = err.code
        except OSError:
            status = None
        with self._lock:
            self._callbacks.append(CallbackRecord(url, params, status, kind))
        return status

    def _auto_loop(self) -> None:
        while not self._stopping.is_set():
            self._auto_wakeup.wait(0.5)
            self._auto_wakeup.clear()
            while True:
                with self._lock:
                    if not self._auto_queue:
                        break
                    sid = self._auto_queue.popleft()
                    steps = list(self._auto_status)
                for step in steps:
                    if self._stopping.is_set():
                        return
                    try:
                        self.advance(sid, step)
                    except Exception:
                        traceback.print_exc()

    # ---- request handling ------------------------------------------------------------------

    def _dispatch(self, method: str, path: str, query: str, headers: Mapping[str, str],
                  raw: bytes) -> _Response:
        if path.startswith(CONTROL_PREFIX):
            return self._control(method, path[len(CONTROL_PREFIX):], raw)
        arrived = self._clock()
        fault = self._take_fault(method)
        to = None
        try:
            if fault is not None and not fault.after_processing and (fault.drop or fault.status):
                self._stopping.wait(fault.delay)
                resp = self._fault_response(fault)
            else:
                try:
                    if fault is not None and not fault.after_processing:
                        self._stopping.wait(fault.delay)
                    resp, to = self._serve(method, path, query, headers, raw)
                except _ApiError as err:
                    resp = _error(err)
                if fault is not None and fault.after_processing:
                    if fault.drop or fault.status:
                        replaced = self._fault_response(fault)
                        replaced.hold = fault.delay
                        resp = replaced
                    else:
                        resp.hold = fault.delay
        except Exception as exc:
            traceback.print_exc()
            resp = _error(_ApiError(500, 20500, f"twilio stub crashed: {exc!r}"))
        with self._lock:
            self._requests.append(RequestRecord(
                method, path, None if resp.drop else resp.status, arrived, resp.code, to,
                dict(urllib.parse.parse_qsl(query)), fault.describe() if fault else None))
        return resp

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.method is None or fault.method == method:
                    fault.times -= 1
                    if fault.times == 0:
                        del self._faults[i]
                    return fault
        return None

    def _fault_response(self, fault: Fault) -> _Response:
        if fault.drop:
            return _Response(0, drop=True)
        status = int(fault.status or 500)
        code = fault.code or (20429 if status == 429 else 20500 if status >= 500 else None)
        return _error(_ApiError(status, code, fault.message or f"Injected fault: HTTP {status}"))

    def _authenticate(self, headers: Mapping[str, str], account: str) -> None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(token).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user = password = ""
        if scheme.lower() != "basic" or user != self.account_sid or not hmac.compare_digest(
                password, self.auth_token) or account != self.account_sid:
            raise _ApiError(401, 20003, "Authenticate",
                            {"www-authenticate": 'Basic realm="Twilio API"'})

    def _serve(self, method: str, path: str, query: str, headers: Mapping[str, str],
               raw: bytes) -> tuple[_Response, str | None]:
        m = re.fullmatch(rf"/{API_VERSION}/Accounts/([^/]+)/Messages(?:/(SM[0-9a-f]{{32}}))?\.json",
                         path)
        if m is None:
            raise _ApiError(404, 20404, f"The requested resource {path} was not found")
        self._authenticate(headers, m.group(1))
        if m.group(2):
            if method != "GET":
                raise _ApiError(405, 20004, "Method not allowed")
            with self._lock:
                msg = self._messages.get(m.group(2))
            if msg is None:
                raise _ApiError(404, 20404, f"The requested resource {path} was not found")
            return _json(200, self._public(msg)), msg["to"]
        if method == "GET":
            return self._list(path, query), None
        if method != "POST":
            raise _ApiError(405, 20004, "Method not allowed")
        if headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
            raise _ApiError(400, 20001, f"Content-Type must be {FORM}")
        try:
            form = urllib.parse.parse_qs(raw.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise _ApiError(400, 20001, "The request body is not UTF-8") from None
        params = {k: v[-1] for k, v in form.items()}
        self._admit()
        msg = self._create(params)
        return _json(201, self._public(msg)), msg["to"]

    def _admit(self) -> None:
        with self._lock:
            limit = self._rate_limit
            if limit is None:
                return
            now = self._clock()
            while self._window and now - self._window[0] >= 1.0:
                self._window.popleft()
            if len(self._window) >= limit:
                wait = max(1, math.ceil(self._window[0] + 1.0 - now))
                raise _ApiError(429, 20429, "Too Many Requests", {"retry-after": str(wait)})
            self._window.append(now)

    def _create(self, p: dict[str, str]) -> dict[str, Any]:
        unknown = sorted(set(p) - CREATE_PARAMS)
        if unknown:
            raise _ApiError(400, 20001, f"Unknown parameter: {unknown[0]}")
        to, from_ = p.get("To", ""), p.get("From", "")
        if not to:
            raise _ApiError(400, 21604, "A 'To' phone number is required.")
        if not from_ and not p.get("MessagingServiceSid"):
            raise _ApiError(400, 21603, "A 'From' phone number is required.")
        channel = "whatsapp" if to.startswith(WHATSAPP) else "sms"
        if from_ and from_.startswith(WHATSAPP) != (channel == "whatsapp"):
            raise _ApiError(400, 21910, "Invalid From and To pair. From and To should be of the "
                                        "same channel")
        number = to.removeprefix(WHATSAPP)
        if not E164.fullmatch(number) or number in self._invalid:
            raise _ApiError(400, 21211, f"Invalid 'To' Phone Number: {number}")
        sender = from_.removeprefix(WHATSAPP)
        if from_ and (not E164.fullmatch(sender)
                      or (self._senders is not None and sender not in self._senders)):
            raise _ApiError(400, 21606, f"The From phone number {from_} is not a valid, "
                                        "SMS-capable inbound phone number or short code for "
                                        "your account.")
        body = p.get("Body", "")
        content_sid = p.get("ContentSid")
        if content_sid:
            with self._lock:
                template = self._templates.get(content_sid)
            if template is None:
                raise _ApiError(400, 21655, "The ContentSid is Invalid.")
            try:
                variables = json.loads(p.get("ContentVariables") or "{}")
            except json.JSONDecodeError:
                variables = None
            if not isinstance(variables, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in variables.items()):
                raise _ApiError(400, 21656, "The ContentVariables Parameter is invalid.")
            body = re.sub(r"\{\{\s*(\w+)\s*\}\}",
                          lambda mm: variables.get(mm.group(1), mm.group(0)), template)
        elif not body and not p.get("MediaUrl"):
            raise _ApiError(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            raise _ApiError(400, 21617, "The concatenated message body exceeds the 1600 "
                                        "character limit.")
        with self._lock:
            if (channel, number) in self._opted_out:
                raise _ApiError(400, 21610, "Attempt to send to unsubscribed recipient")
            now = self._clock()
            sid = "SM" + uuid.uuid4().hex
            freeform_whatsapp = channel == "whatsapp" and not content_sid
            msg: dict[str, Any] = {
                "sid": sid, "account_sid": self.account_sid, "api_version": API_VERSION,
                "to": to, "from": from_ or None, "body": body,
                "status": "failed" if freeform_whatsapp else
                          "accepted" if p.get("MessagingServiceSid") else "queued",
                "num_segments": str(_segments(body)) if channel == "sms" else "1",
                "num_media": "0", "direction": "outbound-api",
                "date_created": rfc2822(now), "date_updated": rfc2822(now), "date_sent": None,
                "price": None, "price_unit": "USD",
                "error_code": 63016 if freeform_whatsapp else None,
                "error_message": ("Failed to send freeform message because you are outside "
                                  "the allowed window.") if freeform_whatsapp else None,
                "messaging_service_sid": p.get("MessagingServiceSid"),
                "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
                "subresource_uris": {"media": f"/{API_VERSION}/Accounts/{self.account_sid}/"
                                              f"Messages/{sid}/Media.json"},
                "_created_at": now, "_sent_at": None, "_content_sid": content_sid,
            }
            self._messages[sid] = msg
            self._order.append(sid)
            if p.get("StatusCallback"):
                self._callbacks_meta[sid] = p["StatusCallback"]
            if self._auto_status and not freeform_whatsapp:
                self._auto_queue.append(sid)
                self._auto_wakeup.set()
        return msg

    @staticmethod
    def _public(msg: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in msg.items() if not k.startswith("_")}

    @staticmethod
    def _date_bound(value: str, name: str) -> tuple[float, bool]:
        """(timestamp, is_date_only) of a DateSent filter value."""
        for fmt, date_only in (("%Y-%m-%d", True), ("%Y-%m-%dT%H:%M:%SZ", False),
                               ("%Y-%m-%dT%H:%M:%S%z", False)):
            try:
                parsed = datetime.strptime(value, fmt)
            except ValueError:
                continue
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.timestamp(), date_only
        raise _ApiError(400, 20001, f"Invalid {name} value: {value}")

    def _list(self, path: str, query: str) -> _Response:
        q = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        unknown = sorted(set(q) - LIST_PARAMS)
        if unknown:
            raise _ApiError(400, 20001, f"Unknown parameter: {unknown[0]}")
        try:
            page_size = int(q.get("PageSize", DEFAULT_PAGE_SIZE))
            page = int(q.get("Page", 0))
        except ValueError:
            raise _ApiError(400, 20001, "PageSize and Page must be integers") from None
        if not 1 <= page_size <= MAX_PAGE_SIZE or page < 0:
            raise _ApiError(400, 20001, f"PageSize must be 1-{MAX_PAGE_SIZE}")
        bounds = []
        for name, op in (("DateSent", "="), ("DateSent<", "<"), ("DateSent>", ">")):
            if q.get(name):
                ts, date_only = self._date_bound(q[name], name)
                bounds.append((op, ts, date_only))

        def keep(msg: Mapping[str, Any]) -> bool:
            if q.get("To") and msg["to"] != q["To"]:
                return False
            if q.get("From") and msg["from"] != q["From"]:
                return False
            sent = msg["_sent_at"]
            for op, ts, date_only in bounds:
                end = ts + 86400 if date_only else ts + 1  # a date covers its whole day
                if sent is None:
                    return False  # not sent yet: no date_sent to compare
                if op == "=" and not ts <= sent < end:
                    return False
                if op == "<" and sent >= end:
                    return False
                if op == ">" and sent < ts:
                    return False
            return True

        with self._lock:
            found = [self._public(self._messages[s]) for s in reversed(self._order)
                     if keep(self._messages[s])]
        found.sort(key=lambda m: -self._messages[m["sid"]]["_created_at"])
        start = page * page_size
        items = found[start:start + page_size]
        base = {k: v for k, v in q.items() if k not in ("Page", "PageToken", "PageSize")}

        def uri(n: int) -> str:
            params = {**base, "PageSize": str(page_size), "Page": str(n)}
            if n:
                params["PageToken"] = f"PASM{n}"
            return f"{path}?{urllib.parse.urlencode(params)}"

        more = start + page_size < len(found)
        return _json(200, {
            "messages": items, "page": page, "page_size": page_size,
            "start": start, "end": start + max(0, len(items) - 1),
            "uri": uri(page), "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1) if more else None,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
        })

    # ---- control endpoints -----------------------------------------------------------------

    def _control(self, method: str, route: str, raw: bytes) -> _Response:
        try:
            args = json.loads(raw) if raw else {}
            if method == "GET" and route == "messages":
                return _json(200, {"messages": [self._public(m) for m in self.messages]})
            if method == "GET" and route == "requests":
                return _json(200, {"requests": [r.to_json() for r in self.requests]})
            if method == "GET" and route == "callbacks":
                return _json(200, {"callbacks": [c.to_json() for c in self.callbacks]})
            if method == "POST" and route == "reset":
                self.reset()
                return _json(200, {"ok": True})
            if method == "POST" and route == "inject":
                self.inject(**args)
                return _json(200, {"ok": True})
            if method == "POST" and route == "config":
                self.configure(**args)
                return _json(200, {"ok": True})
            if method == "POST" and route == "advance":
                return _json(200, {"callback_status": self.advance(**args)})
            if method == "POST" and route == "inbound":
                return _json(200, {"callback_status": self.inbound(**args)})
            if method == "POST" and route == "opt_out":
                self.opt_out(**args)
                return _json(200, {"ok": True})
        except (TypeError, ValueError, KeyError, RuntimeError) as exc:
            return _json(400, {"error": str(exc)})
        return _json(404, {"error": f"unknown control endpoint {method} {route}"})


class _StubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 stub: TwilioStub) -> None:
        self.stub = stub
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 60
    server: _StubHTTPServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        stub = self.server.stub
        if stub._stopping.is_set():
            self.close_connection = True
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        raw = self.rfile.read(int(headers.get("content-length") or 0))
        parts = urllib.parse.urlsplit(self.path)
        resp = stub._dispatch(method, parts.path, parts.query, headers, raw)
        if resp.hold:
            stub._stopping.wait(resp.hold)
        if resp.drop:
            self.close_connection = True
            return
        try:
            self.send_response(resp.status)
            for name, value in resp.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(resp.body)))
            self.end_headers()
            self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


# --------------------------------------------------------------------------------------------
# Process mode
# --------------------------------------------------------------------------------------------


class TwilioStubClient(_Inspection):
    """Inspect and steer a stand-in running in another process, via `/_stub/...`."""

    def __init__(self, url: str, account_sid: str = "", auth_token: str = "") -> None:
        self.url = url.rstrip("/")
        self.account_sid, self.auth_token = account_sid, auth_token

    def _call(self, method: str, route: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.url}{CONTROL_PREFIX}{route}", data=data,
                                         method=method,
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"twilio stub control call failed: {err.read().decode()}") from err

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self._call("GET", "messages")["messages"]

    @property
    def requests(self) -> list[RequestRecord]:
        return [RequestRecord(**r) for r in self._call("GET", "requests")["requests"]]

    @property
    def callbacks(self) -> list[CallbackRecord]:
        return [CallbackRecord(**c) for c in self._call("GET", "callbacks")["callbacks"]]

    def reset(self) -> None:
        self._call("POST", "reset", {})

    def inject(self, status: int | None = None, **kwargs: Any) -> None:
        self._call("POST", "inject", {"status": status, **kwargs})

    def configure(self, **options: Any) -> None:
        self._call("POST", "config", options)

    def advance(self, sid: str, status: str, error_code: int | None = None) -> int | None:
        return self._call("POST", "advance", {"sid": sid, "status": status,
                                              "error_code": error_code})["callback_status"]

    def inbound(self, from_: str, body: str, to: str | None = None) -> int | None:
        return self._call("POST", "inbound", {"from_": from_, "body": body,
                                              "to": to})["callback_status"]

    def opt_out(self, number: str, channel: str = "sms") -> None:
        self._call("POST", "opt_out", {"number": number, "channel": channel})


class TwilioStubProcess(TwilioStubClient):
    """Spawn this file as a process; inspect it like a `TwilioStub`."""

    def __init__(self, account_sid: str, auth_token: str, *, rate_limit: int | None = None,
                 auto_status: Sequence[str] = (), templates: Mapping[str, str] | None = None,
                 host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 10.0) -> None:
        super().__init__("", account_sid, auth_token)
        self._argv = [sys.executable, str(Path(__file__).resolve()), "--host", host,
                      "--port", str(port), "--account-sid", account_sid]
        if rate_limit is not None:
            self._argv += ["--rate-limit", str(rate_limit)]
        for status in auto_status:
            self._argv += ["--auto-status", status]
        self._templates = dict(templates or {})
        self._token = auth_token
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> TwilioStubProcess:
        # The token goes through the environment, never the command line (ps shows argv).
        import os

        env = {**os.environ, "TWILIO_STUB_AUTH_TOKEN": self._token}
        self._proc = subprocess.Popen(self._argv, stdout=subprocess.PIPE, text=True, env=env,
                                      close_fds=True)
        assert self._proc.stdout is not None
        watchdog = threading.Timer(self._startup_timeout, self._proc.kill)
        watchdog.start()
        try:
            line = self._proc.stdout.readline().strip()
        finally:
            watchdog.cancel()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"twilio stub process failed to start (first line: {line!r})")
        self.url = line
        if self._templates:
            self.configure(templates=self._templates)
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

    def __enter__(self) -> TwilioStubProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python tests/stubs/twilio_api.py",
                                      description="Run the Twilio Messages API stand-in; prints "
                                                  "its URL on the first stdout line.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--rate-limit", type=int, default=None, help="messages/second")
    parser.add_argument("--auto-status", action="append", default=[],
                        help="statuses each new message moves through (repeatable)")
    args = parser.parse_args(argv)
    token = os.environ.get("TWILIO_STUB_AUTH_TOKEN", "")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with TwilioStub(args.account_sid, token, rate_limit=args.rate_limit,
                    auto_status=args.auto_status, host=args.host, port=args.port) as stub:
        print(stub.url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
