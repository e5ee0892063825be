"""Signature checks on the raw request body, one per provider, and what each event is called.

Every check works on the exact bytes received (never re-serialised JSON), compares in constant
time, and raises `BadSignature` with a reason fit for the log (never the secret or the
expected signature). A verified body is then parsed: `MalformedEvent` if it is not a JSON
object. Resend signs with Svix, verified by the maintained `standardwebhooks` library.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROVIDERS = ("paystack", "stripe", "resend")
SECRET_NAMES = {
    "paystack": "PAYSTACK_SECRET_KEY",
    "stripe": "STRIPE_WEBHOOK_SECRET",
    "resend": "RESEND_WEBHOOK_SECRET",
}


class BadSignature(Exception):
    """Missing, malformed, stale or wrong signature: answered 401, nothing stored."""


class MalformedEvent(Exception):
    """A correctly signed body that is not an event we can read: answered 400."""


@dataclass(frozen=True)
class Event:
    provider: str
    event_id: str
    event_type: str
    payload: dict[str, Any]


def _parse(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedEvent(f"body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise MalformedEvent("body is not a JSON object")
    return payload


def _text(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
        raise MalformedEvent(f"{what} is missing")
    text = str(value)
    if len(text) > limit:
        raise MalformedEvent(f"{what} is longer than {limit} characters")
    return text


# --- Paystack: x-paystack-signature = hex HMAC-SHA512(secret key, body) -----------------------


def verify_paystack(body: bytes, headers: Mapping[str, str], secret: str) -> Event:
    given = headers.get("x-paystack-signature", "")
    if not given:
        raise BadSignature("x-paystack-signature header missing")
    expected = hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()
    if not hmac.compare_digest(expected, given.strip().lower()):
        raise BadSignature("x-paystack-signature does not match the body")
    payload = _parse(body)
    event_type = _text(payload.get("event"), "event", 80)
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    # Paystack events carry no event id; a delivery and its retries have the same body, and
    # (event, transaction id) names the event; a body without an id is named by its digest.
    if data.get("id") not in (None, ""):
        event_id = f"{event_type}:{_text(data.get('id'), 'data.id', 100)}"
    else:
        event_id = f"{event_type}:sha256:{hashlib.sha256(body).hexdigest()}"
    return Event("paystack", event_id, event_type, payload)


# --- Stripe: Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>[,v1=...] -------


def verify_stripe(body: bytes, headers: Mapping[str, str], secret: str, tolerance: float,
                  now: float | None = None) -> Event:
    header = headers.get("stripe-signature", "")
    if not header:
        raise BadSignature("Stripe-Signature header missing")
    timestamp: str | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not timestamp.isdigit():
        raise BadSignature("Stripe-Signature has no valid t= timestamp")
    if not signatures:
        raise BadSignature("Stripe-Signature has no v1= signature")
    age = (time.time() if now is None else now) - int(timestamp)
    if abs(age) > tolerance:
        raise BadSignature(f"Stripe-Signature timestamp is {age:.0f} s from now "
                           f"(tolerance {tolerance:.0f} s)")
    signed = timestamp.encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    # One matching v1 suffices (Stripe sends several while a secret is being rolled).
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise BadSignature("no Stripe-Signature v1 signature matches the body")
    payload = _parse(body)
    return Event("stripe", _text(payload.get("id"), "id", 200),
                 _text(payload.get("type"), "type", 80), payload)


# --- Resend: Svix headers (svix-id, svix-timestamp, svix-signature) ---------------------------


def verify_resend(body: bytes, headers: Mapping[str, str], secret: str, tolerance: float) -> Event:
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    # Svix's header names are the Standard Webhooks ones with another prefix.
    mapped = {
        f"webhook-{name}": headers.get(f"svix-{name}") or headers.get(f"webhook-{name}") or ""
        for name in ("id", "timestamp", "signature")
    }
    if not all(mapped.values()):
        missing = [k.replace("webhook-", "svix-") for k, v in mapped.items() if not v]
        raise BadSignature(f"{', '.join(missing)} header missing")
    stamp = mapped["webhook-timestamp"]
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > tolerance:
        raise BadSignature("svix-timestamp is missing, malformed or outside the tolerance")
    try:
        Webhook(secret).verify(body, mapped, json_parse=False)
    except WebhookVerificationError as exc:
        raise BadSignature(f"svix-signature: {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:  # malformed signature list or base64
        raise BadSignature(f"svix-signature is malformed ({type(exc).__name__})") from None
    payload = _parse(body)
    return Event("resend", _text(mapped["webhook-id"], "svix-id", 200),
                 _text(payload.get("type"), "type", 80), payload)


def verify(provider: str, body: bytes, headers: Mapping[str, str], secret: str,
           tolerance: float) -> Event:
    """The verified, parsed event; BadSignature or MalformedEvent otherwise. `headers` must
    have lower-case names (Starlette's do)."""
    if provider == "paystack":
        return verify_paystack(body, headers, secret)
    if provider == "stripe":
        return verify_stripe(body, headers, secret, tolerance)
    if provider == "resend":
        return verify_resend(body, headers, secret, tolerance)
    raise ValueError(f"unknown provider {provider!r}")
