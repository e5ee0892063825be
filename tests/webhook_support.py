"""Helpers of the webhook tests: provider-shaped signed requests, a real uvicorn server on a free
port (in a thread), and a plain HTTP client (no cookies, no session)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from helpers import wait_until


def make_secrets() -> dict[str, str]:
    """Fresh provider secrets, assembled at run time (nothing key-shaped lives in the repo)."""
    return {
        "PAYSTACK_SECRET_KEY": "psk-" + secrets.token_hex(16),
        "STRIPE_WEBHOOK_SECRET": "stripe-" + secrets.token_hex(16),
        "RESEND_WEBHOOK_SECRET": "whsec" + "_" + base64.b64encode(os.urandom(24)).decode(),
    }


# --- signing as each provider does ------------------------------------------------------------


def paystack_headers(body: bytes, secret: str) -> dict[str, str]:
    return {"x-paystack-signature": hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()}


def stripe_headers(body: bytes, secret: str, at: float | None = None,
                   extra_v1: tuple[str, ...] = ()) -> dict[str, str]:
    t = str(int(time.time() if at is None else at))
    sig = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    parts = [f"t={t}", *(f"v1={s}" for s in extra_v1), f"v1={sig}"]
    return {"Stripe-Signature": ",".join(parts)}


def resend_headers(body: bytes, secret: str, msg_id: str | None = None,
                   at: float | None = None) -> dict[str, str]:
    from datetime import UTC, datetime

    from standardwebhooks.webhooks import Webhook

    msg_id = msg_id or f"msg_{secrets.token_hex(8)}"
    stamp = datetime.fromtimestamp(int(time.time() if at is None else at), UTC)
    signature = Webhook(secret).sign(msg_id, stamp, body.decode())
    return {"svix-id": msg_id, "svix-timestamp": str(int(stamp.timestamp())),
            "svix-signature": signature}


def sign(provider: str, body: bytes, env: dict[str, str], **kw: Any) -> dict[str, str]:
    if provider == "paystack":
        return paystack_headers(body, env["PAYSTACK_SECRET_KEY"])
    if provider == "stripe":
        return stripe_headers(body, env["STRIPE_WEBHOOK_SECRET"], **kw)
    return resend_headers(body, env["RESEND_WEBHOOK_SECRET"], **kw)


# --- provider-shaped events -------------------------------------------------------------------


def body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def paystack_charge(reference: str, amount: int, currency: str = "NGN", tx_id: int = 4099260516,
                    order_number: str | None = None) -> dict[str, Any]:
    return {"event": "charge.success", "data": {
        "id": tx_id, "domain": "test", "status": "success", "reference": reference,
        "amount": amount, "currency": currency, "channel": "card",
        "metadata": {"order_number": order_number} if order_number else "",
        "customer": {"email": "ada@example.com"}, "paid_at": "2026-11-20T09:31:00.000Z"}}


def paystack_refund(reference: str, amount: int, currency: str = "NGN",
                    refund_id: int = 1208) -> dict[str, Any]:
    return {"event": "refund.processed", "data": {
        "id": refund_id, "status": "processed", "transaction_reference": reference,
        "amount": str(amount), "currency": currency}}


def stripe_event(kind: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {"id": event_id or f"evt_{secrets.token_hex(8)}", "object": "event", "type": kind,
            "api_version": "2024-06-20", "created": int(time.time()),
            "data": {"object": obj}}


def stripe_payment_intent(pi_id: str, amount: int, currency: str = "ngn",
                          order_number: str | None = None, **kw: Any) -> dict[str, Any]:
    obj = {"id": pi_id, "object": "payment_intent", "amount": amount, "amount_received": amount,
           "currency": currency, "status": "succeeded",
           "metadata": {"order_number": order_number} if order_number else {}}
    return stripe_event("payment_intent.succeeded", obj, **kw)


def stripe_checkout(session_id: str, pi_id: str, amount: int, currency: str = "ngn",
                    client_reference_id: str | None = None, **kw: Any) -> dict[str, Any]:
    obj = {"id": session_id, "object": "checkout.session", "amount_total": amount,
           "currency": currency, "payment_status": "paid", "payment_intent": pi_id,
           "client_reference_id": client_reference_id, "metadata": {}}
    return stripe_event("checkout.session.completed", obj, **kw)


def resend_event(kind: str, email_id: str, to: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "created_at": "2026-11-20T09:40:00.000Z",
            "data": {"email_id": email_id, "from": "Kolaq Bitters <orders@kolaq.test>",
                     "to": [to], "subject": "Your order", "created_at": "2026-11-20T09:39:00Z",
                     **data}}


# --- HTTP ----------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def request(base: str, method: str, path: str, data: bytes | None = None,
            headers: dict[str, str] | None = None, chunked: bool = False) -> Reply:
    """One request on a fresh connection, as a provider (or a mail client) sends it."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if chunked:
            conn.request(method, path, body=iter([data or b""]), headers=hdrs,
                         encode_chunked=True)
        else:
            conn.request(method, path, body=data, headers=hdrs)
        response = conn.getresponse()
        return Reply(response.status, response.read(),
                     {k.lower(): v for k, v in response.getheaders()})
    finally:
        conn.close()


def post_event(base: str, provider: str, payload: dict[str, Any] | bytes, env: dict[str, str],
               **sign_kw: Any) -> Reply:
    raw = payload if isinstance(payload, bytes) else body(payload)
    return request(base, "POST", f"/webhooks/{provider}", raw, sign(provider, raw, env, **sign_kw))


class ServerThread:
    """`make_app(...)` served by a real uvicorn on a free port of 127.0.0.1, in a thread."""

    def __init__(self, app: Any):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                                timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True, name="uvicorn")

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(),
                   message="uvicorn to start")
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


def served_url(output: str) -> str | None:
    """The address a `webhooks serve` process announced (uvicorn's start-up line)."""
    found = re.search(r"Uvicorn running on (http://[\d.]+:\d+)", output)
    return found.group(1) if found else None
