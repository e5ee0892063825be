"""`kolaq-console email ...` and the outbox in `status --json`, run in-process."""

from __future__ import annotations

import json

import pytest
from email_support import activity, count, reload_tasks, seed_order, updated_at_on_shop_clock
from sqlalchemy import text

from kolaq_console import runtime
from kolaq_console.cli import main


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


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["email", "queue", "generic", "--to", "nobody", "--subject", "S", "--body-file", "B"],
         "invalid recipient address 'nobody'"),
        (["email", "queue", "order_confirmation", "--order", "KB-404"], "order 'KB-404' not found"),
        (["email", "queue", "generic", "--to", "a@example.com", "--subject", "S",
          "--body-file", "/nonexistent/body.txt"], "--body-file /nonexistent/body.txt"),
        (["email", "queue", "telegram"], "unknown email kind 'telegram'"),
        (["email", "resend", "999"], "email #999 not found"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line_and_writes_nothing(
    cli, sqlite_engine, tmp_path, argv, reason
):
    body = tmp_path / "B"
    body.write_text("hello")
    argv = [str(body) if a == "B" else a for a in argv]
    code, _out, err = cli(*argv)
    assert code == 1 and reason in err and len(err.strip().splitlines()) == 1, err
    assert count(sqlite_engine) == 0


def test_queue_list_show_preview_resend_and_status(cli, sqlite_engine, tmp_path):
    seed_order(sqlite_engine, "KB-1001")
    code, out, _ = cli("email", "queue", "order_confirmation", "--order", "KB-1001", "--json")
    assert code == 0
    queued = json.loads(out)
    assert queued["created"] and queued["status"] == "queued"
    code, out, _ = cli("email", "queue", "order_confirmation", "--order", "KB-1001")
    assert code == 0 and f"already queued as email #{queued['id']}" in out
    assert count(sqlite_engine) == 1

    code, out, _ = cli("email", "list", "--status", "queued", "--json")
    assert [e["id"] for e in json.loads(out)["emails"]] == [queued["id"]]
    code, out, _ = cli("email", "show", str(queued["id"]))
    assert code == 0 and "Total (NGN): ₦32,000.00" in out

    page = tmp_path / "preview" / "confirmation.html"
    code, out, _ = cli("email", "preview", "order_confirmation", "--order", "KB-1001",
                       "--out", str(page), "--text")
    assert code == 0 and page.read_text().lower().startswith("<!doctype html>")
    assert "Thank you for your order" in out and count(sqlite_engine) == 1

    code, _out, err = cli("email", "resend", str(queued["id"]))
    assert code == 1 and f"email #{queued['id']} is queued: it is on its way already" in err
    with sqlite_engine.begin() as conn:  # sent: now it may be sent again
        conn.execute(text("UPDATE email_outbox SET status = 'sent' WHERE id = :i"),
                     {"i": queued["id"]})
    code, out, _ = cli("email", "resend", str(queued["id"]), "--json")
    again = json.loads(out)
    assert again["id"] != queued["id"] and "/resend-" in again["idempotency_key"]
    assert [a.action for a in activity(sqlite_engine)] == ["email.resend"]

    code, out, _ = cli("status", "--json")
    assert json.loads(out)["outbox"] == {"queued": 1, "sent": 1, "failed": 0}


def test_list_prints_update_times_on_the_shops_clock(cli, sqlite_engine, settings, monkeypatch):
    from kolaq_console.cli.common import out as console

    monkeypatch.setattr(console.console, "_width", 200)  # no folded cells
    seed_order(sqlite_engine, "KB-1001")
    cli("email", "queue", "order_confirmation", "--order", "KB-1001")
    local = updated_at_on_shop_clock(sqlite_engine, "email_outbox", settings)
    code, out, _ = cli("email", "list")
    assert code == 0 and local in out
