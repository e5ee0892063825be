"""Which redis-py release is fastest under Huey 3.5? (enqueue and drain throughput)

    python3 bench/redis_py.py            # N=5000 tasks, R=5 rounds
    python3 bench/redis_py.py --quick    # N=1000, R=3
    python3 bench/redis_py.py --versions 5.3.1,8.1.0 --hiredis --json /tmp/out.json

One venv per redis-py release (cached under /tmp/kolaq-bench-venvs/, reused when its
stamp file is present), each with huey==3.5.* and that redis-py only; a "+resp2" suffix on a
version runs it with protocol=2 (redis-py 8 speaks RESP3 by default). One long-lived measuring
process per version is started and warmed before the first round; each round then asks every
process in turn, in a rotated order (round r starts at version r), so drift of the machine
spreads over all versions instead of landing on one.

Inside a venv the measurement, for PriorityRedisHuey and for RedisHuey, configured like
kolaq_console.taskqueue.make_huey (results=False, utc=True, SignedSerializer,
store_intermediate_errors=False; priorities in the three logical bands):

  enqueue         N calls of a no-op task from one thread                     -> tasks/s
  drain-threads   4 threads looping huey.dequeue() + huey.execute()           -> tasks/s
  drain-consumer  huey.create_consumer(workers=4, worker_type='thread',
                  initial_delay=0.001, max_delay=0.1, periodic=False).start(),
                  timed from start() until the N-th task body has run         -> tasks/s

Each phase is preceded by an untimed warm-up (connections open, code paths hot). Redis is
127.0.0.1:6379 db 10, the Huey name is unique per process, and only that name's keys are
deleted afterwards (never FLUSHDB/FLUSHALL). The tables show medians over the rounds (ratio to
the fastest release in each column, spread (max-min)/median), the best of R, the client's user
and system CPU per task, and function calls per task (cProfile over 300 tasks: deterministic,
so it still ranks releases when a shared machine makes wall-clock numbers noisy).

Longer than ~400 lines: a benchmark run as one file that builds its own venvs and measuring
processes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_SERIES = ("5.0", "5.2", "5.3", "6", "7", "8.0", "8")
FALLBACK_VERSIONS = ("5.0.8", "5.2.1", "5.3.1", "6.4.0", "7.4.1", "8.0.1", "8.1.0")
VENV_ROOT = Path("/tmp/kolaq-bench-venvs")
CLASSES = ("PriorityRedisHuey", "RedisHuey")
PHASES = ("enqueue", "drain_threads", "drain_consumer")

INNER = r'''
import cProfile, json, logging, os, pstats, resource, sys, threading, time, uuid

import huey, redis
from huey import PriorityRedisHuey, RedisHuey
from huey.serializer import SignedSerializer

cfg = json.loads(sys.argv[1])
N, URL, THREADS, WARM = cfg["n"], cfg["url"], cfg["threads"], cfg["warmup"]
if cfg.get("cpu") is not None:
    os.sched_setaffinity(0, {cfg["cpu"]})  # threads started later inherit it
logging.getLogger("huey").setLevel(logging.CRITICAL)
BANDS = (300, 200, 100)  # webhooks, emails, inventory (kolaq_console.taskqueue.PRIORITY_BANDS)


def make(cls):
    name = "kolaqbench_%d_%s" % (os.getpid(), uuid.uuid4().hex[:10])
    h = cls(name=name, url=URL, results=False, utc=True,
            serializer=SignedSerializer(secret="bench-secret", salt="kolaq"),
            store_intermediate_errors=False)
    state = {"count": 0, "target": 0, "event": threading.Event()}
    lock = threading.Lock()

    @h.task()
    def noop(i):
        with lock:
            state["count"] += 1
            if state["count"] >= state["target"]:
                state["event"].set()

    return h, noop, state


def clock():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), ru.ru_utime, ru.ru_stime


def since(c0):
    c1 = clock()
    return tuple(b - a for a, b in zip(c0, c1))  # wall, user CPU, system CPU


def enqueue(h, noop, n, priority):
    c0 = clock()
    if priority:
        for i in range(n):
            h.enqueue(noop.s(i, priority=BANDS[i % 3] + i % 100))
    else:
        for i in range(n):
            noop(i)
    return since(c0)


def arm(state, n):
    state["count"], state["target"] = 0, n
    state["event"].clear()


def drain_threads(h, state, n):
    arm(state, n)
    done = threading.Event()
    errors = []

    def work():
        try:
            while not done.is_set():
                task = h.dequeue()  # blocking BRPOP/BZPOPMIN, read_timeout=1
                if task is not None:
                    h.execute(task)
        except Exception as exc:  # pragma: no cover - reported, not hidden
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, daemon=True) for _ in range(THREADS)]
    c0 = clock()
    for t in threads:
        t.start()
    ok = state["event"].wait(300)
    took = since(c0)
    done.set()
    for t in threads:
        t.join(5)
    if errors or not ok:
        raise RuntimeError("drain_threads failed: ok=%s errors=%s" % (ok, errors[:3]))
    return took


def drain_consumer(h, state, n):
    arm(state, n)
    consumer = h.create_consumer(workers=THREADS, worker_type="thread",
                                 initial_delay=0.001, max_delay=0.1, periodic=False)
    c0 = clock()
    consumer.start()
    ok = state["event"].wait(300)
    took = since(c0)
    consumer.stop(graceful=True)
    if not ok:
        raise RuntimeError("drain_consumer timed out")
    return took


def count_calls(fn):
    """Python + C function calls made by fn(): deterministic, immune to machine noise."""
    prof = cProfile.Profile()
    prof.runcall(fn)
    return sum(v[1] for v in pstats.Stats(prof).stats.values())


def calls_per_task(h, noop, state, prio, n=300):
    enq = count_calls(lambda: enqueue(h, noop, n, prio))
    arm(state, n)

    def drain_inline():
        while state["count"] < n:
            task = h.dequeue()
            if task is not None:
                h.execute(task)

    drn = count_calls(drain_inline)
    return enq / n, drn / n


def cleanup(h):
    h.storage.flush_all()
    conn = h.storage.conn
    for key in conn.scan_iter(match="*%s*" % h.storage.name, count=1000):
        conn.delete(key)


class Bench:
    """One Huey class in this process: set up and warmed once, measured on every request."""

    def __init__(self, cls):
        self.h, self.noop, self.state = make(cls)
        self.prio = cls is PriorityRedisHuey
        # warm-up, untimed: opens the pool's connections, loads the Lua script, hot paths
        enqueue(self.h, self.noop, WARM, self.prio)
        drain_threads(self.h, self.state, WARM)
        self.calls = calls_per_task(self.h, self.noop, self.state, self.prio)

    def measure(self):
        h, noop, state, prio = self.h, self.noop, self.state, self.prio
        out = {"enqueue_calls": self.calls[0], "drain_calls": self.calls[1]}

        def record(phase, took):
            wall, user, system = took
            out[phase] = N / wall  # tasks/s, wall clock
            out[phase + "_user_us"] = user / N * 1e6  # client user CPU (all threads) per task
            out[phase + "_sys_us"] = system / N * 1e6  # client system CPU per task

        record("enqueue", enqueue(h, noop, N, prio))
        assert h.storage.queue_size() == N, h.storage.queue_size()
        record("drain_threads", drain_threads(h, state, N))
        assert state["count"] == N and h.storage.queue_size() == 0

        enqueue(h, noop, N, prio)  # same work, untimed; the consumer drains it
        record("drain_consumer", drain_consumer(h, state, N))
        assert state["count"] == N and h.storage.queue_size() == 0
        return out


try:
    import hiredis  # noqa: F401
    hiredis_version = getattr(hiredis, "__version__", "yes")
except ImportError:
    hiredis_version = None

_probe = redis.Redis.from_url(URL)
server = _probe.info("server")
_conn = _probe.connection_pool.make_connection()
protocol = int(getattr(_conn, "protocol", None) or 2)  # the RESP version on the wire
_conn.disconnect()
classes = {"PriorityRedisHuey": PriorityRedisHuey, "RedisHuey": RedisHuey}
benches = {}
try:
    for name in cfg["classes"]:
        benches[name] = Bench(classes[name])
    meta = {
        "redis_py": redis.__version__, "huey": huey.__version__, "hiredis": hiredis_version,
        "python": sys.version.split()[0], "server": server.get("redis_version"),
        "protocol": protocol,
    }
    print(json.dumps(meta), flush=True)
    # One request per line from the parent: measure every class, answer one JSON line.
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("quit"):
            break
        order = cfg["classes"] if not req.get("reverse") else list(reversed(cfg["classes"]))
        results = {name: benches[name].measure() for name in order}
        print(json.dumps(dict(meta, results=results)), flush=True)
finally:
    for b in benches.values():
        cleanup(b.h)
'''


def latest_per_series(series: tuple[str, ...]) -> list[str]:
    """Resolve "5.3" -> newest 5.3.x, "8" -> newest 8.x, from `pip index versions redis`."""
    try:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "index",
                "versions",
                "redis",
                "--disable-pip-version-check",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        line = next(ln for ln in out.splitlines() if ln.startswith("Available versions:"))
        available = [v.strip() for v in line.split(":", 1)[1].split(",")]
    except Exception as exc:
        print(f"! pip index versions failed ({exc}); using {FALLBACK_VERSIONS}", file=sys.stderr)
        return list(FALLBACK_VERSIONS)
    final = [v for v in available if re.fullmatch(r"\d+(\.\d+)*", v)]
    key = lambda v: tuple(int(p) for p in v.split("."))  # noqa: E731
    picked = []
    for s in series:
        match = [v for v in final if v == s or v.startswith(s + ".")]
        if match:
            picked.append(max(match, key=key))
        else:
            print(f"! no redis release in series {s}", file=sys.stderr)
    return list(dict.fromkeys(picked))


def ensure_venv(redis_version: str, huey_spec: str, hiredis: bool) -> Path:
    py = f"py{sys.version_info.major}.{sys.version_info.minor}"
    tag = re.sub(r"[^A-Za-z0-9.]", "", huey_spec.replace("*", "x"))
    venv = VENV_ROOT / f"{py}-huey{tag}-redis{redis_version}{'-hiredis' if hiredis else ''}"
    stamp = venv / ".kolaq-bench-ok"
    if stamp.exists():
        return venv
    print(f"# creating {venv}", file=sys.stderr, flush=True)
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pkgs = [f"huey{huey_spec}", f"redis=={redis_version}"] + (["hiredis"] if hiredis else [])
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *pkgs,
        ],
        check=True,
    )
    stamp.write_text(" ".join(pkgs) + "\n")
    return venv


class Runner:
    """A measuring process in one venv, kept alive across rounds (set up and warmed once)."""

    def __init__(self, label: str, venv: Path, cfg: dict):
        self.label = label
        self.err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [str(venv / "bin" / "python"), "-c", INNER, json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
            bufsize=1,
        )
        self.meta = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.err.seek(0)
            raise RuntimeError(f"{self.label} failed:\n{self.err.read()[-3000:]}")
        return json.loads(line)

    def measure(self, reverse: bool) -> dict:
        self.proc.stdin.write(json.dumps({"reverse": reverse}) + "\n")
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"quit": true}\n')
                self.proc.stdin.close()
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.err.close()


def median_of(runs: list[dict], cls: str, key: str) -> float:
    return statistics.median(r["results"][cls][key] for r in runs)


def spread_of(runs: list[dict], cls: str, key: str) -> float:
    vals = [r["results"][cls][key] for r in runs]
    return (max(vals) - min(vals)) / statistics.median(vals)


def print_tables(labels: list[str], runs: dict[str, list[dict]], classes: list[str]) -> None:
    for cls in classes:
        best = {p: max(median_of(runs[v], cls, p) for v in labels) for p in PHASES}
        print(f"\n{cls}: wall-clock tasks/s, median (ratio to fastest) ±spread=(max-min)/median")
        head = f"{'redis-py':<13}" + "".join(f"{p:>26}" for p in PHASES)
        print(head)
        print("-" * len(head))
        for v in labels:
            cells = ""
            for p in PHASES:
                m = median_of(runs[v], cls, p)
                cell = f"{m:,.0f} ({m / best[p]:.2f}) ±{spread_of(runs[v], cls, p) * 100:.0f}%"
                cells += cell.rjust(26)
            print(f"{v:<13}{cells}")

        print(f"\n{cls}: wall-clock tasks/s, best of {len(runs[labels[0]])} (ratio to fastest)")
        print(head)
        print("-" * len(head))
        top = {p: max(r["results"][cls][p] for v in labels for r in runs[v]) for p in PHASES}
        for v in labels:
            cells = ""
            for p in PHASES:
                m = max(r["results"][cls][p] for r in runs[v])
                cells += f"{m:,.0f} ({m / top[p]:.2f})".rjust(26)
            print(f"{v:<13}{cells}")

        print(
            f"\n{cls}: client cost per task, median: user CPU µs (enqueue / drain-threads / "
            "drain-consumer), system CPU µs (same), function calls (enqueue / drain)"
        )
        head = f"{'redis-py':<13}{'user µs/task':>24}{'sys µs/task':>24}{'calls/task':>16}"
        print(head)
        print("-" * len(head))
        for v in labels:
            user = " / ".join(f"{median_of(runs[v], cls, p + '_user_us'):.0f}" for p in PHASES)
            syst = " / ".join(f"{median_of(runs[v], cls, p + '_sys_us'):.0f}" for p in PHASES)
            calls = " / ".join(
                f"{median_of(runs[v], cls, k):.0f}" for k in ("enqueue_calls", "drain_calls")
            )
            print(f"{v:<13}{user:>24}{syst:>24}{calls:>16}")


def with_query(url: str, query: str) -> str:
    return url + ("&" if "?" in url else "?") + query


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, help="tasks per measurement (5000; --quick 1000)")
    ap.add_argument("-r", "--rounds", type=int, help="rounds (5; --quick 3)")
    ap.add_argument("--quick", action="store_true", help="N=1000, R=3")
    ap.add_argument(
        "--versions",
        help="comma list of exact redis-py versions; a '+resp2' suffix "
        "runs that release with protocol=2 (default: newest of each series "
        + ",".join(DEFAULT_SERIES)
        + ", plus the newest with +resp2)",
    )
    ap.add_argument("--huey", default="==3.5.*", help="huey requirement (==3.5.*)")
    ap.add_argument("--hiredis", action="store_true", help="install hiredis in each venv too")
    ap.add_argument("--classes", default=",".join(CLASSES), help="PriorityRedisHuey,RedisHuey")
    ap.add_argument("--threads", type=int, default=4, help="drain threads / consumer workers")
    ap.add_argument("--cpu", type=int, help="pin the measuring process to this CPU")
    ap.add_argument("--url", default="redis://127.0.0.1:6379/10")
    ap.add_argument("--json", help="write every raw run here")
    args = ap.parse_args()
    args.n = args.n or (1000 if args.quick else 5000)
    args.rounds = args.rounds or (3 if args.quick else 5)

    if args.versions:
        labels = [v.strip() for v in args.versions.split(",") if v.strip()]
    else:
        labels = latest_per_series(DEFAULT_SERIES)
        if labels and int(labels[-1].split(".")[0]) >= 8:  # 8.0 made RESP3 the default
            labels.append(labels[-1] + "+resp2")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    venvs = {v: ensure_venv(v.split("+")[0], args.huey, args.hiredis) for v in labels}
    cfg = {
        "n": args.n,
        "threads": args.threads,
        "warmup": min(200, args.n),
        "classes": classes,
        "cpu": args.cpu,
    }

    def url_for(label: str) -> str:
        return with_query(args.url, "protocol=2") if label.endswith("+resp2") else args.url

    print(
        f"# N={args.n} R={args.rounds} threads={args.threads} url={args.url} cpu={args.cpu} "
        f"versions={','.join(labels)} hiredis={args.hiredis}",
        flush=True,
    )
    runs: dict[str, list[dict]] = {v: [] for v in labels}
    t_start = time.time()
    runners: dict[str, Runner] = {}
    try:
        # One process per version, all started (and warmed) before the first timed round; idle
        # ones only wait on stdin, so each round measures one version at a time.
        for v in labels:
            runners[v] = Runner(v, venvs[v], {**cfg, "url": url_for(v)})
        for r in range(args.rounds):
            order = labels[r % len(labels) :] + labels[: r % len(labels)]
            for v in order:
                load = os.getloadavg()[0]
                res = runners[v].measure(reverse=bool(r % 2))
                res["round"], res["load1"] = r, load
                runs[v].append(res)
                brief = " ".join(
                    f"{c[:4]}:" + "/".join(f"{res['results'][c][p]:.0f}" for p in PHASES)
                    for c in classes
                )
                print(
                    f"  round {r + 1}/{args.rounds} {v:<12} load {load:4.2f}  "
                    f"tasks/s enq/drain-thr/drain-cons {brief}",
                    flush=True,
                )
    finally:
        for runner in runners.values():
            runner.close()

    first = runs[labels[0]][0]
    print(
        f"\nredis server {first['server']} | huey {first['huey']} | python {first['python']}"
        f" | hiredis {first['hiredis']} | N={args.n} R={args.rounds}"
        f" | {time.time() - t_start:.0f}s"
    )
    print_tables(labels, runs, classes)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
