"""Plain formatting helpers for the console (no Textual): times, counts, one-line errors."""

from __future__ import annotations

from datetime import datetime, tzinfo

from kolaq_console.redact import redact


def one_line(exc: BaseException | str, limit: int = 160) -> str:
    """A redacted one-line message for a notification: never a traceback, never a secret."""
    if isinstance(exc, BaseException):
        text = str(exc).strip()
        from kolaq_console.errors import KolaqError

        if not text:
            text = type(exc).__name__
        elif not isinstance(exc, KolaqError):
            text = f"{type(exc).__name__}: {text}"
    else:
        text = exc.strip()
    first = redact(text.splitlines()[0] if text else "")
    return first if len(first) <= limit else first[: limit - 1] + "…"


def clip(text: str | None, width: int) -> str:
    """The first line of `text`, shortened to `width` characters with an ellipsis."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[: max(width - 1, 0)] + "…"


def when(moment: datetime | None, zone: tzinfo) -> str:
    """A compact local time: `11-28 14:03`; '-' for none."""
    if moment is None:
        return "-"
    return moment.astimezone(zone).strftime("%m-%d %H:%M")


def when_full(moment: datetime | None, zone: tzinfo) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def ago(moment: datetime | None, now: datetime) -> str:
    """How long ago, coarsely: `12s`, `5m`, `3h`, `2d`; '-' for none."""
    if moment is None:
        return "-"
    seconds = max(int((now - moment).total_seconds()), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def short_task(name: str) -> str:
    """`tasks.send_email` -> `send_email` (the module is the same for every task)."""
    return name.rsplit(".", 1)[-1]


def state_label(status: str, attempts: int, retries: int, next_at: datetime | None,
                zone: tzinfo) -> str:
    """`retrying 2/3 · next 17:08` for a queued row waiting out a back-off (it was tried and
    failed `attempts` times; `retries` is the budget after the first try); else the status."""
    if status == "queued" and attempts > 0 and next_at is not None:
        return (f"retrying {min(attempts, retries)}/{retries} · next "
                f"{next_at.astimezone(zone).strftime('%H:%M')}")
    return status
