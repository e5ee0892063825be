"""Broadcasts through the batch path: time to finish next to the provider's ceiling, and the
batch path's rate next to raw Huey no-op jobs in the same run.

- ceiling: N recipients (default 10,000) against the stand-in limited to 2 and to 10
  requests/s, the client-side limiter set to the same rate ([email] rate_limit_per_second).
  The ceiling is 100 emails per request x the limit; the figure is rate / ceiling (targets
  >= 0.9 at 2/s, >= 0.8 at 10/s). The worker's resident memory is sampled through the run.
- batch vs raw Huey: the same broadcast with no provider limit (rate 0), paired round by round
  (A B, B A, ...) with raw Huey no-op jobs drained by a `huey_consumer` of the same threads and
  poll settings (bench/emails.py's no-op side). Target: >= 1.0x raw Huey's jobs/s in emails/s.

A broadcast is timed from its submit (recipients materialised, first job enqueued) to the
`sent_at` of its last email: the batches are formed, rendered, claimed, sent and marked inside
that time. CPU per email is given per process (this one: the submit; the worker; the stand-in;
Redis; PostgreSQL backends with --postgres) beside wall time; "ours" is everything but the
stand-in (the provider's own work).

    PYTHONPATH=$PWD .venv/bin/python bench/broadcasts.py [--quick] [--recipients N]
        [--rounds R] [--workers N] [--postgres] [--only ceiling|batch]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the Resend stand-in lives with the tests

from bench.emails import (  # noqa: E402
    KEY,
    CpuMeter,
    NoopSide,
    Round,
    machine_probe,
    measure,
    postgres_backends,
    redis_pid,
    scratch_postgres,
    start,
    stop,
    wait_for,
    wait_for_log,
)


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class BroadcastSide:
    """One worker process (`kolaq-console worker -w N`) on a database of N subscribers."""

    label = "broadcast"

    def __init__(self, args, workdir: Path, env: dict[str, str], stub_pid, stack: ExitStack,
                 rate: float) -> None:
        from sqlalchemy import insert

        from kolaq_console import runtime
        from kolaq_console.config import load_settings
        from kolaq_console.db import make_engine
        from kolaq_console.models import Customer
        from kolaq_console.schema import upgrade

        self.env = {**env, "KOLAQ_EMAIL__RATE_LIMIT_PER_SECOND": str(rate),
                    "KOLAQ_QUEUE__NAME": f"kolaq-bench-{uuid.uuid4().hex[:8]}"}
        self.settings = load_settings(environ=self.env)
        runtime.configure(self.settings)
        self.engine = make_engine(self.settings.database.url)
        upgrade(self.engine)
        with self.engine.begin() as conn:
            if not conn.execute(Customer.__table__.select().limit(1)).first():
                conn.execute(insert(Customer), [
                    {"email": f"fan{i:06d}@example.com", "name": f"Fan {i}",
                     "marketing_consent": True} for i in range(args.recipients)])
        import importlib

        import tasks  # wires this process's enqueues to the worker's queue

        self.tasks = importlib.reload(tasks)
        log = workdir / f"broadcast-worker-{rate:g}.log"
        self.proc = start([sys.executable, "-m", "kolaq_console", "worker", "-w",
                           str(args.workers)], self.env, log)
        stack.callback(self.close)
        wait_for_log(log, "tasks.send_email_batch")
        self.pids = {"producer": None, "worker": self.proc.pid, "stand-in": stub_pid}
        url = self.settings.database.url
        if url.startswith("postgres"):
            self.pids["postgres"] = postgres_backends(url.rsplit("/", 1)[1])
        self.round_no = 0
        self.rss: list[float] = []

    def close(self) -> None:
        stop(self.proc)
        conn = self.tasks.huey.storage.conn
        keys = conn.keys(f"*{self.settings.queue.name}*")
        if keys:
            conn.delete(*keys)
        self.engine.dispose()

    def run(self, n: int, meter: CpuMeter) -> Round:
        from sqlalchemy import func, select
        from sqlmodel import Session, col

        from kolaq_console.broadcasts import lifecycle
        from kolaq_console.models import EmailOutbox

        self.round_no += 1
        meter.start()
        t0 = time.time()
        with Session(self.engine, expire_on_commit=False) as session:
            b = lifecycle.submit(session, self.settings, actor="bench",
                                 subject=f"Bench round {self.round_no} {uuid.uuid4().hex[:6]}",
                                 body="# Harmattan cocktails\n\nThree drinks for dry season.",
                                 audience="subscribers").broadcast
        assert b.total == n, (b.total, n)

        def sent() -> bool:
            rss = rss_mib(self.proc.pid)
            if rss is not None:
                self.rss.append(rss)
            with Session(self.engine) as s:
                return s.execute(select(func.count()).select_from(EmailOutbox).where(
                    col(EmailOutbox.broadcast_id) == b.id,
                    col(EmailOutbox.status) == "sent")).scalar_one() >= n

        wait_for(sent, 900, "the broadcast to be sent", every=0.25)
        cpu = meter.stop()
        with Session(self.engine) as s:
            times = [t.timestamp() for t in s.execute(select(EmailOutbox.sent_at).where(
                col(EmailOutbox.broadcast_id) == b.id)).scalars()]
        return measure(n, t0, times, cpu)


def cpu_line(rounds: list[Round]) -> str:
    names = sorted({k for r in rounds for k in r.cpu})
    parts = [f"{k} {1000 * statistics.median(r.cpu.get(k, 0) / r.n for r in rounds):.3f}"
             for k in names]
    ours = 1000 * statistics.median(
        sum(v for k, v in r.cpu.items() if k != "stand-in") / r.n for r in rounds)
    return f"ours {ours:.3f} ms/email (" + ", ".join(parts) + ")"


def ceiling(args, workdir, env, stub, stack) -> None:
    targets = {2: 0.9, 10: 0.8}
    for rate in args.rates:
        target = targets.get(rate, 0.8)
        stub.set_rate_limit(rate)
        side = BroadcastSide(args, workdir, env, stub.pid, stack, rate)
        rpid = redis_pid(side.tasks.huey.storage.conn)
        rounds = []
        for _ in range(args.ceiling_rounds):
            side.rss.clear()
            r = side.run(args.recipients, CpuMeter({**side.pids, "redis": rpid}))
            rounds.append(r)
            limit = 100 * rate
            rss = side.rss or [float("nan")]
            print(f"  {rate:>2} req/s: {r.n} in {r.elapsed:6.1f} s = {r.rate:6.0f}/s, ceiling "
                  f"{limit}/s -> {r.rate / limit:.2f} (target >= {target}); worker RSS "
                  f"{rss[0]:.0f} -> max {max(rss):.0f} -> {rss[-1]:.0f} MiB", flush=True)
        side.close()
        requests = [q for q in stub.requests if q.status == 200]
        print(f"  {rate:>2} req/s CPU: {cpu_line(rounds)}; the stand-in saw at most "
              f"{stub.max_requests_in_any_second(include_rejected=False)} accepted "
              f"requests in any second, {sum(q.status == 429 for q in stub.requests)} 429s, "
              f"{len(requests)} requests", flush=True)
        stub.reset()


def batch_vs_huey(args, workdir, env, stub, stack) -> None:
    from kolaq_console.config import load_settings

    stub.set_rate_limit(None)
    noop = NoopSide(args, workdir, load_settings(environ=env), stack)
    side = BroadcastSide(args, workdir, env, stub.pid, stack, 0)
    rpid = redis_pid(side.tasks.huey.storage.conn)
    results: dict[str, list[Round]] = {"no-op": [], "broadcast": []}
    for round_no in range(args.rounds):
        order = [("no-op", noop), ("broadcast", side)]
        for label, s in (order if round_no % 2 == 0 else order[::-1]):
            pids = {**s.pids, "redis": rpid} if rpid else s.pids
            r = (s.drain(args.noops, CpuMeter(pids)) if label == "no-op"
                 else s.run(args.recipients, CpuMeter(pids)))
            results[label].append(r)
            print(f"  round {round_no + 1} {label:<9}: {r.n} in {r.elapsed:6.2f} s = "
                  f"{r.rate:6.0f}/s (steady {r.steady:6.0f}/s)", flush=True)
    ratios = [b.rate / a.rate for a, b in zip(results["no-op"], results["broadcast"],
                                              strict=True)]
    a = statistics.median(r.rate for r in results["no-op"])
    b = statistics.median(r.rate for r in results["broadcast"])
    print(f"\n  median: raw Huey no-op {a:.0f} jobs/s, broadcast {b:.0f} emails/s, ratio "
          f"{statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f}; "
          "target >= 1.0)")
    print(f"  CPU per no-op job: {cpu_line(results['no-op']).replace('email', 'job')}")
    print(f"  CPU per email:     {cpu_line(results['broadcast'])} (target ours <= 0.1)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--noops", type=int, default=10_000, help="no-op jobs per round")
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds, batch vs Huey")
    parser.add_argument("--ceiling-rounds", type=int, default=1)
    parser.add_argument("--rates", type=lambda v: [int(x) for x in v.split(",")],
                        default=[2, 10], help="provider limits to run the ceiling at")
    parser.add_argument("--workers", type=int, default=4, help="threads of each worker")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL",
                                                              "redis://127.0.0.1:6379/10"))
    parser.add_argument("--postgres", action="store_true",
                        help="a scratch database on the local PostgreSQL (default SQLite)")
    parser.add_argument("--only", choices=("ceiling", "batch"))
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,000 recipients")
    args = parser.parse_args()
    if args.quick:
        args.recipients, args.noops, args.rounds = 1000, 1000, 1

    import redis
    from stubs.resend_api import ResendStubProcess

    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kolaq-bench-")))
        stub = stack.enter_context(ResendStubProcess(api_keys=[KEY]))
        db_url = f"sqlite:///{workdir / 'bench.db'}"
        if args.postgres:
            db_url = stack.enter_context(scratch_postgres())
        env = {
            **os.environ,
            "KOLAQ_CONFIG": str(ROOT / "config.toml"),
            "KOLAQ_DATABASE__URL": db_url,
            "KOLAQ_QUEUE__BACKEND": "redis",
            "KOLAQ_QUEUE__REDIS_URL": args.redis_url,
            "KOLAQ_QUEUE__PERIODIC": "false",
            "KOLAQ_EMAIL__TRANSPORT": "resend",
            "KOLAQ_SHOP__PUBLIC_URL": "https://shop.example",
            "KOLAQ_SIGNING_KEY": "bench-signing-key-not-secret",
            "RESEND_API_URL": stub.url,
            "RESEND_API_KEY": KEY,
            "PYTHONPATH": str(ROOT),
        }
        database = "PostgreSQL" if db_url.startswith("postgres") else "SQLite"
        print(f"bench/broadcasts.py: Redis {args.redis_url}, {database}, 1 worker x "
              f"{args.workers} threads, {args.recipients} recipients, [email] "
              f"broadcast_lookahead {os.environ.get('KOLAQ_EMAIL__BROADCAST_LOOKAHEAD', 8)}",
              flush=True)
        print(f"machine now: {machine_probe(redis.Redis.from_url(args.redis_url))}", flush=True)
        if args.only in (None, "ceiling"):
            print("\nceiling (stand-in and client limited to the same requests/s):", flush=True)
            ceiling(args, workdir, env, stub, stack)
        if args.only in (None, "batch"):
            print("\nbatch path with no provider limit vs raw Huey no-op jobs (paired):",
                  flush=True)
            batch_vs_huey(args, workdir, env, stub, stack)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
