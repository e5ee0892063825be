"""Helpers for the broadcast tests: customers to send to, a synchronous stand-in for the
workers that runs the jobs dispatch recorded, in order, until none is left (fixtures using
it: broadcast_fixtures.py)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session

from kolaq_console.broadcasts.sending import line_step, produce, settle
from kolaq_console.dispatch import Call
from kolaq_console.emails.delivery import deliver, deliver_batch
from kolaq_console.models import Customer


def seed_customers(engine, addresses: Iterable[str], *, consent: bool = True) -> None:
    with Session(engine) as s:
        for address in addresses:
            s.add(Customer(email=address, name=address.split("@")[0],
                           marketing_consent=consent))
        s.commit()


def subscribers(n: int, prefix: str = "fan") -> list[str]:
    return [f"{prefix}{i:04d}@example.com" for i in range(n)]


class Workers:
    """Runs recorded jobs like tasks.py would (send_email, send_email_batch, send_broadcast,
    send_broadcast_batch),
    synchronously, so a test can count requests and inspect state between steps."""

    def __init__(self, engine, settings, transport, calls: list[Call],
                 batches_per_job: int = 1) -> None:
        self.engine, self.settings, self.transport, self.calls = engine, settings, transport, calls
        self.ran: list[tuple[str, object]] = []
        # One batch a broadcast job by default, so that a step is a batch (as tests count);
        # the tests of a job's line of batches set more.
        email = settings.email.model_copy(update={"broadcast_batches_per_job": batches_per_job})
        self.line_settings = settings.model_copy(update={"email": email})

    def step(self) -> bool:
        if not self.calls:
            return False
        call = self.calls.pop(0)
        arg = call.args[0]
        self.ran.append((call.task, arg))
        if call.task == "send_broadcast":
            produce(self.engine, self.settings, arg)
        elif call.task == "send_broadcast_batch":
            line_step(self.engine, self.line_settings, arg, transport=self.transport,
                      limiter=None, max_retries=self.settings.queue.retries)
        elif call.task == "send_email_batch":
            done = deliver_batch(self.engine, self.settings, arg, transport=self.transport,
                                 limiter=None)
            if done.broadcast_id is not None:
                settle(self.engine, done.broadcast_id)
        elif call.task == "send_email":
            deliver(self.engine, self.settings, arg, transport=self.transport, limiter=None)
        return True

    def run(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.step():
                return
        raise AssertionError("jobs kept coming")

