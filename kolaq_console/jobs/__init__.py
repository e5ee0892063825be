"""The job ledger: durable records of failed, interrupted and in-flight jobs; retry, discard,
statistics and worker health.

- `install_ledger(huey, settings)` — in tasks.py; `rerun_safe` — declare a task safe to re-run.
- `failed` — list/show/retry/discard failed jobs (domain functions used by the CLI and console).
- `stats` — throughput per minute per queue, run times per task.
- `workers` — worker processes and the sweeper of lost jobs.
"""

from kolaq_console.jobs.ledger import (
    Ledger,
    install_ledger,
    on_job_lost,
    on_operator_retry,
    rerun_safe,
)

__all__ = ["Ledger", "install_ledger", "on_job_lost", "on_operator_retry", "rerun_safe"]
