"""Shared fixtures: isolated settings, a fresh migrated database per test (SQLite and the local
PostgreSQL), both queue backends (SqliteHuey file, real Redis), and real worker processes.

Nothing here skips: PostgreSQL and Redis must be up (`.ci/run` starts them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("KOLAQ_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get("KOLAQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")

# Names a developer's shell may carry that would leak into tests.
_FOREIGN_ENV = (
    "KOLAQ_", "RESEND_", "ADMIN_EMAIL", "SUPPORT_EMAIL", "REDIS_URL", "REDIS_HOST", "REDIS_PORT",
    "PAYSTACK_", "STRIPE_", "TWILIO_",
)
for _name in list(os.environ):
    if _name.startswith(_FOREIGN_ENV) and not _name.startswith("KOLAQ_TEST_"):
        del os.environ[_name]

# `import tasks` builds its Huey from the environment at import: point it at a scratch
# folder so no test ever touches the repo's var/ (in-process tests use immediate mode or
# their own instance; real consumers run in subprocesses with the test's own env).
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="kolaq-tests-"))
os.environ["KOLAQ_CONFIG"] = str(ROOT / "tests" / "fixtures" / "config.toml")
os.environ["KOLAQ_DATABASE__URL"] = f"sqlite:///{_SESSION_DIR / 'session.db'}"
os.environ["KOLAQ_QUEUE__SQLITE_PATH"] = str(_SESSION_DIR / "session-queue.db")
os.environ["KOLAQ_EMAIL__OUTBOX_DIR"] = str(_SESSION_DIR / "outbox")
os.environ["KOLAQ_SIGNING_KEY"] = "test-signing-key-not-secret"

from helpers import Proc  # noqa: E402
from pg_pool import BackgroundDropper, MigratedPool, create_pg_database  # noqa: E402

from kolaq_console import runtime  # noqa: E402
from kolaq_console.config import Settings, load_settings  # noqa: E402
from kolaq_console.db import make_engine  # noqa: E402
from kolaq_console.runtime import dispose_engines  # noqa: E402
from kolaq_console.schema import upgrade  # noqa: E402

# --- databases -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_admin():
    """A connection to the server's `test` database, for creating per-test databases."""
    import psycopg

    try:
        conn = psycopg.connect(PG_ADMIN_URL.replace("postgresql://", "postgresql://", 1),
                               autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required at {PG_ADMIN_URL} (run .ci/run): {exc}")
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def pg_dropper() -> Iterator[BackgroundDropper]:
    dropper = BackgroundDropper(PG_ADMIN_URL)
    yield dropper
    dropper.finish()


def _fresh_pg_database(request) -> Iterator[str]:
    pg_admin = request.getfixturevalue("pg_admin")
    dropper = request.getfixturevalue("pg_dropper")
    name = f"kolaq_t_{uuid.uuid4().hex[:12]}"
    create_pg_database(pg_admin, name)
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        dispose_engines()
        dropper.drop(name)  # WITH (FORCE), while the next tests run


@pytest.fixture(scope="session")
def pg_migrated_pool(pg_admin) -> Iterator[MigratedPool]:
    pool = MigratedPool(pg_admin, PG_ADMIN_URL)
    yield pool
    dispose_engines()
    pool.drop_all()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty database: parametrised over SQLite and PostgreSQL. (A test that uses
    `engine` gets a migrated PostgreSQL database from the pool instead: the same thing
    `engine` would make of an empty one.)"""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'kolaq.db'}"
    elif "engine" in request.fixturenames:
        pool = request.getfixturevalue("pg_migrated_pool")
        name = pool.take()
        try:
            yield pool.url(name)
        finally:
            dispose_engines()
            pool.give_back(name)
    else:
        yield from _fresh_pg_database(request)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'kolaq.db'}"


@pytest.fixture
def postgres_url(request) -> Iterator[str]:
    yield from _fresh_pg_database(request)


# --- queue backends --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_client():
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is required at {REDIS_TEST_URL} (run .ci/run): {exc}")
    return client


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def queue_backend(request) -> str:
    """Parametrise a test over both queue backends (request `kolaq_env` after it)."""
    if request.param == "redis":
        request.getfixturevalue("redis_client")
    return request.param


# --- settings --------------------------------------------------------------------------------


@pytest.fixture
def queue_name() -> str:
    return f"kolaq-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kolaq_env(request, tmp_path, queue_name) -> dict[str, str]:
    """The environment of one test: its own database, queue and outbox, tiny delays.

    Uses `database_url` (both databases) when the test asks for it, else SQLite; uses
    `queue_backend` when the test asks for it, else the SQLite queue.
    """
    names = request.fixturenames
    db_url = (
        request.getfixturevalue("database_url")
        if "database_url" in names
        else request.getfixturevalue("postgres_url")
        if "postgres_url" in names
        else f"sqlite:///{tmp_path / 'kolaq.db'}"
    )
    backend = request.getfixturevalue("queue_backend") if "queue_backend" in names else "sqlite"
    env = {
        "KOLAQ_CONFIG": str(ROOT / "tests" / "fixtures" / "config.toml"),
        "KOLAQ_DATABASE__URL": db_url,
        "KOLAQ_QUEUE__BACKEND": backend,
        "KOLAQ_QUEUE__NAME": queue_name,
        "KOLAQ_QUEUE__SQLITE_PATH": str(tmp_path / "queue.db"),
        "KOLAQ_QUEUE__REDIS_URL": REDIS_TEST_URL,
        "KOLAQ_EMAIL__OUTBOX_DIR": str(tmp_path / "outbox"),
        "KOLAQ_SIGNING_KEY": "test-signing-key-not-secret",
    }
    yield env
    if backend == "redis":
        client = request.getfixturevalue("redis_client")
        keys = list(client.scan_iter(match=f"*{queue_name}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def make_settings(kolaq_env) -> Callable[..., Settings]:
    """Settings from the test env plus overrides given as KOLAQ_* names or section__key."""

    def build(**overrides: str) -> Settings:
        env = dict(kolaq_env)
        for key, value in overrides.items():
            name = key if key.isupper() else f"KOLAQ_{key.upper()}"
            env[name] = str(value)
        return load_settings(environ=env)

    return build


@pytest.fixture
def settings(make_settings) -> Iterator[Settings]:
    """This test's settings, also installed as the process settings (runtime)."""
    s = make_settings()
    runtime.configure(s)
    yield s
    runtime.configure(None)
    dispose_engines()


@pytest.fixture
def tasks_module(settings):
    """`tasks` rebuilt on this test's queue (its Huey from the test's settings), so what the
    test enqueues goes where its workers and counts read; rebuilt again afterwards."""
    from email_support import reload_tasks

    module = reload_tasks()
    yield module
    runtime.configure(None)
    reload_tasks()


_SQLITE_TEMPLATE = _SESSION_DIR / f"migrated-{os.getpid()}.db"


def _migrated(url: str):
    """A migrated engine on `url`. A fresh SQLite file is a copy of this process's template,
    migrated once (alembic costs ~0.1 s CPU a database; a copy ~3 ms): the same bytes
    `upgrade` would write. tests/test_schema.py still migrates step by step."""
    eng = make_engine(url)
    path = eng.url.database if eng.url.get_backend_name() == "sqlite" else None
    if not path or Path(path).exists():
        upgrade(eng)
        return eng
    if not _SQLITE_TEMPLATE.exists():
        template = make_engine(f"sqlite:///{_SQLITE_TEMPLATE}.tmp")
        upgrade(template)
        template.dispose()  # the last close checkpoints the WAL into the file
        os.replace(f"{_SQLITE_TEMPLATE}.tmp", _SQLITE_TEMPLATE)
    shutil.copyfile(_SQLITE_TEMPLATE, path)
    return eng


@pytest.fixture
def engine(database_url, settings):
    """A migrated engine on a fresh database, parametrised over SQLite and PostgreSQL."""
    url = settings.database.url
    eng = make_engine(url) if url.startswith("postgresql") else _migrated(url)  # pool: migrated
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(settings):
    """A migrated engine on a fresh SQLite file, for tests that need not run on both."""
    assert settings.database.url.startswith("sqlite"), "do not combine with database_url"
    eng = _migrated(settings.database.url)
    yield eng
    eng.dispose()


@pytest.fixture
def huey(settings):
    """A Huey instance for this test's queue settings (not the tasks module's)."""
    from kolaq_console.taskqueue import make_huey

    h = make_huey(settings)
    yield h
    h.flush()


# --- real processes --------------------------------------------------------------------------


@pytest.fixture
def spawn(tmp_path, kolaq_env) -> Iterator[Callable[..., Proc]]:
    """Start a real process with this test's env: spawn("worker", "-w", "4") runs
    `python -m kolaq_console worker -w 4`; spawn(cmd=[...]) runs anything. Stopped at teardown."""
    procs: list[Proc] = []

    def start(*cli_args: str, cmd: list[str] | None = None, env: dict[str, str] | None = None,
              name: str | None = None) -> Proc:
        full_env = {**os.environ, **kolaq_env, **(env or {}), "PYTHONUNBUFFERED": "1"}
        full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), full_env.get("PYTHONPATH", "")])
        args = cmd or [sys.executable, "-m", "kolaq_console", *cli_args]
        log = tmp_path / f"{name or 'proc'}-{len(procs)}.log"
        proc = Proc(args, full_env, log)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop(timeout=10)


