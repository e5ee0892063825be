"""The fixtures `stub` (the strict Resend stand-in) and `workers` (broadcast_support.Workers
sending through the real SDK to it) of the broadcast tests. A module takes them with
`from broadcast_fixtures import resend_stub, resend_workers  # noqa: F401`: pytest finds them
by their fixture names, and imported as `stub`/`workers` the tests' parameters would shadow
the imports."""

from __future__ import annotations

import pytest
from broadcast_support import Workers
from email_support import KEY
from stubs.resend_api import ResendStub

from kolaq_console import dispatch
from kolaq_console.emails.transports import ResendTransport


@pytest.fixture(name="stub")
def resend_stub():
    """The strict Resend stand-in, with the tests' key."""
    with ResendStub(api_keys={KEY}) as server:
        yield server


@pytest.fixture(name="workers")
def resend_workers(engine, settings, stub):
    """Workers sending through the real SDK to `stub`, running what dispatch recorded."""
    with dispatch.recording() as calls:
        yield Workers(engine, settings, ResendTransport(KEY, stub.url, timeout=5), calls)
