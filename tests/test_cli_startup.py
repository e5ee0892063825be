"""CLI start-up stays light: which modules `--help` and `status --json` import (modules, not
time: timing belongs in bench/startup.py). The rule is in kolaq_console/cli/__init__.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import ROOT

# What a fresh `kolaq-console ARGS` has imported when it ends (printed to stderr last).
PROBE = """
import json, sys
from kolaq_console.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""

# Third-party packages no --help needs; each costs tens of milliseconds or more to import.
# (Not pydantic: typer itself imports it to read parameter types in a subcommand's help.)
HEAVY = {
    "rich", "sqlalchemy", "sqlmodel", "pydantic_settings", "huey", "redis",
    "psycopg", "alembic", "jinja2", "resend", "textual", "markdown_it", "css_inline",
    "email_validator", "itsdangerous", "standardwebhooks", "tasks",
}
# What `status` has no use for: the renderer, the provider SDK, migrations, the UI, the tasks.
NOT_FOR_STATUS = {"jinja2", "resend", "alembic", "textual", "css_inline", "markdown_it", "tasks",
                  "kolaq_console.emails", "kolaq_console.ui"}


def imported(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", PROBE, *args], env=full, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    line = result.stderr.rsplit("MODULES ", 1)[-1]
    return result, set(json.loads(line))


def tops(modules: set[str]) -> set[str]:
    return {m.split(".", 1)[0] for m in modules}


def test_help_imports_only_typer_and_the_cli_package(kolaq_env):
    for args in (["--help"], ["email", "--help"], ["jobs", "failed", "--help"]):
        result, modules = imported(kolaq_env, *args)
        assert "Usage" in result.stdout, (args, result.stderr)
        assert not tops(modules) & HEAVY, (args, sorted(tops(modules) & HEAVY))
        ours = {m for m in modules if m.startswith("kolaq_console.")}
        stray = {m for m in ours if not m.startswith("kolaq_console.cli")} - {
            "kolaq_console.errors"}
        assert not stray, (args, sorted(stray))


def test_status_json_imports_neither_the_renderer_nor_the_ui_nor_the_tasks(kolaq_env, cli_run):
    assert cli_run("db", "upgrade")[0] == 0  # the database and the queue file
    result, modules = imported(kolaq_env, "status", "--json")
    assert json.loads(result.stdout.strip() or "{}").get("storage") == {
        "database": "ok", "queue": "ok"}, result.stderr
    loaded = tops(modules) | {m for m in modules if m.count(".") == 1}
    assert not loaded & NOT_FOR_STATUS, sorted(loaded & NOT_FOR_STATUS)


# What the fast path of `status --json` (a healthy SQLite system) does without: its figures
# come from sqlite3 (kolaq_console/statusfast.py); the ORM and the queue library cost more
# start-up than the command's work.
NOT_FOR_FAST_STATUS = NOT_FOR_STATUS | {"sqlalchemy", "sqlmodel", "huey", "psycopg", "redis",
                                        "kolaq_console.runtime", "kolaq_console.models"}


def test_status_json_on_a_healthy_system_imports_neither_the_orm_nor_huey(
        database_url, queue_backend, kolaq_env, cli_run):
    assert cli_run("db", "upgrade")[0] == 0
    result, modules = imported(kolaq_env, "status", "--json")
    assert json.loads(result.stdout)["storage"] == {"database": "ok", "queue": "ok"}
    loaded = tops(modules) | {m for m in modules if m.count(".") == 1}
    needed = {"psycopg"} if database_url.startswith("postgresql") else set()
    needed |= {"redis"} if queue_backend == "redis" else set()
    forbidden = NOT_FOR_FAST_STATUS - needed
    assert not loaded & forbidden, sorted(loaded & forbidden)


def test_a_worker_on_the_dev_transport_does_not_import_the_resend_sdk(kolaq_env):
    """~0.2 s of every worker's start-up: only a process that sends through Resend needs it."""
    probe = "import sys, tasks; print(sorted({'resend', 'requests'} & set(sys.modules)))"
    full = {**os.environ, **kolaq_env, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", probe], env=full, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr
