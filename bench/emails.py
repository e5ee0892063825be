"""Emails per second end to end (queue -> send -> row updated) next to raw Huey no-op tasks/s.

Both on the same Redis, both consumed by one worker process with 4 threads, in the same run:
- emails: `queue_email` (validate, render, insert, commit, enqueue) in this process while a
  `kolaq-console worker -w 4` sends through the real resend SDK to the local stand-in (no rate
  limit) and marks each row sent; timed from the first queue call to the last row sent;
- baseline: `huey_consumer` with 4 threads running a task that only INCRs a Redis counter,
  timed from the first enqueue to the last task done.
Prints the median of several rounds and the ratio (target >= 0.5).

    PYTHONPATH=$PWD .venv/bin/python bench/emails.py [--quick] [--emails N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEY = "test-key-not-real"
NOOP_MODULE = '''
import os
from huey import PriorityRedisHuey
huey = PriorityRedisHuey(os.environ["BENCH_NAME"], url=os.environ["BENCH_REDIS_URL"],
                         results=False)
COUNTER = os.environ["BENCH_NAME"] + ".done"

@huey.task()
def noop(i):
    huey.storage.conn.incr(COUNTER)
'''


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(0.005)


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    fh = log.open("ab")
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_for_log(log: Path, text: str, timeout: float = 30) -> None:
    wait_for(lambda: text in log.read_text(errors="replace"), timeout, f"{text!r} in {log}")


def bench_emails(args, workdir: Path, redis_url: str, stub_url: str) -> list[float]:
    from sqlalchemy import func
    from sqlmodel import Session, select

    from kolaq_console import runtime
    from kolaq_console.config import load_settings
    from kolaq_console.db import make_engine
    from kolaq_console.emails import queue_email
    from kolaq_console.models import EmailOutbox
    from kolaq_console.schema import upgrade

    name = f"kolaq-bench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "KOLAQ_CONFIG": str(ROOT / "config.toml"),
        "KOLAQ_DATABASE__URL": args.database_url or f"sqlite:///{workdir / 'bench.db'}",
        "KOLAQ_QUEUE__BACKEND": "redis",
        "KOLAQ_QUEUE__REDIS_URL": redis_url,
        "KOLAQ_QUEUE__NAME": name,
        "KOLAQ_QUEUE__PERIODIC": "false",
        "KOLAQ_EMAIL__TRANSPORT": "resend",
        "KOLAQ_EMAIL__RATE_LIMIT_PER_SECOND": "1000000",
        "KOLAQ_SIGNING_KEY": "bench-signing-key-not-secret",
        "RESEND_API_URL": stub_url,
        "RESEND_API_KEY": KEY,
        "PYTHONPATH": str(ROOT),
    }
    settings = load_settings(environ=env)
    runtime.configure(settings)
    engine = make_engine(settings.database.url)
    upgrade(engine)
    import tasks  # builds its Huey from the settings configured above

    log = workdir / "email-worker.log"
    worker = start([sys.executable, "-m", "kolaq_console", "worker", "-w", "4"], env, log)
    rates = []
    try:
        wait_for_log(log, "tasks.send_email")
        for round_no in range(args.rounds):
            with Session(engine) as s:
                before = s.exec(select(func.count()).select_from(EmailOutbox)).one()
            target = before + args.emails
            t0 = time.perf_counter()
            with Session(engine, expire_on_commit=False) as session:
                for i in range(args.emails):
                    queue_email(session, settings, "generic", to=f"c{round_no}-{i}@example.com",
                                subject=f"Bench {round_no}", body=f"Hello number {i}")

            def done(target: int = target) -> bool:
                with Session(engine) as s:
                    return s.exec(
                        select(func.count()).select_from(EmailOutbox)
                        .where(EmailOutbox.status == "sent")
                    ).one() >= target

            wait_for(done, 300, "emails sent")
            elapsed = time.perf_counter() - t0
            rates.append(args.emails / elapsed)
            print(f"  emails round {round_no + 1}: {args.emails} in {elapsed:.2f} s "
                  f"= {rates[-1]:.0f}/s", flush=True)
    finally:
        stop(worker)
        tasks.huey.storage.conn.delete(*tasks.huey.storage.conn.keys(f"*{name}*") or ["-"])
        engine.dispose()
    return rates


def bench_noop(args, workdir: Path, redis_url: str) -> list[float]:
    import redis

    name = f"kolaq-bench-noop-{uuid.uuid4().hex[:8]}"
    module = workdir / "bench_noop_tasks.py"
    module.write_text(NOOP_MODULE)
    env = {**os.environ, "BENCH_NAME": name, "BENCH_REDIS_URL": redis_url,
           "PYTHONPATH": str(workdir)}
    os.environ.update(BENCH_NAME=name, BENCH_REDIS_URL=redis_url)
    sys.path.insert(0, str(workdir))
    import bench_noop_tasks as noop_tasks

    consumer = str(Path(sys.executable).parent / "huey_consumer")
    log = workdir / "noop-worker.log"
    # Same consumer shape as `kolaq-console worker` with the default [queue] settings.
    proc = start([consumer, "bench_noop_tasks.huey", "-w", "4", "-k", "thread", "-d", "0.1",
                  "-m", "0.5", "-n"], env, log)
    conn = redis.Redis.from_url(redis_url)
    rates = []
    try:
        wait_for_log(log, "bench_noop_tasks.noop")
        for round_no in range(args.rounds):
            conn.set(noop_tasks.COUNTER, 0)
            n = args.noops
            t0 = time.perf_counter()
            for i in range(n):
                noop_tasks.noop(i)
            wait_for(lambda n=n: int(conn.get(noop_tasks.COUNTER) or 0) >= n, 300, "no-op tasks")
            elapsed = time.perf_counter() - t0
            rates.append(n / elapsed)
            print(f"  no-op round {round_no + 1}: {n} in {elapsed:.2f} s = {rates[-1]:.0f}/s",
                  flush=True)
    finally:
        stop(proc)
        keys = conn.keys(f"*{name}*")
        if keys:
            conn.delete(*keys)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=500, help="emails per round")
    parser.add_argument("--noops", type=int, default=2000, help="no-op tasks per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL",
                                                              "redis://127.0.0.1:6379/10"))
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 small round")
    args = parser.parse_args()
    if args.quick:
        args.emails, args.noops, args.rounds = 100, 400, 1

    from kolaq_console.testing.resend_stub import ResendStubProcess

    with tempfile.TemporaryDirectory(prefix="kolaq-bench-") as tmp, \
            ResendStubProcess(api_keys=[KEY]) as stub:
        workdir = Path(tmp)
        print(f"bench/emails.py: Redis {args.redis_url}, 1 worker process x 4 threads, "
              f"{args.rounds} round(s)", flush=True)
        noop = bench_noop(args, workdir, args.redis_url)
        emails = bench_emails(args, workdir, args.redis_url, stub.url)
        delivered = len(stub.deliveries)
    e, n = statistics.median(emails), statistics.median(noop)
    print(f"raw Huey no-op tasks/s (median): {n:8.1f}")
    print(f"emails/s end to end  (median):   {e:8.1f}   ({delivered} delivered by the stand-in)")
    print(f"ratio emails / no-op:            {e / n:8.2f}   (target >= 0.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
