"""Errors in workers reach the operator as one redacted line, and a failing poll goes on
polling (and says the same failure only once)."""

from __future__ import annotations

from conftest import settle

from kolaq_console.ui import format as fmt
from kolaq_console.ui.screens import emails

FAKE_KEY = "re_notarealkey1234567"  # credential-shaped on purpose: it must be masked


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


def test_one_line_is_redacted_and_has_no_traceback():
    exc = RuntimeError(f"provider said no (key {FAKE_KEY})\nTraceback (most recent call last)")
    text = fmt.one_line(exc)
    assert text == "RuntimeError: provider said no (key [REDACTED])"


async def test_a_failing_poll_notifies_once_redacted_and_keeps_polling(shop, console,
                                                                      monkeypatch):
    calls = []

    def broken(session, query):
        calls.append(query)
        raise RuntimeError(f"database said no to {FAKE_KEY}\n  File \"x.py\", line 1")

    monkeypatch.setattr(emails, "load_emails", broken)
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        screen = app.screen
        assert screen._timer is not None  # rescheduled after the failure
        screen.reload()
        await settle(pilot)
        errors = [n for n in notes(app) if "database said no" in n]
    assert len(calls) == 2
    assert errors == ["RuntimeError: database said no to [REDACTED]"]
