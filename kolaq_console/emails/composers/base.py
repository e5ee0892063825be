"""The composer contract: a function of (session, settings, request) that validates what its
kind needs and returns a `Composition` — recipient, template context, idempotency key, extra
headers — or raises UserError/NotFound. It writes nothing and renders nothing: `compose` does
the rendering, so every kind is checked and rendered the same way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from kolaq_console.config import Settings
from kolaq_console.emails.request import EmailRequest


@dataclass
class Composition:
    to: str
    context: dict[str, Any]
    key: str  # the kind's derived idempotency key (a request's own key replaces it)
    headers: dict[str, str] = field(default_factory=dict)
    order_id: int | None = None
    broadcast_id: int | None = None


Composer = Callable[[Session, Settings, EmailRequest], Composition]
REGISTRY: dict[str, Composer] = {}


def composer(kind: str) -> Callable[[Composer], Composer]:
    """Register the decorated function as the composer of `kind`."""

    def register(func: Composer) -> Composer:
        if kind in REGISTRY:
            raise ValueError(f"email kind {kind!r} has two composers")
        REGISTRY[kind] = func
        return func

    return register
