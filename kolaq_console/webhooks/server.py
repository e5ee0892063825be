"""The webhook receiver (Starlette, served by uvicorn).

- POST /webhooks/{paystack,stripe,resend}: size check, signature on the raw body, JSON, then the
  event is committed to the inbox before the 200 (concurrent events share one commit, see
  `writer`); its processing job is enqueued after. A redelivery answers 200 and does nothing;
  storage down answers 503 (the provider retries). 401 bad or missing signature (nothing stored, the
  reason logged), 400 malformed, 413 too large, 503 when the provider's secret is not set: an
  endpoint without its secret refuses every event (never accepts unsigned ones) and the
  provider keeps retrying until an operator sets it.
- GET/POST /unsubscribe/{token}: RFC 8058 one-click (POST answers 200 with an empty body, no
  cookie, no login); GET shows a small page whose button posts the same request.
- GET /health: database and queue reachable (200) or not (503, with the reason).
Every request writes one JSON line to the `kolaq.access` log.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kolaq_console.config import Settings
from kolaq_console.webhooks import pages
from kolaq_console.webhooks.verify import (
    PROVIDERS,
    SECRET_NAMES,
    BadSignature,
    MalformedEvent,
    verify,
)
from kolaq_console.webhooks.writer import InboxWriter

log = logging.getLogger("kolaq_console.webhooks")
access_log = logging.getLogger("kolaq.access")

UNSUBSCRIBE_BODY_LIMIT = 4096


class TooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes (by Content-Length, or while reading)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _state(request: Request, **values: Any) -> None:
    """Facts for this request's access-log line."""
    request.scope.setdefault("kolaq", {}).update(values)


