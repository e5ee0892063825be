"""CLI start-up: `kolaq-console --help` and `status --json` against `python -c pass`.

    PYTHONPATH=$PWD python bench/startup.py [--runs N]

Each command runs as a fresh process, N times in rotation (so load drifts hit every command
alike); printed per command: median wall time, median CPU (user + system) of the process, and
the wall time over the `python -c pass` baseline of the same run. "import floor of status"
is a process that only imports the libraries `status` needs (typer, pydantic-settings,
sqlmodel, huey): the floor of the full path, which `status --json` takes only when there is
something to report (a healthy system is read by kolaq_console/statusfast.py without them).
Targets (issue 9): --help <= 0.2 s, status --json <= 0.5 s. `status --json` runs on a
scratch SQLite database and queue (the embedded default); when Redis answers, also on a Redis
queue (db 10, a unique queue name, nothing left behind), and with PostgreSQL on a scratch
database (created and dropped here) with that Redis queue. Never the test suite's Redis db 9
or its PostgreSQL databases.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("KOLAQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
FLOOR = "import typer, pydantic_settings, sqlmodel, huey.api"
PG_ADMIN_URL = os.environ.get("KOLAQ_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
TARGETS = {"--help": 0.2, "status --json": 0.5, "status --json (redis queue)": 0.5,
           "status --json (PostgreSQL + redis)": 0.5}


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def redis_up() -> bool:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        return True
    except Exception:
        return False


def pg_scratch() -> str | None:
    """A scratch PostgreSQL database (dropped at the end), or None when PostgreSQL is down."""
    try:
        import psycopg

        name = f"kolaq_bench_startup_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    except Exception:
        return None


def pg_drop(url: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command (median)")
    parser.add_argument("--quick", action="store_true", help="5 runs")
    args = parser.parse_args()
    runs = 5 if args.quick else args.runs
    cli = [sys.executable, "-m", "kolaq_console"]
    with tempfile.TemporaryDirectory(prefix="kolaq-bench-startup-") as tmp:
        queue_name = f"kolaq-bench-startup-{uuid.uuid4().hex[:8]}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KOLAQ_")},
            "PYTHONPATH": str(ROOT),
            "KOLAQ_CONFIG": str(ROOT / "config.toml"),
            "KOLAQ_DATABASE__URL": f"sqlite:///{tmp}/bench.db",
            "KOLAQ_QUEUE__SQLITE_PATH": f"{tmp}/queue.db",
            "KOLAQ_QUEUE__NAME": queue_name,
            "KOLAQ_EMAIL__OUTBOX_DIR": f"{tmp}/outbox",
            "KOLAQ_SIGNING_KEY": uuid.uuid4().hex,
        }
        run_once([*cli, "db", "upgrade"], env)
        commands: dict[str, tuple[list[str], dict[str, str]]] = {
            "python -c pass": ([sys.executable, "-c", "pass"], env),
            # the libraries status cannot do without, imported and nothing else: its floor
            "import floor of status": ([sys.executable, "-c", FLOOR], env),
            "--help": ([*cli, "--help"], env),
            "status --json": ([*cli, "status", "--json"], env),
        }
        if redis_up():
            commands["status --json (redis queue)"] = (
                [*cli, "status", "--json"],
                {**env, "KOLAQ_QUEUE__BACKEND": "redis", "KOLAQ_QUEUE__REDIS_URL": REDIS_URL})
        pg_url = pg_scratch() if redis_up() else None
        if pg_url is not None:
            pg_env = {**env, "KOLAQ_DATABASE__URL": pg_url, "KOLAQ_QUEUE__BACKEND": "redis",
                      "KOLAQ_QUEUE__REDIS_URL": REDIS_URL}
            run_once([*cli, "db", "upgrade"], pg_env)
            commands["status --json (PostgreSQL + redis)"] = ([*cli, "status", "--json"], pg_env)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for argv, e in commands.values():
            run_once(argv, e)  # warm the page cache
        for _ in range(runs):
            for name, (argv, e) in commands.items():
                samples[name].append(run_once(argv, e))
        if pg_url is not None:
            pg_drop(pg_url)
        if "status --json (redis queue)" in commands:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(match=f"*{queue_name}*"))
            if keys:
                client.delete(*keys)

    base = statistics.median(w for w, _ in samples["python -c pass"])
    print(f"CLI start-up, median of {runs} runs (wall / CPU per run)")
    print(f"  {'command':<36} {'wall':>8} {'CPU':>8} {'over python':>12}  target")
    for name, rows in samples.items():
        wall = statistics.median(w for w, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        target = TARGETS.get(name)
        verdict = "" if target is None else (
            f"<= {target:.1f} s  CPU {'met' if cpu <= target else 'MISSED'}, "
            f"wall {'met' if wall <= target else 'MISSED'}")
        print(f"  {name:<36} {wall:7.3f}s {cpu:7.3f}s {wall - base:+11.3f}s  {verdict}")
    print(f"  (wall range of --help: {min(w for w, _ in samples['--help']):.3f}-"
          f"{max(w for w, _ in samples['--help']):.3f} s)")


if __name__ == "__main__":
    main()
