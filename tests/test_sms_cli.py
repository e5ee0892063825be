"""`kolaq-console sms ...`: queue, preview, list, show, resend, retry (in-process), and the
one-line errors that write nothing."""

from __future__ import annotations

import ast
import json
import sys

import pytest
from email_support import count, reload_tasks, seed_order, updated_at_on_shop_clock
from helpers import ROOT
from sms_support import ADA_PHONE, set_phone

from kolaq_console import runtime
from kolaq_console.cli import main
from kolaq_console.models import TextMessage


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


@pytest.mark.parametrize(("argv", "reason"), [
    (["sms", "queue", "generic", "--to", "12345", "--body-file", "B"],
     "invalid recipient number (--to) '12345': not a valid number for NG"),
    (["sms", "queue", "generic", "--to", ADA_PHONE, "--body-file", "B", "--channel",
      "whatsapp"], "WhatsApp needs an approved template for generic"),
    (["sms", "queue", "order_confirmation", "--order", "KB-404"], "order 'KB-404' not found"),
    (["sms", "queue", "order_confirmation", "--order", "KB-1001"],
     "ada@example.com has no phone number"),
    (["sms", "queue", "generic", "--to", ADA_PHONE, "--body-file", "/nonexistent/b.txt"],
     "--body-file /nonexistent/b.txt"),
    (["sms", "queue", "broadcast"], "unknown message kind 'broadcast'"),
    (["sms", "queue", "generic", "--to", ADA_PHONE, "--body-file", "LONG"],
     "generic SMS body is 4 segments (GSM7, 600 septets); the limit is [sms] max_segments = 3"),
    (["sms", "queue", "generic", "--to", ADA_PHONE, "--body-file", "HUGE"],
     "larger than a message can be"),
    (["sms", "list", "--status", "lost"], "unknown status 'lost'"),
    (["sms", "resend", "999"], "message #999 not found"),
])
def test_bad_input_exits_non_zero_with_one_line_and_writes_nothing(
    cli, sqlite_engine, tmp_path, argv, reason
):
    seed_order(sqlite_engine, "KB-1001")
    (tmp_path / "B").write_text("hello")
    (tmp_path / "LONG").write_text("a" * 600)
    (tmp_path / "HUGE").write_text("a" * 100_000)
    argv = [str(tmp_path / a) if a in ("B", "LONG", "HUGE") else a for a in argv]
    code, _out, err = cli(*argv)
    assert code == 1 and reason in err and len(err.strip().splitlines()) == 1, err
    assert count(sqlite_engine, TextMessage) == 0


def test_queue_preview_list_show_resend(cli, sqlite_engine, tmp_path):
    seed_order(sqlite_engine, "KB-1001")
    set_phone(sqlite_engine, sms=True, whatsapp=True)
    code, out, _ = cli("sms", "preview", "order_confirmation", "--order", "KB-1001")
    assert code == 0 and "1 segment (GSM7" in out and "KB-1001" in out
    assert count(sqlite_engine, TextMessage) == 0  # a preview writes nothing

    code, out, _ = cli("sms", "queue", "order_confirmation", "--order", "KB-1001", "--json")
    first = json.loads(out)
    assert code == 0 and first["created"] and first["to"] == ADA_PHONE
    assert first["channel"] == "sms" and first["segments"] == 1 and first["encoding"] == "gsm7"
    code, out, _ = cli("sms", "queue", "order_confirmation", "--order", "KB-1001")
    assert code == 0 and f"already queued as message #{first['id']}" in out

    code, out, _ = cli("sms", "queue", "order_confirmation", "--order", "KB-1001",
                       "--channel", "whatsapp", "--json")
    assert json.loads(out)["content_sid"].startswith("HX")

    body = tmp_path / "note.txt"
    body.write_text("Pickup ready ₦")  # the naira sign makes it UCS-2
    code, out, _ = cli("sms", "queue", "generic", "--to", "0803 123 4567", "--body-file",
                       str(body))
    assert code == 0 and "1 segment(s) ucs2" in out

    code, out, _ = cli("sms", "list", "--json")
    listed = json.loads(out)["messages"]
    assert [m["channel"] for m in listed] == ["sms", "whatsapp", "sms"]
    assert {"id", "channel", "kind", "to", "status", "delivery_status", "segments",
            "provider_message_id", "last_error"} <= set(listed[0])
    code, out, _ = cli("sms", "list", "--channel", "whatsapp", "--order", "KB-1001", "--json")
    assert len(json.loads(out)["messages"]) == 1
    code, out, _ = cli("sms", "list")
    assert code == 0 and "Messages (3)" in out

    code, out, _ = cli("sms", "show", str(first["id"]))
    assert code == 0 and "order_confirmation" in out and "KB-1001" in out
    code, out, _ = cli("sms", "resend", str(first["id"]), "--json")
    assert code == 0 and json.loads(out)["idempotency_key"].startswith(
        "sms/order_confirmation/KB-1001/again-")
    code, out, err = cli("sms", "retry", str(first["id"]))
    assert code == 1 and "only failed or unknown messages can be retried" in err


