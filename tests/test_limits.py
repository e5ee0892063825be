"""Size limits: a subject is one bounded line, a body fits [email] max_body_bytes, and every
numeric setting has a range. Refusals are one line and write nothing."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from annotated_types import Ge, Gt, Le, Lt
from email_support import count
from helpers import run_cli
from sqlmodel import Session

from kolaq_console.config import SECTIONS, ConfigError, load_settings
from kolaq_console.emails import outbox
from kolaq_console.errors import UserError

EMOJI_SUBJECT = "🍹" * 5_000
MIB = 1_048_576


def queue_generic(engine, settings, subject: str = "Hello", body: str = "Hi there") -> None:
    with Session(engine) as session:
        outbox.queue_email(session, settings, "generic", to="ada@example.com", subject=subject,
                           body=body, enqueue=False)


@pytest.mark.parametrize(("subject", "body", "message"), [
    (EMOJI_SUBJECT, "hi", "the subject is 5,000 characters; at most 200"),
    ("Hello\r\nBcc: everyone@example.com", "hi", "the subject must be one line"),
    ("Hello\u2028there", "hi", "the subject must be one line"),
    ("Bell\x07", "hi", "control character"),
    ("Big", "x" * (20 * MIB), "the body is 20,971,520 bytes; at most 1,048,576 bytes "
                              "([email] max_body_bytes)"),
    ("Big", "🍹" * (MIB // 4 + 1), "the body is 1,048,580 bytes"),
], ids=["emoji-subject", "crlf-subject", "line-separator", "control", "20MB-body",
        "emoji-body"])
def test_oversized_or_multiline_input_is_refused_and_nothing_stored(
        engine, settings, subject, body, message):
    with pytest.raises(UserError, match=re.escape(message)):
        queue_generic(engine, settings, subject, body)
    assert count(engine) == 0


def test_limits_fit_exactly_and_the_body_limit_is_configurable(engine, make_settings):
    settings = make_settings(email__max_body_bytes="2048")
    queue_generic(engine, settings, "s" * 200, "b" * 2048)
    with pytest.raises(UserError, match="at most 2,048 bytes"):
        queue_generic(engine, settings, "other", "b" * 2049)
    assert count(engine) == 1


def test_cli_body_file_over_the_limit_is_refused_unread_in_one_line(
        sqlite_engine, kolaq_env, tmp_path):
    big = tmp_path / "big.txt"
    with big.open("wb") as fh:
        fh.truncate(20 * MIB)  # sparse: 20 MB that cost nothing to write

    proc = run_cli(kolaq_env, "email", "queue", "generic", "--to", "ada@example.com",
                   "--subject", "Hi", "--body-file", str(big))

    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert f"--body-file {big} is 20,971,520 bytes; at most 1,048,576 bytes" in line
    assert count(sqlite_engine) == 0


def test_cli_emoji_subject_is_one_line(sqlite_engine, kolaq_env, tmp_path):
    body = tmp_path / "b.txt"
    body.write_text("hello")

    proc = run_cli(kolaq_env, "email", "queue", "generic", "--to", "ada@example.com",
                   "--subject", EMOJI_SUBJECT, "--body-file", str(body))

    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert "the subject is 5,000 characters; at most 200" in line
    assert count(sqlite_engine) == 0


# --- settings ------------------------------------------------------------------------------


def _numeric_fields():
    for section, model in SECTIONS.items():
        for name, field in model.model_fields.items():
            if field.annotation in (int, float):
                yield section, name, field


def test_every_numeric_setting_has_a_lower_and_an_upper_bound():
    unbounded = []
    for section, name, field in _numeric_fields():
        kinds = {type(m) for m in field.metadata}
        if not (kinds & {Ge, Gt} and kinds & {Le, Lt}):
            unbounded.append(f"[{section}] {name}")
    assert unbounded == []


@pytest.mark.parametrize(("toml", "where"), [
    ("[queue]\nshutdown_timeout = inf\n", "[queue] shutdown_timeout"),
    ("[queue]\nshutdown_timeout = nan\n", "[queue] shutdown_timeout"),
    ("[queue]\nretry_delay = -inf\n", "[queue] retry_delay"),
    ("[queue]\nname = \"\"\n", "[queue] name"),
    ("[queue]\nname = \"my queue\"\n", "[queue] name"),
    ("[queue]\nsqlite_path = \"\"\n", "[queue] sqlite_path"),
    ("[jobs]\nstats_retention_hours = 100000000\n", "[jobs] stats_retention_hours"),
    ("[email]\nrequest_timeout = 1e9\n", "[email] request_timeout"),
    ("[email]\nmax_body_bytes = 0\n", "[email] max_body_bytes"),
    ("[shop]\noperator = \"" + "x" * 121 + "\"\n", "[shop] operator"),
])
def test_out_of_range_settings_in_the_file_name_file_and_key(tmp_path: Path, toml, where):
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, path=path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {where}: ") and "\n" not in message


@pytest.mark.parametrize(("name", "value"), [
    ("KOLAQ_QUEUE__SHUTDOWN_TIMEOUT", "inf"),
    ("KOLAQ_QUEUE__SHUTDOWN_TIMEOUT", "NaN"),
    ("KOLAQ_JOBS__LEASE_SECONDS", "Infinity"),
    ("KOLAQ_QUEUE__NAME", ""),
])
def test_out_of_range_settings_in_the_environment_name_the_variable(tmp_path, name, value):
    with pytest.raises(ConfigError, match=f"^environment variable {name}: "):
        load_settings(environ={name: value}, cwd=tmp_path)


def test_defaults_are_inside_their_ranges():
    s = load_settings(environ={})
    assert all(math.isfinite(getattr(getattr(s, sec), name))
               for sec, name, _f in _numeric_fields())