# --- the CLI in this process -----------------------------------------------------------------


@pytest.fixture
def cli_run(kolaq_env, monkeypatch, capsys) -> Iterator[Callable[..., tuple[int, str, str]]]:
    """Run `kolaq-console ARGS` in this process with this test's env (plus `env=` additions):
    returns (exit code, stdout, stderr). For tests where the process boundary is not what is
    tested; start-up itself is covered by test_cli_startup.py in real processes."""
    from kolaq_console.cli import main

    def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        for name, value in {**kolaq_env, **(env or {})}.items():
            monkeypatch.setenv(name, value)
        runtime.reset()  # settings and engines from this env
        capsys.readouterr()
        code = 0
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    runtime.reset()


@pytest.fixture
def cli_result(cli_run) -> Callable[..., subprocess.CompletedProcess]:
    """`cli_run` answering like `helpers.run_cli` (returncode, stdout, stderr), for tests moved
    in-process from real processes: `cli_result(*argv, env={...})`."""

    def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        code, out, err = cli_run(*argv, env=env)
        return subprocess.CompletedProcess(list(argv), code, out, err)

    return run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start real worker processes (`spawn`) are marked `consumer`:
    `pytest -m "not consumer"` is the quick loop. They run first: they are the longest and
    mostly wait on their processes, so under xdist the other workers' quick tests fill that
    time instead of a few of them finishing last."""
    for item in items:
        if "spawn" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.consumer)
    items.sort(key=lambda item: item.get_closest_marker("consumer") is None)  # stable
