"""Which worker processes are provably gone, without waiting for their heartbeat to go stale.

A worker records its pid, the OS's start time of its process, and the scope its pid means
something in (this boot of this machine, this pid namespace: a container has its own). Another
process in the same scope can then tell, at once, that the worker is gone: no process has its
pid, or the one that has it started at another time (the pid was reused), or it is a zombie.
Outside that scope (another machine or container) nothing can be proved, and the heartbeat's
lease decides.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil

# Start times are derived from the boot time, which the kernel recomputes when the clock is
# stepped; a process started within this many seconds of the recorded time counts as the same.
# Erring this way is safe: a process taken for alive is left to the heartbeat lease.
START_TOLERANCE = 1.0


@dataclass(frozen=True)
class ProcessIdentity:
    host: str
    pid: int
    started: float | None  # OS start time, seconds since the epoch
    scope: str | None  # boot id and pid namespace: where the pid is meaningful


@functools.lru_cache(maxsize=1)
def _scope() -> str | None:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
        return f"{boot}/{namespace}"
    except OSError:
        try:  # not Linux: the boot time, with no namespaces to tell apart
            return f"boot@{psutil.boot_time():.0f}"
        except Exception:
            return None


def this_process() -> ProcessIdentity:
    pid = os.getpid()
    try:
        started: float | None = psutil.Process(pid).create_time()
    except Exception:
        started = None
    return ProcessIdentity(socket.gethostname(), pid, started, _scope())


def provably_gone(pid: int, started: float | None, scope: str | None) -> bool:
    """True only when certain: same scope as this process, and the process that had `pid`
    when it started at `started` no longer runs."""
    if started is None or scope is None or scope != _scope():
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True  # killed, not yet reaped by its parent: it runs nothing
        return abs(proc.create_time() - started) > START_TOLERANCE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # access denied and the like: it exists, so not provably gone
        return False
