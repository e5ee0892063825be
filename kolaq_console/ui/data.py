"""What the console's screens read, gathered from the domain services in one call each.
No Textual here: these run in worker threads and are tested alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from huey.api import Huey
from sqlalchemy.engine import Engine

from kolaq_console.config import Settings
from kolaq_console.status import Status, collect


@dataclass
class Overview:
    status: Status
    now: datetime
    minutes: int = 30
    completed: list[int] = field(default_factory=list)  # per minute, oldest first
    failed: list[int] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total_completed(self) -> int:
        return sum(self.completed)

    @property
    def total_failed(self) -> int:
        return sum(self.failed)

    @property
    def error_rate(self) -> float | None:
        runs = self.total_completed + self.total_failed
        return None if runs == 0 else self.total_failed / runs


def collect_overview(settings: Settings, engine: Engine, huey: Huey, now: datetime,
                     minutes: int = 30) -> Overview:
    """Status (an unreachable store is reported, not raised), throughput and workers."""
    return Overview(status=collect(settings, engine, huey), now=now, minutes=minutes)