def test_the_sms_cli_module_imports_only_typer_and_the_standard_library_at_top_level():
    """CLI start-up stays light: the SDKs, phone metadata and the database layer are imported
    inside the commands that need them."""
    tree = ast.parse((ROOT / "kolaq_console" / "cli" / "sms.py").read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            top.add((node.module or "").split(".")[0])
    assert top <= {"__future__", "typer"} | set(sys.stdlib_module_names), top


def test_status_json_counts_messages_by_status(cli, sqlite_engine):
    seed_order(sqlite_engine, "KB-1001")
    set_phone(sqlite_engine)
    cli("sms", "queue", "order_confirmation", "--order", "KB-1001")
    code, out, _ = cli("status", "--json")
    assert code == 0
    assert json.loads(out)["messages"] == {"queued": 1, "sent": 0, "failed": 0, "unknown": 0}


@pytest.mark.parametrize(("change", "names"), [
    ({"TWILIO_AUTH_TOKEN": ""}, ["TWILIO_AUTH_TOKEN is not set"]),
    ({"TWILIO_ACCOUNT_SID": "", "TWILIO_AUTH_TOKEN": ""},
     ["TWILIO_ACCOUNT_SID is not set", "TWILIO_AUTH_TOKEN is not set"]),
])
def test_workers_refuse_a_twilio_configuration_that_cannot_send(kolaq_env, tmp_path, change,
                                                                names, tasks_module,
                                                                cli_result):
    from helpers import run_cli
    from sms_support import TOKEN, twilio_env

    env = {**kolaq_env, **twilio_env("http://127.0.0.1:9"), **change}
    # Set-up and checks in this process (tasks.huey rebuilt on this test's queue); the
    # refusal is a real process (what is tested)
    assert cli_result("db", "upgrade", env=env).returncode == 0
    body = tmp_path / "body.txt"
    body.write_text("Hello")
    assert cli_result("sms", "queue", "generic", "--to", ADA_PHONE, "--body-file", str(body),
                      env=env).returncode == 0  # queueing needs no provider
    result = run_cli(env, "worker")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("kolaq-console: ") and all(n in lines[0] for n in names)
    assert TOKEN not in result.stderr
    assert len(tasks_module.huey.pending()) == 1  # the send job is still waiting
    listed = json.loads(cli_result("sms", "list", "--json", env=env).stdout)["messages"]
    assert [(m["status"], m["attempts"]) for m in listed] == [("queued", 0)]


def test_list_prints_update_times_on_the_shops_clock(cli, sqlite_engine, settings, monkeypatch):
    from kolaq_console.cli.common import out as console

    monkeypatch.setattr(console.console, "_width", 200)  # no folded cells
    seed_order(sqlite_engine, "KB-1001")
    set_phone(sqlite_engine, sms=True, whatsapp=False)
    cli("sms", "queue", "order_confirmation", "--order", "KB-1001")
    local = updated_at_on_shop_clock(sqlite_engine, "text_messages", settings)
    code, out, _ = cli("sms", "list")
    assert code == 0 and local in out
