"""Accepted webhooks per second on one server process, next to a bare endpoint of the same
server that only reads the body and answers 200, in the same run.

One `uvicorn` process serves `make_app(...)` (exactly what `kolaq-console webhooks serve`
runs) with one extra route, POST /bench/bare. This process is the load: C keep-alive
connections (asyncio), each sending its next request when the previous answer arrived. Per
round each side gets N requests of the same size, alternated (A B, B A, ...):
- bare: the body is read, 200;
- webhooks: N distinct Paystack `charge.success` events, signed beforehand: verify the HMAC
  on the raw body, parse, INSERT ... ON CONFLICT into the inbox, commit, enqueue the
  processing job, 200. No worker runs (processing is not part of the figure); the queue is
  emptied between rounds.
Printed: median requests/s per side, the ratio (target >= 0.5), and CPU ms per request of
the server process (and of this load generator, which shares the machine's cores).

    PYTHONPATH=$PWD .venv/bin/python bench/webhooks.py [--quick] [-n N] [-c C] [--rounds R]
        [--postgres]   (PostgreSQL database + Redis queue; default SQLite + SQLite queue)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.emails import CpuMeter, postgres_backends, scratch_postgres  # noqa: E402

SERVER = '''
import logging, os, sys
import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
import tasks  # wires the queue
from kolaq_console import runtime
from kolaq_console.webhooks.server import make_app

async def bare(request: Request) -> Response:
    await request.body()
    return Response(b'{"status":"ok"}', media_type="application/json")

logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                    format="%(asctime)s %(levelname)s %(name)s: %(message)s")
app = make_app(runtime.settings(), runtime.engine(),
               extra_routes=[Route("/bench/bare", bare, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(os.environ["BENCH_PORT"]), log_config=None,
            access_log=False, server_header=False)
'''


@dataclass
class Round:
    n: int
    elapsed: float
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.n / self.elapsed


def paystack_requests(n: int, secret: str, round_no: int, pad: int) -> list[bytes]:
    out = []
    for i in range(n):
        body = json.dumps({"event": "charge.success", "data": {
            "id": round_no * 10_000_000 + i, "status": "success",
            "reference": f"BENCH-{round_no}-{i}", "amount": 1_250_000, "currency": "NGN",
            "metadata": {"pad": "x" * pad}}}, separators=(",", ":")).encode()
        sig = hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()
        out.append(http_request("/webhooks/paystack", body, {"x-paystack-signature": sig}))
    return out


def http_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
            f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _connection(port: int, requests: list[bytes], statuses: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for raw in requests:
            writer.write(raw)
            status_line = await reader.readline()
            statuses.append(int(status_line.split()[1]))
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
    finally:
        writer.close()


def load(port: int, requests: list[bytes], connections: int) -> tuple[float, list[int]]:
    """Send every request over `connections` keep-alive connections; (seconds, statuses)."""
    slices = [requests[i::connections] for i in range(connections)]
    statuses: list[int] = []

    async def run() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(_connection(port, s, statuses) for s in slices if s))
        return time.perf_counter() - started

    return asyncio.run(run()), statuses


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=3000, help="per side per round")
    parser.add_argument("-c", "--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pad", type=int, default=600, help="bytes of padding per event "
                        "(a real charge.success is about 1-2 KB)")
    parser.add_argument("--postgres", action="store_true",
                        help="PostgreSQL database (scratch) and Redis queue")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL",
                                                              "redis://127.0.0.1:6379/10"))
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 small round")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 300, 1

    from kolaq_console.config import load_settings
    from kolaq_console.db import make_engine
    from kolaq_console.schema import upgrade

    secret = "bench-" + uuid.uuid4().hex
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kolaq-bench-")))
        db_url = f"sqlite:///{workdir / 'bench.db'}"
        if args.postgres:
            db_url = stack.enter_context(scratch_postgres())
        port = free_port()
        env = {
            **os.environ,
            "KOLAQ_CONFIG": str(ROOT / "config.toml"),
            "KOLAQ_DATABASE__URL": db_url,
            "KOLAQ_QUEUE__BACKEND": "redis" if args.postgres else "sqlite",
            "KOLAQ_QUEUE__SQLITE_PATH": str(workdir / "queue.db"),
            "KOLAQ_QUEUE__REDIS_URL": args.redis_url,
            "KOLAQ_QUEUE__NAME": f"kolaq-bench-{uuid.uuid4().hex[:8]}",
            "KOLAQ_SIGNING_KEY": "bench-signing-key-not-secret",
            "PAYSTACK_SECRET_KEY": secret,
            "PYTHONPATH": str(ROOT),
            "BENCH_PORT": str(port),
        }
        settings = load_settings(environ=env)
        engine = make_engine(settings.database.url)
        upgrade(engine)
        engine.dispose()
        from kolaq_console.taskqueue import make_huey

        huey = make_huey(settings)
        log = (workdir / "server.log").open("ab")
        server = subprocess.Popen([sys.executable, "-c", SERVER], env=env, cwd=ROOT,
                                  stdout=log, stderr=subprocess.STDOUT)
        stack.callback(lambda: (server.terminate(), server.wait(15)))
        deadline = time.monotonic() + 30
        while b"Application startup complete" not in (workdir / "server.log").read_bytes():
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("bench: the server did not start:\n"
                                 + (workdir / "server.log").read_text()[-2000:])
            time.sleep(0.05)
        pids: dict = {"server": server.pid, "load": None}
        if args.postgres:
            pids["postgres"] = postgres_backends(settings.database.url.rsplit("/", 1)[1])
        database = "PostgreSQL + Redis queue" if args.postgres else "SQLite + SQLite queue"
        print(f"bench/webhooks.py: {database}, 1 server process, {args.connections} "
              f"connections, {args.rounds} round(s) of {args.requests} requests per side",
              flush=True)
        size = len(paystack_requests(1, secret, 0, args.pad)[0])
        results: dict[str, list[Round]] = {"bare": [], "webhooks": []}
        # warm-up: connections, caches, the first INSERTs
        load(port, paystack_requests(200, secret, 999, args.pad), args.connections)
        for round_no in range(args.rounds):
            huey.flush()
            sides = {
                "bare": [http_request("/bench/bare", b"x" * (size - 200), {})] * args.requests,
                "webhooks": paystack_requests(args.requests, secret, round_no + 1, args.pad),
            }
            order = ["bare", "webhooks"] if round_no % 2 == 0 else ["webhooks", "bare"]
            for side in order:
                meter = CpuMeter(pids)
                meter.start()
                elapsed, statuses = load(port, sides[side], args.connections)
                cpu = meter.stop()
                bad = [s for s in statuses if s != 200]
                if bad:
                    raise SystemExit(f"bench: {len(bad)} {side} requests answered {bad[:5]}")
                r = Round(args.requests, elapsed, cpu)
                results[side].append(r)
                print(f"  round {round_no + 1} {side:<8}: {r.n} in {elapsed:.2f} s = "
                      f"{r.rate:6.0f}/s", flush=True)
        huey.flush()
    report(results)
    return 0


def report(results: dict[str, list[Round]]) -> None:
    bare, hooks = results["bare"], results["webhooks"]
    ratios = [w.rate / b.rate for b, w in zip(bare, hooks, strict=True)]
    print()
    print(f"{'median of rounds':<18}{'bare/s':>9}{'webhooks/s':>12}{'ratio':>8}"
          f"{'ratio range':>14}")
    print(f"{'requests':<18}{statistics.median(r.rate for r in bare):>9.0f}"
          f"{statistics.median(r.rate for r in hooks):>12.0f}{statistics.median(ratios):>8.2f}"
          f"{f'{min(ratios):.2f}-{max(ratios):.2f}':>14}")
    print("\nCPU ms per request (median of rounds; the machine's cores are shared by all):")
    for side, rounds in (("bare", bare), ("webhooks", hooks)):
        names = sorted({k for r in rounds for k in r.cpu})
        parts = [f"{k} {1000 * statistics.median(r.cpu.get(k, 0) / r.n for r in rounds):.3f}"
                 for k in names]
        print(f"  {side:<9}" + ", ".join(parts))
    print("\n(target: webhooks/s >= 0.5 x bare/s)")


if __name__ == "__main__":
    raise SystemExit(main())
