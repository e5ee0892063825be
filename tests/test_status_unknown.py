"""`status` never invents figures, and read-only commands never create storage: an unreachable
or missing database is unknown (null, the reason under `storage`), an unmigrated one names
`kolaq-console db upgrade`, and nothing is created on the way."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from helpers import CLI, run_all, run_cli
from sqlalchemy import inspect

from kolaq_console import runtime
from kolaq_console.cli import main
from kolaq_console.db import make_engine

HINT = "run `kolaq-console db upgrade`"
CLOSED_PORT_PG = "postgresql://nobody@127.0.0.1:1/none"
FIGURES = ("failed_jobs", "low_stock", "outbox")


def tree(folder: Path) -> list[str]:
    """Files and folders under `folder`, less SQLite's -wal/-shm companions of an existing
    database, which any reader of it opens."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if not p.name.endswith(("-wal", "-shm")))


def test_unreachable_postgres_shows_unknown_not_zero(kolaq_env, cli_result):
    assert cli_result("db", "upgrade").returncode == 0  # set-up: a queue that can be read
    env = {**kolaq_env, "KOLAQ_DATABASE__URL": CLOSED_PORT_PG}

    result, text = run_all((env, (*CLI, "status", "--json")), (env, (*CLI, "status")))

    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert {k: doc[k] for k in FIGURES} == dict.fromkeys(FIGURES)
    assert "127.0.0.1:1" in doc["storage"]["database"] and doc["storage"]["queue"] == "ok"
    for depth in doc["queues"].values():  # the queue was read; what is in flight was not
        assert depth["pending"] == 0 and depth["scheduled"] == 0 and depth["in_flight"] is None
    assert text.returncode == 1
    assert "failed jobs: unknown   outbox: unknown" in text.stdout
    assert "low stock: unknown" in text.stdout and "failed jobs: 0" not in text.stdout
    (line,) = text.stderr.strip().splitlines()
    assert "127.0.0.1:1" in line


@pytest.mark.parametrize("where", ["missing folder", "folder is a file"])
def test_a_sqlite_path_that_cannot_be_opened_creates_nothing(kolaq_env, tmp_path, where):
    base = tmp_path / "shop"
    base.mkdir()
    if where == "missing folder":
        folder = base / "nowhere"
    else:
        folder = base / "notes.txt"
        folder.write_text("a file, not a folder")
    before = tree(base)
    env = {**kolaq_env, "KOLAQ_DATABASE__URL": f"sqlite:///{folder / 'kolaq.db'}",
           "KOLAQ_QUEUE__SQLITE_PATH": str(folder / "queue.db"),
           "KOLAQ_EMAIL__OUTBOX_DIR": str(folder / "outbox")}

    result = run_cli(env, "status", "--json")

    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert {k: doc[k] for k in FIGURES} == dict.fromkeys(FIGURES)
    assert all(v is None for depth in doc["queues"].values() for v in depth.values())
    assert doc["storage"]["database"].endswith(HINT)
    assert doc["storage"]["queue"].endswith(HINT)
    assert tree(base) == before  # no folder, no file


def _empty_database(database_url: str) -> None:
    engine = make_engine(database_url)
    if engine.dialect.name == "sqlite":
        sqlite3.connect(engine.url.database).close()
    engine.dispose()


def _tables(database_url: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_an_unmigrated_database_names_the_fix_and_gets_no_table(database_url, kolaq_env):
    _empty_database(database_url)

    result = run_cli(kolaq_env, "status", "--json")

    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert {k: doc[k] for k in FIGURES} == dict.fromkeys(FIGURES)
    assert "has no schema yet" in doc["storage"]["database"]
    assert doc["storage"]["database"].endswith(HINT)
    assert _tables(database_url) == []
    assert not Path(kolaq_env["KOLAQ_QUEUE__SQLITE_PATH"]).exists()


READ_ONLY = [
    ("status",),
    ("email", "list"),
    ("email", "show", "1"),
    ("jobs", "failed"),
    ("jobs", "show", "1"),
    ("jobs", "workers"),
    ("inventory", "low-stock"),
    ("inventory", "history", "KB-1"),
]


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_read_only_commands_refuse_in_one_line_and_create_nothing(
        database_url, make_settings, capsys, state, tmp_path):
    if state == "empty":
        _empty_database(database_url)
    elif not database_url.startswith("sqlite"):
        pytest.skip("a missing PostgreSQL database is the unreachable case above")
    runtime.configure(make_settings())
    before = tree(tmp_path)
    try:
        for args in READ_ONLY:
            capsys.readouterr()
            with pytest.raises(SystemExit) as exit_:
                main(list(args))
            err = capsys.readouterr().err
            assert exit_.value.code == 1, args
            (line,) = err.strip().splitlines()
            assert line.endswith(HINT), (args, line)
        # `db current` reports an empty database as such, and a missing one in one line
        code = 0
        try:
            main(["db", "current"])
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        assert (code, "database: empty" in out) == (0, True) if state == "empty" else \
            (code == 1 and err.strip().endswith(HINT))
    finally:
        runtime.configure(None)
    assert tree(tmp_path) == before
    if state == "empty":
        assert _tables(database_url) == []
