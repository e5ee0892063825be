"""`kolaq-console broadcast ...` in-process: count, confirm, submit once, list/show JSON,
pause/resume/cancel, one-line errors; the retired one-address broadcast kind."""

from __future__ import annotations

import json
import re

import pytest
from broadcast_support import seed_customers, subscribers
from email_support import count, reload_tasks
from sqlmodel import Session, select

from kolaq_console import runtime
from kolaq_console.cli import main
from kolaq_console.models import ActivityLog, Broadcast


@pytest.fixture
def cli(sqlite_engine, settings, capsys):
    reload_tasks()  # enqueue on this test's queue

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    runtime.configure(None)
    reload_tasks()


@pytest.fixture
def body(tmp_path):
    path = tmp_path / "news.md"
    path.write_text("# New bottles\n\nThe **Hibiscus** is back.", encoding="utf-8")
    return str(path)


def send(cli, body, *extra):
    return cli("broadcast", "send", "--subject", "Hibiscus is back", "--body-file", body,
               "--audience", "subscribers", *extra)


def test_send_counts_submits_once_and_list_show_report_it(cli, sqlite_engine, body):
    seed_customers(sqlite_engine, subscribers(12))
    code, out, err = send(cli, body, "--yes", "--detach")
    assert code == 0, err
    assert "12 recipient(s): audience subscribers" in out and "submitted to 12" in out
    code, out, _ = send(cli, body, "--yes", "--json")
    again = json.loads(out)
    assert code == 0 and again["created"] is False and again["total"] == 12

    code, out, _ = cli("broadcast", "list", "--json")
    [listed] = json.loads(out)["broadcasts"]
    assert listed["id"] == again["id"] and listed["status"] == "sending"
    code, out, _ = cli("broadcast", "show", str(listed["id"]), "--json")
    shown = json.loads(out)
    assert {k: shown[k] for k in ("total", "sent", "failed", "skipped", "remaining")} == {
        "total": 12, "sent": 0, "failed": 0, "skipped": 0, "remaining": 12}
    assert set(shown) >= {"rate", "eta_seconds", "status", "audience", "subject"}

    code, out, _ = cli("broadcast", "pause", str(listed["id"]), "--json")
    assert code == 0 and json.loads(out)["status"] == "paused"
    code, out, _ = cli("broadcast", "resume", str(listed["id"]))
    assert code == 0 and "sending" in out
    code, out, _ = cli("broadcast", "cancel", str(listed["id"]), "--json")
    assert code == 0 and json.loads(out)["status"] == "cancelled"
    # Read by a person: no blank figure, times on the shop's clock (not stored UTC, to the µs)
    code, out, _ = cli("broadcast", "show", str(listed["id"]))
    fields = dict(line.strip().split(": ", 1) for line in out.splitlines())
    assert code == 0 and fields["eta_seconds"] == "-"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d WAT", fields["created_at"])
    with Session(sqlite_engine) as s:
        actions = [a.action for a in s.exec(select(ActivityLog)).all()]
    assert actions == ["broadcast.submit", "broadcast.pause", "broadcast.resume",
                       "broadcast.cancel"]


def test_without_yes_and_no_terminal_it_prints_the_count_and_sends_nothing(
    cli, sqlite_engine, body
):
    seed_customers(sqlite_engine, subscribers(3))
    code, out, err = send(cli, body)
    assert code == 1 and "3 recipient(s)" in out
    assert "add --yes" in err and len(err.strip().splitlines()) == 1
    with Session(sqlite_engine) as s:
        assert s.exec(select(Broadcast)).all() == []


@pytest.mark.parametrize("argv, reason", [
    (["--audience", "everyone"], "unknown audience 'everyone'"),
    (["--audience", "sku:KB-NOPE"], "no product with SKU 'KB-NOPE'"),
    (["--audience", "subscribers", "--subject", " "], "needs a subject and a body"),
])
def test_bad_input_is_one_line_and_writes_nothing(cli, sqlite_engine, body, argv, reason):
    seed_customers(sqlite_engine, subscribers(3))
    base = {"--subject": "Hi", "--body-file": body, "--audience": "subscribers"}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        base[flag] = value
    code, _out, err = cli("broadcast", "send", *[x for kv in base.items() for x in kv], "--yes")
    assert code == 1 and reason in err and len(err.strip().splitlines()) == 1, err
    code, _out, err = cli("broadcast", "pause", "999")
    assert code == 1 and "broadcast #999 not found" in err
    with Session(sqlite_engine) as s:
        assert s.exec(select(Broadcast)).all() == []


def test_the_one_address_broadcast_kind_is_retired_from_email_queue(cli, sqlite_engine, body):
    code, _out, err = cli("email", "queue", "broadcast", "--to", "a@example.com", "--subject",
                          "S", "--body-file", body)
    assert code == 1 and "broadcast send" in err
    assert count(sqlite_engine) == 0
