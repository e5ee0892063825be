"""The command palette's lookup (ctrl+p): orders, customers and products as you type; Enter
opens the record. The search runs in a thread, so typing never waits on the database."""

from __future__ import annotations

import asyncio
from functools import partial

from sqlmodel import Session
from textual.command import Hit, Hits, Provider

from kolaq_console.lookup import Match, find
from kolaq_console.ui import links

LIMIT = 8


class LookupProvider(Provider):
    """Finds orders by number (or its digits), customers by email or name, products by SKU
    or name: prefixes, case-insensitive (kolaq_console.lookup.search)."""

    def _find(self, term: str) -> list[Match]:
        with Session(self.app.engine) as session:  # type: ignore[attr-defined]
            return find(session, term, limit=LIMIT)

    async def search(self, query: str) -> Hits:
        if not query.strip():
            return
        matches = await asyncio.to_thread(self._find, query)
        for n, match in enumerate(matches):
            yield Hit(1.0 - n / 100, match.title,
                      partial(links.open_kind, self.app, match.kind, match.key),
                      text=f"{match.kind} {match.key}", help=match.detail)
