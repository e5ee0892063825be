"""SMS/WhatsApp messages per second, next to raw Huey no-op tasks/s, and against Twilio's limit.

Part 1 (target >= 0.5): messages through the `dev` transport (queue -> claim -> write the file
-> row sent) vs raw Huey no-op tasks, on the same Redis, each consumed by ONE worker process
with the same threads and poll settings, alternated round by round (A B, B A, ...). Measured as
in bench/emails.py: end to end (this process queues: validate the number, count segments,
insert, commit, enqueue) and drain (rows committed first, jobs moved into the worker's queue in
one RENAME), with the steady 10-90% rate and CPU ms per item of each process.

Part 2 (target >= 0.9): messages through the real `twilio` SDK to the stand-in (its own
process) refusing more than `--ceiling` creations per second with 429/20429, the workers paced
by [sms] rate_limit_per_second = the ceiling: achieved messages/s over the ceiling, and how
many requests the stand-in refused.

    PYTHONPATH=$PWD .venv/bin/python bench/sms.py [--quick] [--messages N] [--rounds R]
        [--workers N] [--ceiling 10] [--ceiling-messages N]
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
sys.path.insert(0, str(ROOT / "tests"))  # the Twilio stand-in lives with the tests

from bench.emails import (  # noqa: E402
    CpuMeter,
    NoopSide,
    Round,
    machine_probe,
    measure,
    redis_pid,
    stage,
    start,
    stop,
    wait_for,
    wait_for_log,
)


def number(round_no: int, i: int) -> str:
    return f"+234803{round_no % 1000:03d}{i % 10_000:04d}"  # valid Nigerian mobile numbers


class TextSide:
    label = "messages"

    def __init__(self, args, workdir: Path, settings, env: dict[str, str], stack: ExitStack,
                 log_name: str = "sms-worker.log") -> None:
        from kolaq_console import runtime
        from kolaq_console.db import make_engine
        from kolaq_console.schema import upgrade
        from kolaq_console.taskqueue import make_huey

        self.settings = settings
        runtime.configure(settings)
        self.engine = make_engine(settings.database.url)
        upgrade(self.engine)
        import tasks  # builds its Huey from the settings configured above

        self.tasks = tasks
        self.staging = make_huey(settings.model_copy(update={"queue": settings.queue.model_copy(
            update={"name": settings.queue.name + "-staging"})}))
        self.conn = tasks.huey.storage.conn
        log = workdir / log_name
        self.proc = start([sys.executable, "-m", "kolaq_console", "worker", "-w",
                           str(args.workers), "--no-periodic"], env, log)
        stack.callback(self.close)
        wait_for_log(log, "tasks.send_text")
        self.pids = {"producer": None, "worker": self.proc.pid}
        self.round_no = 0

    def close(self) -> None:
        stop(self.proc)
        keys = self.conn.keys(f"*{self.settings.queue.name}*")
        if keys:
            self.conn.delete(*keys)
        self.engine.dispose()

    def queue(self, n: int, enqueue: bool) -> list[int]:
        from sqlmodel import Session

        from kolaq_console.sms import outbox

        self.round_no += 1
        ids = []
        with Session(self.engine, expire_on_commit=False) as session:
            for i in range(n):
                if enqueue:
                    row = outbox.queue_message(session, self.settings, "generic",
                                               to=number(self.round_no, i),
                                               body=f"Kolaq Bitters: your note {i}").row
                else:
                    draft = outbox.build_message(session, self.settings, "generic",
                                                 to=number(self.round_no, i),
                                                 body=f"Kolaq Bitters: your note {i}")
                    row = outbox.store(session, self.settings, draft).row
                    session.commit()
                ids.append(row.id)
        return ids

    def sent_times(self, first: int, last: int) -> list[float]:
        from sqlmodel import Session, col, select

        from kolaq_console.models import TextMessage

        with Session(self.engine) as s:
            rows = s.exec(select(TextMessage.sent_at).where(
                col(TextMessage.id).between(first, last), TextMessage.status == "sent")).all()
        return [t.timestamp() for t in rows]

    def wait(self, first: int, last: int, n: int, timeout: float = 300) -> None:
        from sqlalchemy import func
        from sqlmodel import Session, col, select

        from kolaq_console.models import TextMessage

        def done() -> bool:
            with Session(self.engine) as s:
                return s.exec(select(func.count()).select_from(TextMessage).where(
                    col(TextMessage.id).between(first, last), TextMessage.status == "sent"
                )).one() >= n

        wait_for(done, timeout, "messages sent")

    def end_to_end(self, n: int, meter: CpuMeter) -> Round:
        meter.start()
        t0 = time.time()
        ids = self.queue(n, enqueue=True)
        self.wait(ids[0], ids[-1], n)
        return measure(n, t0, self.sent_times(ids[0], ids[-1]), meter.stop())

    def drain(self, n: int, meter: CpuMeter) -> Round:
        ids = self.queue(n, enqueue=False)
        for row_id in ids:
            stage(self.tasks.huey, self.staging, self.tasks.send_text.s(row_id))
        meter.start()
        t0 = time.time()
        self.conn.rename(self.staging.storage.queue_key, self.tasks.huey.storage.queue_key)
        self.wait(ids[0], ids[-1], n)
        return measure(n, t0, self.sent_times(ids[0], ids[-1]), meter.stop())


def base_env(args, db_url: str, name: str) -> dict[str, str]:
    return {
        **os.environ,
        "KOLAQ_CONFIG": str(ROOT / "config.toml"),
        "KOLAQ_DATABASE__URL": db_url,
        "KOLAQ_QUEUE__BACKEND": "redis",
        "KOLAQ_QUEUE__REDIS_URL": args.redis_url,
        "KOLAQ_QUEUE__NAME": name,
        "KOLAQ_QUEUE__PERIODIC": "false",
        "KOLAQ_SIGNING_KEY": "bench-signing-key-not-secret",
        "KOLAQ_SMS__FROM_NUMBER": "+2348090000001",
        "PYTHONPATH": str(ROOT),
    }


def report(noop: dict[str, list[Round]], texts: dict[str, list[Round]]) -> None:
    print()
    print(f"{'median of rounds':<26}{'no-op/s':>10}{'msgs/s':>10}{'ratio':>8}{'ratio range':>16}")
    for mode in ("end to end", "drain"):
        for label, get in ((mode, lambda r: r.rate), ("  steady 10-90%", lambda r: r.steady)):
            a = [get(r) for r in noop[mode]]
            b = [get(r) for r in texts[mode]]
            ratios = [y / x for x, y in zip(a, b, strict=True)]
            print(f"{label:<26}{statistics.median(a):>10.0f}{statistics.median(b):>10.0f}"
                  f"{statistics.median(ratios):>8.2f}"
                  f"{f'{min(ratios):.2f}-{max(ratios):.2f}':>16}")
    print("\nCPU ms per item (median of rounds; this machine's cores are shared by all):")
    for mode in ("end to end", "drain"):
        for side, rounds in (("no-op", noop[mode]), ("msgs", texts[mode])):
            names = sorted({k for r in rounds for k in r.cpu})
            parts = [f"{k} {1000 * statistics.median(r.cpu.get(k, 0) / r.n for r in rounds):.2f}"
                     for k in names]
            total = 1000 * statistics.median(sum(r.cpu.values()) / r.n for r in rounds)
            print(f"  {mode:<11} {side:<6} total {total:5.2f}: " + ", ".join(parts))


def part_one(args, workdir: Path, stack: ExitStack) -> None:
    import redis

    from kolaq_console.config import load_settings

    env = {**base_env(args, f"sqlite:///{workdir / 'dev.db'}",
                      f"kolaq-bench-sms-{uuid.uuid4().hex[:8]}"),
           "KOLAQ_SMS__TRANSPORT": "dev", "KOLAQ_SMS__OUTBOX_DIR": str(workdir / "outbox")}
    settings = load_settings(environ=env)
    print(f"part 1: dev transport, Redis {args.redis_url}, SQLite, 1 worker process x "
          f"{args.workers} threads per side, {args.rounds} round(s) of {args.noops} no-ops / "
          f"{args.messages} messages", flush=True)
    print(f"machine now: {machine_probe(redis.Redis.from_url(args.redis_url))}", flush=True)
    noop = NoopSide(args, workdir, settings, stack)
    texts = TextSide(args, workdir, settings, env, stack)
    rpid = redis_pid(redis.Redis.from_url(args.redis_url))
    sides = [(noop, args.noops), (texts, args.messages)]
    results: dict[str, dict[str, list[Round]]] = {
        s.label: {"end to end": [], "drain": []} for s, _ in sides}
    for round_no in range(args.rounds):
        for side, n in (sides if round_no % 2 == 0 else sides[::-1]):
            pids = {**side.pids, "redis": rpid} if rpid else side.pids
            for mode, run in (("end to end", side.end_to_end), ("drain", side.drain)):
                r = run(n, CpuMeter(pids))
                results[side.label][mode].append(r)
                print(f"  round {round_no + 1} {side.label:<8} {mode:<10}: {n} in "
                      f"{r.elapsed:.2f} s = {r.rate:6.0f}/s (steady {r.steady:6.0f}/s)",
                      flush=True)
    files = len(list((workdir / "outbox").glob("*.txt")))
    report(results["no-op"], results["messages"])
    print(f"\n({files} message files written by the dev transport; target ratio >= 0.5)")
    noop.close()
    texts.close()


def part_two(args, workdir: Path, stack: ExitStack) -> None:
    from sms_support import ACCOUNT, TOKEN
    from stubs.twilio_api import TwilioStubProcess

    from kolaq_console.config import load_settings

    stub = stack.enter_context(TwilioStubProcess(ACCOUNT, TOKEN, rate_limit=args.ceiling))
    env = {**base_env(args, f"sqlite:///{workdir / 'twilio.db'}",
                      f"kolaq-bench-twilio-{uuid.uuid4().hex[:8]}"),
           "KOLAQ_SMS__TRANSPORT": "twilio", "TWILIO_API_URL": stub.url,
           "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN,
           "KOLAQ_SMS__RATE_LIMIT_PER_SECOND": str(args.ceiling),
           "KOLAQ_SMS__STATUS_CALLBACK": "false"}
    settings = load_settings(environ=env)
    print(f"\npart 2: twilio SDK -> stand-in at {args.ceiling} messages/s (429 beyond), "
          f"[sms] rate_limit_per_second = {args.ceiling}, 1 worker x {args.workers} threads, "
          f"{args.rounds} round(s) of {args.ceiling_messages}", flush=True)
    texts = TextSide(args, workdir, settings, env, stack, "twilio-worker.log")
    texts.pids["stand-in"] = stub.pid
    rates, refused, cpu = [], [], []
    for round_no in range(args.rounds):
        before = len([r for r in stub.requests if r.status == 429])
        meter = CpuMeter(texts.pids)
        ids = texts.queue(args.ceiling_messages, enqueue=False)
        for row_id in ids:
            stage(texts.tasks.huey, texts.staging, texts.tasks.send_text.s(row_id))
        meter.start()
        t0 = time.time()
        texts.conn.rename(texts.staging.storage.queue_key, texts.tasks.huey.storage.queue_key)
        try:
            texts.wait(ids[0], ids[-1], len(ids),
                       timeout=args.ceiling_messages / args.ceiling * 5 + 10)
        except SystemExit:
            print((workdir / "twilio-worker.log").read_text()[-3000:], file=sys.stderr)
            raise
        r = measure(len(ids), t0, texts.sent_times(ids[0], ids[-1]), meter.stop())
        n429 = len([q for q in stub.requests if q.status == 429]) - before
        rates.append(r.steady)
        refused.append(n429)
        cpu.append(sum(r.cpu.values()) / r.n)
        print(f"  round {round_no + 1}: {r.n} in {r.elapsed:.2f} s = {r.rate:5.2f}/s "
              f"(steady {r.steady:5.2f}/s = {r.steady / args.ceiling:.2f} of the ceiling), "
              f"{n429} refused with 429", flush=True)
    peak = stub.max_creates_in_any_second()
    print(f"\nmedian steady rate {statistics.median(rates):.2f}/s = "
          f"{statistics.median(rates) / args.ceiling:.2f} of the {args.ceiling}/s ceiling "
          f"(target >= 0.9); 429s per round {refused}; peak accepted in any 1 s window: {peak}; "
          f"CPU {1000 * statistics.median(cpu):.2f} ms per message (all processes)")
    texts.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500, help="messages per round (part 1)")
    parser.add_argument("--noops", type=int, default=2000, help="no-op tasks per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="threads of each worker process")
    parser.add_argument("--ceiling", type=int, default=10, help="stand-in messages/s (part 2)")
    parser.add_argument("--ceiling-messages", type=int, default=100,
                        help="messages per round (part 2)")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL",
                                                              "redis://127.0.0.1:6379/10"))
    parser.add_argument("--part", choices=["1", "2", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 small round")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.noops, args.rounds, args.ceiling_messages = 100, 400, 1, 30
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kolaq-bench-")))
        if args.part in ("1", "both"):
            part_one(args, workdir, stack)
        if args.part in ("2", "both"):
            part_two(args, workdir, stack)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
