"""The process-wide caches, in one place: settings, database engines, the email and SMS
transports and the shared rate limiters. Each is made on first use (never at import time) and
reused by every thread; `reset()` drops them all (the CLI's --config, tests).

Tasks, the CLI and the console reach storage through here; domain functions take a Session,
Engine or Settings argument so they can be tested alone.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlmodel import Session

from kolaq_console.config import Settings, load_settings
from kolaq_console.db import make_engine, session_scope

if TYPE_CHECKING:
    from kolaq_console.emails.ratelimit import RateLimiter
    from kolaq_console.emails.transports import Transport
    from kolaq_console.sms.transports import Transport as TextTransport

_lock = threading.RLock()
_settings: Settings | None = None
_engines: dict[str, Engine] = {}
_transports: dict[tuple, Transport] = {}
_limiters: dict[tuple, RateLimiter] = {}
_text_transports: dict[tuple, TextTransport] = {}


def settings() -> Settings:
    global _settings
    with _lock:
        if _settings is None:
            _settings = load_settings()
        return _settings


def configure(new: Settings | None) -> None:
    """Replace the process settings (the CLI's --config, tests). None reloads on next use."""
    global _settings
    with _lock:
        _settings = new


def engine_for(url: str, echo: bool = False) -> Engine:
    """One engine (one connection pool) per URL per process."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url, echo)
        return engine


def engine() -> Engine:
    s = settings()
    return engine_for(s.database.url, s.database.echo)


@contextmanager
def session() -> Iterator[Session]:
    with session_scope(engine()) as s:
        yield s


def transport(s: Settings | None = None) -> Transport:
    """The configured email transport, one per configuration (and API key) per process."""
    from kolaq_console.emails.transports import build_transport

    s = s or settings()
    e = s.email
    key = s.secrets.resend_api_key
    cache_key = (
        e.transport, e.outbox_dir, e.api_url, e.request_timeout,
        hashlib.sha256(key.get_secret_value().encode()).hexdigest() if key else None,
    )
    with _lock:
        made = _transports.get(cache_key)
        if made is None:
            made = _transports[cache_key] = build_transport(s)
        return made


def limiter(s: Settings | None = None) -> RateLimiter:
    """The provider rate limiter shared by every worker (its state lives in the queue store);
    one client object per configuration per process."""
    from kolaq_console.emails.ratelimit import make_limiter

    s = s or settings()
    q = s.queue
    cache_key = (q.backend, q.redis_url, q.sqlite_path, q.name, s.email.rate_limit_per_second)
    with _lock:
        made = _limiters.get(cache_key)
        if made is None:
            made = _limiters[cache_key] = make_limiter(s)
        return made


def _digest(secret) -> str | None:
    return hashlib.sha256(secret.get_secret_value().encode()).hexdigest() if secret else None


def sms_transport(s: Settings | None = None) -> TextTransport:
    """The configured SMS/WhatsApp transport, one per configuration (and account) per
    process."""
    from kolaq_console.sms.transports import build_transport

    s = s or settings()
    m = s.sms
    cache_key = (m.transport, m.outbox_dir, m.api_url, m.request_timeout, m.lookup_limit,
                 _digest(s.secrets.twilio_account_sid), _digest(s.secrets.twilio_auth_token))
    with _lock:
        made = _text_transports.get(cache_key)
        if made is None:
            made = _text_transports[cache_key] = build_transport(s)
        return made


def sms_limiter(s: Settings | None = None) -> RateLimiter:
    """The Twilio rate limiter shared by every worker ([sms] rate_limit_per_second)."""
    from kolaq_console.emails.ratelimit import make_limiter

    s = s or settings()
    q = s.queue
    rate = s.sms.rate_limit_per_second
    cache_key = ("sms", q.backend, q.redis_url, q.sqlite_path, q.name, rate)
    with _lock:
        made = _limiters.get(cache_key)
        if made is None:
            made = _limiters[cache_key] = make_limiter(s, "sms", rate)
        return made


def dispose_engines() -> None:
    with _lock:
        for eng in _engines.values():
            eng.dispose()
        _engines.clear()


def reset() -> None:
    """Forget every cached object (engines are disposed): the next use makes them anew."""
    dispose_engines()
    with _lock:
        _transports.clear()
        _text_transports.clear()
        _limiters.clear()
    configure(None)
