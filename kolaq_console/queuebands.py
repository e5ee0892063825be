"""The three logical queues and their priority bands (see taskqueue's docstring), without Huey:
`status --json`'s fast path reads queue depths from them without importing the queue library.
"""

from __future__ import annotations

LOGICAL_QUEUES = ("emails", "inventory", "webhooks")
BAND_WIDTH = 100
PRIORITY_BANDS = {"webhooks": 300, "emails": 200, "inventory": 100}


def queue_for_priority(priority: float | None) -> str:
    p = priority or 0
    for name, base in sorted(PRIORITY_BANDS.items(), key=lambda kv: -kv[1]):
        if p >= base:
            return name
    return "inventory"
