"""Five-field crontab expressions (minute hour day month weekday), matched against a wall clock.

Hand-made on purpose; the libraries were weighed (issue 9) and do not do this job:
- Huey's `crontab()` takes the fields separately, ignores pieces it cannot read unless told
  to be strict, and ANDs day-of-month with day-of-week.
- croniter (7.0) follows cron's day rule, but a config typo must be refused naming the field
  ("hour: 25 is out of range 0-23"), and croniter says "[0 25 * * *] is not acceptable, out
  of range"; it also accepts what a five-field setting must refuse (6- and 7-field forms with
  seconds or years, `L`, `#`, a reversed range `5-1` that wraps), and matching one minute
  (`croniter.match`) costs ~0.2 ms against a set lookup here, where `latest_slot` walks back
  up to 1,440 minutes. It would also add python-dateutil.
This parser reads the usual one-line form, refuses anything it does not understand with a
message that says which field and why, and follows cron's rule for the two day fields: when
both are restricted, either may match.

Supported per field: `*`, `N`, `A-B`, `*/S`, `A-B/S`, `N/S` (N to the end, step S), lists with
commas, month names (jan-dec) and weekday names (sun-sat); weekday 0 and 7 are Sunday. The
aliases @hourly, @daily (@midnight), @weekly, @monthly and @yearly (@annually) are accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
WEEKDAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_PIECE = re.compile(r"^(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>[0-9]+))?$")


class CronError(ValueError):
    """A crontab expression that cannot be read; the message names the field and the problem."""


@dataclass(frozen=True)
class Cron:
    expr: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    def matches(self, wall: datetime) -> bool:
        """Whether the minute of this wall-clock time (in whatever zone it is given) matches."""
        if (
            wall.minute not in self.minutes
            or wall.hour not in self.hours
            or wall.month not in self.months
        ):
            return False
        day = wall.day in self.days
        weekday = (wall.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return weekday
        if self.any_weekday:
            return day
        return day or weekday  # cron: both restricted -> either matches


def _value(token: str, name: str, lo: int, hi: int) -> int:
    names = MONTHS if name == "month" else WEEKDAYS if name == "day of week" else {}
    if token in names:
        return names[token]
    if not token.isdigit():
        hint = " or a name (jan-dec)" if name == "month" else (
            " or a name (sun-sat)" if name == "day of week" else "")
        raise CronError(f"{name}: {token!r} is not a number{hint}")
    value = int(token)
    if not lo <= value <= hi:
        raise CronError(f"{name}: {value} is out of range {lo}-{hi}")
    return value


def _field(text: str, name: str, lo: int, hi: int) -> set[int]:
    values: set[int] = set()
    for piece in text.split(","):
        match = _PIECE.match(piece)
        if not match:
            raise CronError(
                f"{name}: {piece!r} is not a value, range (A-B), step (*/S, A-B/S) or list (A,B)"
            )
        rng, step_text = match.group("range"), match.group("step")
        step = int(step_text) if step_text is not None else 1
        if step < 1:
            raise CronError(f"{name}: step must be at least 1 in {piece!r}")
        if rng == "*":
            start, end = lo, hi
        elif "-" in rng:
            a, b = rng.split("-", 1)
            start, end = _value(a, name, lo, hi), _value(b, name, lo, hi)
            if start > end:
                raise CronError(f"{name}: range {piece!r} starts after it ends")
        else:
            start = _value(rng, name, lo, hi)
            end = hi if step_text is not None else start
        values.update(range(start, end + 1, step))
    return values


def parse_cron(expr: str) -> Cron:
    """Parse `expr`; raise CronError naming the field at fault."""
    if not isinstance(expr, str) or not expr.strip():
        raise CronError("empty crontab expression; expected 'minute hour day month weekday'")
    text = ALIASES.get(expr.strip().lower(), expr.strip().lower())
    if text.startswith("@"):
        raise CronError(f"unknown alias {expr.strip()!r}; expected one of {', '.join(ALIASES)}")
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"expected 5 fields 'minute hour day month weekday', got {len(parts)} in {expr!r}"
        )
    sets = [_field(p, name, lo, hi) for p, (name, lo, hi) in zip(parts, FIELDS, strict=True)]
    weekdays = {d % 7 for d in sets[4]}
    return Cron(
        expr=expr,
        minutes=frozenset(sets[0]),
        hours=frozenset(sets[1]),
        days=frozenset(sets[2]),
        months=frozenset(sets[3]),
        weekdays=frozenset(weekdays),
        # As cron does: a day field starting with '*' (even '*/2') does not restrict the other.
        any_day=parts[2].startswith("*"),
        any_weekday=parts[4].startswith("*"),
    )
