"""Workers refuse to start, in one line, on a configuration that cannot send email: no job is
taken, so no retry is spent on a mistake no retry fixes."""

from __future__ import annotations

import json
import subprocess

import pytest
from helpers import CLI, CONSUMER, run_all

from kolaq_console.emails.sendable import sending_problems

KEY = "test-" + "resend-key-not-real"
RESEND = {"KOLAQ_EMAIL__TRANSPORT": "resend", "RESEND_API_KEY": KEY,
          "KOLAQ_SHOP__PUBLIC_URL": "https://shop.example"}


@pytest.mark.parametrize(("url", "refused"), [
    ("https://shop.example", False), ("https://kolaq.ng/shop", False),
    ("http://shop.example", True), ("https://localhost:8080", True),
    ("https://127.0.0.1", True), ("https://127.0.1.1", True), ("https://[::1]/", True),
    ("https://0.0.0.0", True), ("https://app.localhost", True), ("shop.example", True),
])
def test_public_url_must_be_a_public_https_address_for_resend(make_settings, url, refused):
    s = make_settings(email__transport="resend", RESEND_API_KEY=KEY, shop__public_url=url)
    problems = sending_problems(s)
    assert bool(problems) == refused
    if refused:
        assert problems == [f'[shop] public_url = "{url}" with transport = "resend": every '
                            "customer email links to it; set the shop's public https:// address"]
    dev = make_settings(shop__public_url=url)  # the dev transport sends nothing: no refusal
    assert sending_problems(dev) == []


def _refused(result: subprocess.CompletedProcess, prefix: str, *names: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    for name in names:
        assert name in lines[0]
    assert KEY not in result.stderr


@pytest.mark.parametrize(("change", "names"), [
    ({"RESEND_API_KEY": ""}, ["RESEND_API_KEY is not set"]),
    ({"KOLAQ_SHOP__PUBLIC_URL": "http://127.0.0.1:8080"}, ["[shop] public_url"]),
    ({"RESEND_API_KEY": "", "KOLAQ_SHOP__PUBLIC_URL": "https://localhost"},
     ["RESEND_API_KEY is not set", "[shop] public_url"]),
])
def test_workers_refuse_a_configuration_that_cannot_send_and_take_no_job(
        kolaq_env, tasks_module, cli_result, tmp_path, change, names):
    env = {**kolaq_env, **RESEND, **change}
    # Set-up and checks in this process (tasks.huey rebuilt on this test's queue); the
    # refusals below are real processes (what is tested)
    assert cli_result("db", "upgrade", env=env).returncode == 0
    body = tmp_path / "body.txt"
    body.write_text("Hello")
    queued = cli_result("email", "queue", "generic", "--to", "a@example.com", "--subject",
                        "Hi", "--body-file", str(body), env=env)  # queuing needs no provider
    assert queued.returncode == 0, queued.stderr

    # the three ways to start a worker, real processes at once (each refuses on its own)
    worker, console, consumer = run_all(
        (env, (*CLI, "worker")), (env, (*CLI, "--worker")), (env, CONSUMER))
    _refused(worker, "kolaq-console: ", *names)
    _refused(console, "kolaq-console: ", *names)  # the console's own worker
    _refused(consumer, "tasks.huey: ", *names)

    doc = json.loads(cli_result("status", "--json", env=env).stdout)
    assert doc["queues"]["emails"]["pending"] == 1  # the send job is still waiting
    assert doc["outbox"]["queued"] == 1 and doc["failed_jobs"] == 0
    listed = json.loads(cli_result("email", "list", "--json", env=env).stdout)
    assert [(r["status"], r["attempts"]) for r in listed["emails"]] == [("queued", 0)]
