"""The key that signs queue payloads (Huey pickles them; a payload that fails its HMAC check is
never unpickled).

KOLAQ_SIGNING_KEY when set. Without it the Redis backend refuses to start: a key known to
anyone (say, one printed in the source) would let whoever can write to Redis run code in the
workers. The SQLite queue is a local file, so a random key made on first use and kept beside
it, readable by its owner only, protects it as well as the file itself is protected.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from kolaq_console.config import ConfigError, Settings

KEY_ENV = "KOLAQ_SIGNING_KEY"


def queue_signing_key(settings: Settings) -> str:
    """The signing key for these settings; ConfigError (one line) when there is none."""
    if settings.secrets.signing_key is not None:
        return settings.secrets.signing_key.get_secret_value()
    if settings.queue.backend == "redis":
        raise ConfigError(
            f"{KEY_ENV} is not set: the Redis queue backend refuses to start without it (anyone "
            "able to write to Redis could run code in the workers); set it to the same long "
            "random value for every process"
        )
    return local_key(key_file(settings))


def key_file(settings: Settings) -> Path:
    """Where the SQLite queue's own key lives: beside the queue file."""
    return Path(f"{settings.queue.sqlite_path}.signing-key")


def local_key(path: Path) -> str:
    """Read the key at `path`, creating it (0600) on first use. Two processes racing here
    agree on one key: each writes its candidate to a private temporary file and hard-links it
    into place, which fails for all but the first; the others then read the winner's."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        # Atomic, never a half-written key in place; FileExistsError: another process won
        # the race, and its key is the one read below.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{path}: the queue signing key is readable by other users (mode {mode:04o}); "
            f"run `chmod 600 {path}`, or set {KEY_ENV}"
        )
    key = path.read_text().strip()
    if not key:
        raise ConfigError(f"{path}: the queue signing key file is empty; delete it to make a new "
                          f"one, or set {KEY_ENV}")
    return key
