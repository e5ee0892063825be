"""The console quits as `q` does (its embedded worker stopping cleanly) when its terminal goes
away, also when a wrapper (`make console`, a shell script) is the terminal's session leader
and so the only one sent the hang-up: left running, it would spin on its dead input and its
embedded worker would take jobs unseen. Also on SIGHUP and SIGTERM, whose default would kill
it with jobs half run."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest
from helpers import wait_until
from sqlmodel import Session, select

from kolaq_console.models import Worker

pytestmark = pytest.mark.consumer


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _in_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, int,
                                                                   bytearray]:
    """`argv` as the leader of a new session on a new 80x24 terminal; (process, the
    terminal's master end, what it printed so far)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, b"\x18\x00\x50\x00\x00\x00\x00\x00")  # 80x24
    leader = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        env={**os.environ, **env, "TERM": "xterm-256color"},
    )
    os.close(slave)
    seen = bytearray()

    def drain() -> None:  # the screen's output, read as a terminal would
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            seen.extend(chunk)

    threading.Thread(target=drain, daemon=True).start()
    return leader, master, seen


def _running_console(engine, pid: int, seen: bytearray) -> None:
    wait_until(lambda: b"Home" in seen, timeout=60, message="the first screen")

    def worker_registered() -> bool:
        with Session(engine) as s:
            return s.exec(select(Worker).where(Worker.pid == pid)).first() is not None

    wait_until(worker_registered, timeout=30, message="the embedded worker to register")


def _quit_cleanly(engine, pid: int) -> None:
    wait_until(lambda: not _alive(pid), timeout=30, message="the console to quit")
    with Session(engine) as s:  # it quit as `q` does: its worker stopped cleanly
        worker = s.exec(select(Worker).where(Worker.pid == pid)).one()
        assert worker.stopped_at is not None


CONSOLE = [sys.executable, "-m", "kolaq_console", "--worker"]


def test_the_console_quits_when_its_terminal_hangs_up_under_make(engine, kolaq_env,
                                                                  tmp_path):
    # No shell characters in the recipe: make runs the console itself, as its child.
    (tmp_path / "Makefile").write_text(f"console:\n\t{' '.join(CONSOLE)}\n")
    shell, master, seen = _in_a_terminal(  # make leads the session, as under `make console`
        ["make", "-s", "-f", str(tmp_path / "Makefile"), "console"], kolaq_env)
    try:
        wait_until(lambda: _children(shell.pid), timeout=30, message="the console to start")
        [console] = _children(shell.pid)
        _running_console(engine, console, seen)
        os.close(master)  # the terminal goes away: the kernel hangs up the session leader
        shell.wait(10)
        _quit_cleanly(engine, console)
    finally:
        for pid in [*_children(shell.pid), shell.pid]:
            if _alive(pid):
                os.kill(pid, 9)


@pytest.mark.parametrize("how", ["terminal closed", "SIGTERM"])
def test_the_console_leading_its_terminal_quits_cleanly_on_hangup_or_sigterm(
        engine, kolaq_env, how):
    console, master, seen = _in_a_terminal(CONSOLE, kolaq_env)
    try:
        _running_console(engine, console.pid, seen)
        if how == "SIGTERM":
            console.send_signal(signal.SIGTERM)
        else:
            os.close(master)  # the kernel sends SIGHUP to the console itself
        console.wait(30)
        _quit_cleanly(engine, console.pid)
    finally:
        if console.poll() is None:
            console.kill()