class Receiver:
    """The endpoints, bound to one engine and the settings' secrets and limits."""

    def __init__(self, settings: Settings, engine: Engine):
        self.settings = settings
        self.engine = engine
        self.writer = InboxWriter(engine, settings.webhooks.lease_seconds)
        secrets = settings.secrets
        self.secrets = {
            "paystack": secrets.paystack_secret_key,
            "stripe": secrets.stripe_webhook_secret,
            "resend": secrets.resend_webhook_secret,
        }

    def missing_secrets(self) -> list[str]:
        return [SECRET_NAMES[p] for p in PROVIDERS if self.secrets[p] is None]

    async def webhook(self, request: Request) -> Response:
        provider = request.path_params["provider"]
        if provider not in PROVIDERS:
            return JSONResponse({"error": f"unknown provider {provider!r}"}, 404)
        _state(request, provider=provider)
        secret = self.secrets[provider]
        if secret is None:
            _state(request, reason=f"{SECRET_NAMES[provider]} not set")
            return JSONResponse({"error": f"{SECRET_NAMES[provider]} is not set on this "
                                          "server; no event is accepted until it is"}, 503)
        w = self.settings.webhooks
        try:
            body = await read_body(request, w.max_body_bytes)
        except TooLarge:
            _state(request, reason="body too large")
            return JSONResponse({"error": f"body larger than {w.max_body_bytes} bytes"}, 413)
        try:
            event = verify(provider, body, request.headers, secret.get_secret_value(),
                           w.tolerance_seconds)
        except BadSignature as exc:
            _state(request, reason=str(exc))
            log.warning("%s webhook refused (401): %s", provider, exc)
            return JSONResponse({"error": "invalid signature"}, 401)
        except MalformedEvent as exc:
            _state(request, reason=str(exc))
            log.warning("%s webhook refused (400): %s", provider, exc)
            return JSONResponse({"error": f"malformed event: {exc}"}, 400)
        try:
            stored = await self.writer.store(event)
        except Exception as exc:  # the provider will retry: nothing was acknowledged
            _state(request, reason="storage unavailable")
            log.error("%s webhook not stored (503): %s", provider, exc)
            return JSONResponse({"error": "storage unavailable; retry later"}, 503)
        _state(request, event_id=event.event_id, event_type=event.event_type, row=stored.id,
               duplicate=not stored.created)
        return JSONResponse({"status": "accepted" if stored.created else "duplicate",
                             "id": stored.id})

    async def twilio(self, request: Request) -> Response:
        """Twilio's status callbacks and inbound messages (STOP/START), form-encoded and
        signed with X-Twilio-Signature over the URL Twilio called: [shop] public_url + path +
        query (kolaq_console.sms.webhook)."""
        from urllib.parse import parse_qsl

        from kolaq_console.sms import webhook as twilio

        _state(request, provider="twilio")
        try:
            body = await read_body(request, self.settings.webhooks.max_body_bytes)
        except TooLarge:
            return Response("body too large", 413)
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        query = request.url.query
        url = self.settings.shop.public_url.rstrip("/") + request.url.path + (
            f"?{query}" if query else "")
        answer = await run_in_threadpool(
            twilio.handle, self.engine, self.settings, url=url, form=form,
            signature=request.headers.get("x-twilio-signature"))
        if answer.status >= 400:
            _state(request, reason=answer.body[:120])
        return Response(answer.body, answer.status, media_type=answer.content_type)

    async def unsubscribe_page(self, request: Request) -> Response:
        from kolaq_console import consent

        try:
            address = consent.read_token(self.settings, request.path_params["token"])
        except consent.InvalidToken as exc:
            return HTMLResponse(pages.invalid_link(self.settings, str(exc)), 400)
        return HTMLResponse(pages.confirm_unsubscribe(self.settings, address))

    async def unsubscribe(self, request: Request) -> Response:
        """RFC 8058: the POST alone unsubscribes; from our own page it answers a page."""
        from kolaq_console import consent

        try:
            body = await read_body(request, UNSUBSCRIBE_BODY_LIMIT)
        except TooLarge:
            return Response(status_code=413)
        form = parse_qs(body.decode("latin-1"))
        from_page = form.get("from") == ["page"]
        try:
            address = consent.read_token(self.settings, request.path_params["token"])
        except consent.InvalidToken as exc:
            if from_page:
                return HTMLResponse(pages.invalid_link(self.settings, str(exc)), 400)
            return Response(status_code=400)
        source = "unsubscribe page" if from_page else "one-click"
        await run_in_threadpool(self._unsubscribe, address, source)
        _state(request, unsubscribe=source)
        if from_page:
            return HTMLResponse(pages.unsubscribed(self.settings, address))
        return Response(status_code=200)

    def _unsubscribe(self, address: str, source: str) -> None:
        from sqlmodel import Session

        from kolaq_console import consent

        with Session(self.engine) as session:
            consent.unsubscribe(session, address, source=source)
            session.commit()

    async def health(self, request: Request) -> Response:
        report = await run_in_threadpool(self._health)
        healthy = report["database"] == "ok" and report["queue"] == "ok"
        return JSONResponse(report, 200 if healthy else 503)

    def _health(self) -> dict[str, Any]:
        from kolaq_console import dispatch
        from kolaq_console.db import ping
        from kolaq_console.taskqueue import ping_queue

        report: dict[str, Any] = {}
        for name, check in (("database", lambda: ping(self.engine)),
                            ("queue", lambda: ping_queue(dispatch.huey()))):
            try:
                check()
                report[name] = "ok"
            except Exception as exc:
                report[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        report["providers"] = {p: self.secrets[p] is not None for p in PROVIDERS}
        return report


class AccessLog:
    """Pure ASGI middleware: one JSON line per request (no body, no token, no secret)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        sent = 0

        async def capture(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            path = scope.get("path", "")
            if path.startswith("/unsubscribe/"):
                path = "/unsubscribe/{token}"  # the token names an address
            client = scope.get("client")
            line = {"method": scope.get("method"), "path": path, "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2), "bytes": sent,
                    "client": client[0] if client else None, **scope.get("kolaq", {})}
            access_log.info(json.dumps(line, separators=(",", ":"), default=str))


def make_app(settings: Settings, engine: Engine, *,
             extra_routes: Sequence[BaseRoute] = ()) -> ASGIApp:
    """The receiver for these settings and engine; `extra_routes` lets the benchmark add a
    bare endpoint to the same server."""
    receiver = Receiver(settings, engine)

    @asynccontextmanager
    async def lifespan(_app: Starlette):
        for name in receiver.missing_secrets():
            log.warning("%s is not set: its webhook endpoint answers 503 to every event", name)
        yield
        await receiver.writer.close()
        engine.dispose()

    routes = [
        Route("/webhooks/twilio", receiver.twilio, methods=["POST"]),
        Route("/webhooks/{provider}", receiver.webhook, methods=["POST"]),
        Route("/unsubscribe/{token}", receiver.unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe/{token}", receiver.unsubscribe, methods=["POST"]),
        Route("/health", receiver.health, methods=["GET"]),
        *extra_routes,
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.receiver = receiver
    return AccessLog(app)
