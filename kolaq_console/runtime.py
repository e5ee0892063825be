"""Process-wide settings and engine, made on first use (never at import time).

Tasks and the CLI reach storage through here; domain functions take a Session or Engine
argument so they can be tested alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine
from sqlmodel import Session

from kolaq_console.config import Settings, load_settings
from kolaq_console.db import engine_for, session_scope

_lock = threading.Lock()
_settings: Settings | None = None


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


def engine() -> Engine:
    s = settings()
    return engine_for(s.database.url, s.database.echo)


@contextmanager
def session() -> Iterator[Session]:
    with session_scope(engine()) as s:
        yield s
