"""The console quits when its terminal goes away, also when a wrapper (`make console`, a
shell script) is the terminal's session leader and so the only one sent the hang-up: left
running, it would spin on its dead input and its embedded worker would take jobs unseen."""

from __future__ import annotations

import fcntl
import os
import pty
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


def test_the_console_quits_when_its_terminal_hangs_up_under_make(engine, kolaq_env,
                                                                  tmp_path):
    # No shell characters in the recipe: make runs the console itself, as its child.
    (tmp_path / "Makefile").write_text(f"console:\n\t{sys.executable} -m kolaq_console "
                                       "--worker\n")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, b"\x18\x00\x50\x00\x00\x00\x00\x00")  # 80x24
    shell = subprocess.Popen(  # make leads the terminal's session, as under `make console`
        ["make", "-s", "-f", str(tmp_path / "Makefile"), "console"],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        env={**os.environ, **kolaq_env, "TERM": "xterm-256color"},
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
    try:
        wait_until(lambda: _children(shell.pid), timeout=30, message="the console to start")
        [console] = _children(shell.pid)
        wait_until(lambda: b"Home" in seen, timeout=60, message="the first screen")

        def worker_registered() -> bool:
            with Session(engine) as s:
                return s.exec(select(Worker).where(Worker.pid == console)).first() is not None

        wait_until(worker_registered, timeout=30, message="the embedded worker to register")
        os.close(master)  # the terminal goes away: the kernel hangs up the session leader
        shell.wait(10)
        wait_until(lambda: not _alive(console), timeout=30,
                   message="the console to quit after its terminal went away")
        with Session(engine) as s:  # it quit as `q` does: its worker stopped cleanly
            worker = s.exec(select(Worker).where(Worker.pid == console)).one()
            assert worker.stopped_at is not None
    finally:
        for pid in [*_children(shell.pid), shell.pid]:
            if _alive(pid):
                os.kill(pid, 9)
