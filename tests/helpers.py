"""Test helpers importable from any test module (`from helpers import ...`)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Proc:
    """A subprocess with its output in a log file (read it when a test fails)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT):
        self.log = log
        self._fh = log.open("ab")
        self.popen = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=self._fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        self._fh.flush()
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not seen in {self.log}:\n{self.output()[-3000:]}")

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        self._fh.close()
        return self.popen.returncode


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05,
               message: str = "condition") -> object:
    """Poll `predicate` until truthy; fail with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def run_cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `python -m kolaq_console ARGS` as a real process with `env` added; capture output."""
    import sys

    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "kolaq_console", *args],
        env=full, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )


CLI = ("-m", "kolaq_console")
CONSUMER = ("-m", "huey.bin.huey_consumer", "tasks.huey")


def run_all(*runs: tuple[dict[str, str], tuple[str, ...]],
            timeout: float = 60) -> list[subprocess.CompletedProcess]:
    """Several real processes at once, `python ARGS` with `env` added as `run_cli` does, one
    (env, ARGS) each: for independent runs (refusals, read-only commands) that need not wait
    on one another. `CLI + ("worker",)` is `python -m kolaq_console worker`."""
    import sys

    procs = [subprocess.Popen(
        [sys.executable, *args], env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for env, args in runs]
    results = []
    try:
        for proc, (_, args) in zip(procs, runs, strict=True):
            out, err = proc.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(list(args), proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results
