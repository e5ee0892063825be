"""A Redis outage under a real worker: one line when the queue is lost, one when it is back,
a growing pause between attempts meanwhile, and work resumes. The Redis here is the test's
own throwaway server on a free port; the shared one is never stopped."""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import pytest
from helpers import Proc, run_cli, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.redis]

MAX_DELAY = 0.8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayRedis:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.dir = tmp_path / "redis"
        self.dir.mkdir()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is required (scripts/ensure-services installs it)"
        self.proc = Proc([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(self.dir)], {},
                         self.dir / f"redis-{self.port}.log")
        self.proc.wait_for_output("Ready to accept connections")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill9()  # an outage, not a shutdown
            self.proc.stop()
            self.proc = None


@pytest.fixture
def redis_server(tmp_path):
    server = ThrowawayRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def _without_task_failures(log: str) -> str:
    """The log without Huey's report of a task that failed (and will be retried) because
    the storage went away while it ran, e.g. a periodic task reading the queue at that
    minute: that traceback is the task's, not the consumer's outage handling."""
    kept, skipping = [], False
    for line in log.splitlines():
        if "Unhandled exception in task" in line:
            skipping = True
            continue
        if skipping and re.match(r"\d{4}-\d\d-\d\d ", line):
            skipping = False
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def test_a_redis_outage_logs_one_line_down_one_line_up_and_backs_off(
        redis_server, sqlite_engine, kolaq_env, spawn, tmp_path):
    # (redis_server first: torn down after the worker, so teardown is not another outage)
    env = {"KOLAQ_QUEUE__BACKEND": "redis", "KOLAQ_QUEUE__REDIS_URL": redis_server.url,
           "KOLAQ_QUEUE__OUTAGE_MAX_DELAY": str(MAX_DELAY)}
    worker = spawn("worker", "-w", "4", "--verbose", env=env)  # periodic: the scheduler too
    worker.wait_for_output("Huey consumer started")

    redis_server.stop()
    worker.wait_for_output("queue storage unreachable")
    # wait until the pause between attempts has grown to its ceiling
    wait_until(lambda: f"next attempt in {MAX_DELAY:.2f} s" in worker.output(),
               message="the backoff to reach its ceiling")
    redis_server.start()
    worker.wait_for_output("queue storage reachable again")

    body = tmp_path / "body.txt"
    body.write_text("Hello")
    queued = run_cli({**kolaq_env, **env}, "email", "queue", "generic", "--to",
                     "a@example.com", "--subject", "Hi", "--body-file", str(body))
    assert queued.returncode == 0, queued.stderr
    outbox = Path(kolaq_env["KOLAQ_EMAIL__OUTBOX_DIR"])
    wait_until(lambda: outbox.exists() and list(outbox.glob("*.eml")),
               message="work to resume after the outage")

    log = worker.output()
    assert log.count("queue storage unreachable") == 1
    assert log.count("queue storage reachable again") == 1
    outage_lines = _without_task_failures(log)
    assert "Traceback" not in outage_lines and "Error reading" not in outage_lines, log
    delays = [float(d) for d in re.findall(r"next attempt in ([0-9.]+) s", log)]
    assert delays == sorted(delays) and delays[0] < MAX_DELAY  # it grew, to the ceiling
    assert delays.count(MAX_DELAY) == len(delays) - delays.index(MAX_DELAY)
