"""Queue payload signing: no public key, the Redis backend refuses to start without
KOLAQ_SIGNING_KEY, the SQLite queue makes its own private key, and a payload signed with any
other key never runs in a real worker."""

from __future__ import annotations

import json
import pickle
import secrets
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from helpers import CLI, CONSUMER, ROOT, run_all, run_cli, wait_until
from huey.serializer import SignedSerializer
from sqlalchemy import func, select
from sqlmodel import Session

from kolaq_console.config import ConfigError, load_settings
from kolaq_console.db import make_engine
from kolaq_console.models import EmailOutbox, FailedJob
from kolaq_console.signing import key_file, local_key
from kolaq_console.taskqueue import make_huey, priority_for

pytestmark = pytest.mark.slow

NO_KEY = {"KOLAQ_SIGNING_KEY": ""}  # the test session sets one; empty means unset


def one_line_naming_the_key(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert len(lines) == 1, result.stderr
    assert "KOLAQ_SIGNING_KEY is not set" in lines[0] and "Traceback" not in result.stderr
    return lines[0]


def test_the_redis_backend_refuses_every_process_without_the_signing_key(kolaq_env, tmp_path,
                                                                        cli_result):
    env = {**kolaq_env, **NO_KEY, "KOLAQ_QUEUE__BACKEND": "redis"}
    assert cli_result("db", "upgrade", env=env).returncode == 0  # set-up: needs no queue
    body = tmp_path / "body.txt"
    body.write_text("Hello")

    # every process at once: each refuses on its own, before touching anything
    *cli, consumer = run_all(*[(env, (*CLI, *args)) for args in (
        ["worker"], ["status"], ["status", "--json"], [],
        ["email", "queue", "generic", "--to", "a@example.com", "--subject", "Hi",
         "--body-file", str(body)])], (env, CONSUMER))
    for result in cli:
        line = one_line_naming_the_key(result)
        assert line.startswith("kolaq-console: "), line
    assert one_line_naming_the_key(consumer).startswith("tasks.huey: ")

    settings = load_settings(environ=env)
    with pytest.raises(ConfigError, match="KOLAQ_SIGNING_KEY"):
        make_huey(settings)
    with Session(make_engine(settings.database.url)) as s:
        assert s.exec(select(func.count()).select_from(EmailOutbox)).one() == (0,)  # no row


def _base_env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_the_sqlite_queue_key_is_made_once_owner_only_and_racing_processes_agree(tmp_path):
    path = tmp_path / "var" / "queue.db.signing-key"
    code = ("import sys; from pathlib import Path; from kolaq_console.signing import local_key; "
            "print(local_key(Path(sys.argv[1])))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT,
                              env=_base_env(), stdout=subprocess.PIPE, text=True)
             for _ in range(6)]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(keys) == 1 and len(keys.pop()) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left

    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable by other users \(mode 0644\); run `chmod 600"):
        local_key(path)


def test_the_sqlite_queue_runs_without_a_configured_key(sqlite_engine, kolaq_env, spawn,
                                                        tmp_path, settings):
    """CLI and worker on one machine share the generated key: an email queued by the CLI is
    sent by the worker, and the key sits beside the queue file."""
    env = {**kolaq_env, **NO_KEY}
    body = tmp_path / "body.txt"
    body.write_text("Hello")
    worker = spawn("worker", "-w", "1", "--no-periodic", env=NO_KEY)
    queued = run_cli(env, "email", "queue", "generic", "--to", "a@example.com", "--subject",
                     "Hi", "--body-file", str(body))
    assert queued.returncode == 0, queued.stderr
    outbox = Path(kolaq_env["KOLAQ_EMAIL__OUTBOX_DIR"])
    wait_until(lambda: outbox.exists() and list(outbox.glob("*.eml")),
               message="the email written by the dev transport")
    assert "KOLAQ_SIGNING_KEY" not in worker.output()  # no warning: nothing to warn about
    assert stat.S_IMODE(key_file(settings).stat().st_mode) == 0o600


class Exploit:
    """What an attacker who can write to the queue pushes: a pickle that runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def rejected_entries(engine) -> list[FailedJob]:
    with Session(engine) as s:
        return list(s.exec(select(FailedJob).where(FailedJob.error_type == "RejectedPayload")
                           .order_by(FailedJob.id)).scalars())


def test_a_payload_signed_with_any_other_key_never_runs_and_each_is_recorded(
        queue_backend, sqlite_engine, settings, kolaq_env, spawn, tmp_path, cli_result):
    huey = make_huey(settings)
    markers, sizes = [], []
    for key in ("", secrets.token_hex(8), secrets.token_urlsafe(40)):
        marker = tmp_path / f"pwned-{len(markers)}"
        markers.append(marker)
        data = pickle.dumps(Exploit(marker))
        if key:  # signed exactly as Huey signs, with the wrong key
            data = SignedSerializer(secret=key, salt="kolaq")._sign(data)
        sizes.append(len(data))
        huey.storage.enqueue(data, priority=priority_for("emails"))
    # and one in the schedule, where retries and delayed jobs wait
    late = SignedSerializer(secret="another", salt="kolaq")._sign(pickle.dumps(Exploit(
        tmp_path / "pwned-late")))
    huey.storage.add_to_schedule(late, datetime(2000, 1, 1))
    markers.append(tmp_path / "pwned-late")

    worker = spawn("worker", "-w", "2")
    legit = Path(kolaq_env["KOLAQ_EMAIL__OUTBOX_DIR"])
    body = tmp_path / "body.txt"
    body.write_text("Hello")
    assert run_cli(kolaq_env, "email", "queue", "generic", "--to", "a@example.com",
                   "--subject", "Hi", "--body-file", str(body)).returncode == 0
    wait_until(lambda: legit.exists() and list(legit.glob("*.eml")),
               message="the legitimate email after the forgeries")
    entries = wait_until(lambda: len(rejected_entries(sqlite_engine)) == 4
                         and rejected_entries(sqlite_engine), message="4 rejections recorded")
    assert not any(m.exists() for m in markers)  # none of them ran

    queued = [e for e in entries if e.queue == "emails"]
    [scheduled] = [e for e in entries if e.queue == "unknown"]  # the schedule has no priority
    other_key = "signed with a different KOLAQ_SIGNING_KEY"
    reasons = sorted(e.error_message.split(" (")[0].split(",")[0] for e in queued)
    assert reasons == ["not signed: forged", other_key, other_key]
    assert scheduled.error_message.startswith("signed with a different KOLAQ_SIGNING_KEY")
    assert sorted(int(e.error_message.split("; ")[-1].split()[0]) for e in queued) == sorted(
        sizes)
    for entry in entries:  # never the content: no path, no pickled class name
        assert "pwned" not in entry.error_message and "Exploit" not in entry.error_message
        assert entry.task_name == "(rejected payload)" and entry.worker_pid == worker.pid
        assert entry.status == "failed" and entry.payload is None
    assert "Traceback" not in worker.output()

    status = cli_result("status", "--json")
    doc = json.loads(status.stdout)
    assert doc["rejected_payloads"] == 4 and doc["failed_jobs"] == 4
    assert "rejected queue payloads: 4" in cli_result("status").stdout
    retry = cli_result("jobs", "retry", str(scheduled.id))
    assert "a rejected payload is never kept" in retry.stdout + retry.stderr


def test_a_cli_with_another_key_than_the_worker_is_seen_not_silently_lost(
        queue_backend, sqlite_engine, settings, kolaq_env, spawn, tmp_path, cli_result):
    worker = spawn("worker", "-w", "1", "--no-periodic")
    worker.wait_for_output("Huey consumer started")
    body = tmp_path / "body.txt"
    body.write_text("Hello")
    queued = run_cli({**kolaq_env, "KOLAQ_SIGNING_KEY": "a-key-the-worker-does-not-have"},
                     "email", "queue", "generic", "--to", "a@example.com", "--subject", "Hi",
                     "--body-file", str(body))
    assert queued.returncode == 0, queued.stderr
    [entry] = wait_until(lambda: rejected_entries(sqlite_engine), message="the rejection")
    assert entry.queue == "emails"
    assert entry.error_message.startswith("signed with a different KOLAQ_SIGNING_KEY")
    doc = json.loads(cli_result("status", "--json").stdout)
    assert doc["rejected_payloads"] == 1
    with Session(sqlite_engine) as s:  # the email itself waits for the outbox sweeper
        assert s.exec(select(EmailOutbox.status)).scalars().all() == ["queued"]
