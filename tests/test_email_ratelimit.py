"""The provider rate limiter is one limiter, kept in the queue's storage (Redis or the SQLite
queue file), however many threads and processes ask it."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from helpers import wait_until

from kolaq_console.emails.ratelimit import interval_for, make_limiter


@pytest.fixture
def limiters(queue_backend, make_settings):
    """Two limiter instances with their own connections: what two worker processes hold."""
    settings = make_settings(email__rate_limit_per_second="4")
    return make_limiter(settings), make_limiter(settings)


def test_grants_to_every_thread_of_two_processes_are_spaced_by_the_interval(limiters):
    slots: list[float] = []
    lock = threading.Lock()

    def worker(limiter):
        for _ in range(5):
            grant = limiter.acquire(max_block_wait=5)
            assert grant.ok
            with lock:
                slots.append(time.time() + grant.wait)

    threads = [threading.Thread(target=worker, args=(lim,)) for lim in limiters for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slots.sort()
    interval = interval_for(4)
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert len(slots) == 40
    # Reservations, not sleeps, are compared: only the clock reads between them differ.
    assert min(gaps) > interval * 0.7, gaps
    assert slots[-1] - slots[0] >= 39 * interval * 0.95


def test_a_block_holds_every_worker_and_a_long_block_is_refused_not_slept(limiters):
    a, b = limiters
    a.block(0.4, "rate limited by the provider (429)")
    grant = b.acquire(max_block_wait=5)
    assert grant.ok and grant.wait > 0.3
    a.block(3600, "provider sending quota exhausted")
    refused = b.acquire(max_block_wait=5)
    assert not refused.ok and 3590 < refused.wait <= 3600
    assert refused.reason == "provider sending quota exhausted"
    assert b.state()["blocked_reason"] == "provider sending quota exhausted"


def test_provider_headers_lower_the_rate_for_everyone_but_never_raise_it(limiters):
    a, b = limiters
    a.observe({"ratelimit-limit": "1000000", "ratelimit-remaining": "999999"})
    assert b.state()["interval"] == pytest.approx(interval_for(4))
    a.observe({"ratelimit-limit": "2", "ratelimit-remaining": "1", "ratelimit-reset": "1"})
    assert b.state()["interval"] == pytest.approx(interval_for(2))
    a.observe({"ratelimit-limit": "2", "ratelimit-remaining": "0", "ratelimit-reset": "1"})
    assert b.state()["blocked_for"] == pytest.approx(interval_for(2), abs=0.1)
    first = b.acquire(5)
    second = b.acquire(5)
    assert second.wait - first.wait == pytest.approx(interval_for(2), abs=0.1)


def test_an_observation_that_changes_nothing_costs_no_round_trip(limiters, monkeypatch):
    a, _ = limiters

    def no_store(*args, **kwargs):
        raise AssertionError("the shared state was touched")

    for method in ("_run", "_update"):
        if hasattr(a, method):
            monkeypatch.setattr(a, method, no_store)
    a.observe({"ratelimit-limit": "1000000", "ratelimit-remaining": "999999"})
    a.observe({"ratelimit-limit": "4", "ratelimit-remaining": "3"})  # our own rate
    a.observe({})
    with pytest.raises(AssertionError):
        a.observe({"ratelimit-limit": "4", "ratelimit-remaining": "0"})


def test_with_no_limit_grants_are_immediate_and_blocks_still_hold_every_process(
    queue_backend, make_settings
):
    settings = make_settings(email__rate_limit_per_second="0")
    a, b = make_limiter(settings), make_limiter(settings)
    b.blocks.refresh = 0.05  # how often b re-reads blocks other processes wrote
    assert all(g.ok and g.wait == 0 for g in (b.acquire(5) for _ in range(100)))
    a.observe({"ratelimit-limit": "2", "ratelimit-remaining": "0"})  # not followed: no limit
    assert b.acquire(5).wait == 0
    a.block(0.5, "rate limited by the provider (429)")
    own = a.acquire(5)
    assert own.ok and 0.3 < own.wait <= 0.5  # its own block, at once
    a.block(3600, "provider sending quota exhausted")
    wait_until(lambda: not b.acquire(5).ok, timeout=5)
    refused = b.acquire(5)
    assert 3590 < refused.wait <= 3600 and refused.reason == "provider sending quota exhausted"
