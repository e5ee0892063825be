"""Messages posted by the console's workers, named for what happened (past tense).

Workers run in threads, never touch widgets, and post one of these to their screen (or the
app); `@on` handlers there own every state change.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message


class EmbeddedWorkerSwitched(Message, bubble=False):
    """The embedded Huey consumer was started (running=True) or stopped."""

    def __init__(self, running: bool) -> None:
        super().__init__()
        self.running = running


class ScreenMessage(Message, bubble=False):
    """Posted by a screen's worker to that screen, handled there (it does not bubble up)."""

    def __init_subclass__(cls, bubble: bool | None = False, **kwargs: Any) -> None:
        super().__init_subclass__(bubble=bubble, **kwargs)  # Textual's default is True


class DataLoaded(ScreenMessage):
    """A screen's data was read; `query` is what it was read for (stale answers are dropped)."""

    def __init__(self, data: Any, query: Any = None) -> None:
        super().__init__()
        self.data = data
        self.query = query


class OverviewCollected(DataLoaded):
    """Queue depths, failures, throughput, workers, storage, outbox and stock."""


class EmailsLoaded(DataLoaded):
    """Recent outbox rows (summaries) matching the screen's filter."""


class EmailLoaded(DataLoaded):
    """One outbox row in full, for the detail view."""


class EmailResent(ScreenMessage):
    """An operator's "send again" stored a new outbox row and enqueued it (and closed the
    original's open failed send jobs)."""

    def __init__(self, original_id: int, new_id: int, to: str,
                 closed_failed_jobs: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.original_id = original_id
        self.new_id = new_id
        self.to = to
        self.closed_failed_jobs = closed_failed_jobs


class FailedJobsLoaded(DataLoaded):
    """A page of open failed-job entries matching the filter, and how many match in all."""


class FailedSendFound(DataLoaded):
    """The open failed send jobs (ids) of one email, for its detail's retry."""


class FailedJobLoaded(DataLoaded):
    """One failed-job entry in full (arguments redacted), for the detail view."""


class BulkTargetsSelected(ScreenMessage):
    """The exact entries a bulk action would touch, counted before the operator confirms."""

    def __init__(self, action: str, ids: list[int], query: Any = None) -> None:
        super().__init__()
        self.action = action
        self.ids = ids
        self.query = query


class JobsRetried(ScreenMessage):
    """Entries were re-enqueued (`retried`), some perhaps skipped with a reason."""

    def __init__(self, retried: list[tuple[int, str]], skipped: list[tuple[int, str]]) -> None:
        super().__init__()
        self.retried = retried
        self.skipped = skipped


class JobsDiscarded(ScreenMessage):
    """Entries were closed without running again."""

    def __init__(self, count: int, requested: int) -> None:
        super().__init__()
        self.count = count
        self.requested = requested


class InventoryLoaded(DataLoaded):
    """Low-stock products and the recent inventory activity."""


class InventoryReconciled(ScreenMessage):
    """A reconciliation finished; `summary` is one line for the operator."""

    def __init__(self, summary: str) -> None:
        super().__init__()
        self.summary = summary


class BroadcastsLoaded(DataLoaded):
    """Past broadcasts with their figures, the followed one, and the composer's reach."""


class DraftOpened(ScreenMessage):
    """A draft was read for the composer (None: there is none)."""

    def __init__(self, draft: Any) -> None:
        super().__init__()
        self.draft = draft


class DraftSaved(ScreenMessage):
    """The composer's content was saved as draft `broadcast_id`."""

    def __init__(self, broadcast_id: int, quiet: bool = False) -> None:
        super().__init__()
        self.broadcast_id = broadcast_id
        self.quiet = quiet


class AdminCopySent(ScreenMessage):
    """A test copy of the composer's broadcast was queued to the admin."""

    def __init__(self, row_id: int, to: str) -> None:
        super().__init__()
        self.row_id = row_id
        self.to = to


class SendPrepared(ScreenMessage):
    """The draft is saved and its audience counted: what the confirm dialog shows."""

    def __init__(self, draft_id: int, count: int, audience: str, subject: str) -> None:
        super().__init__()
        self.draft_id = draft_id
        self.count = count
        self.audience = audience
        self.subject = subject


class BroadcastSubmitted(ScreenMessage):
    """A broadcast was submitted (created=False: it already had been; nothing new sent)."""

    def __init__(self, broadcast_id: int, created: bool, total: int) -> None:
        super().__init__()
        self.broadcast_id = broadcast_id
        self.created = created
        self.total = total


class BroadcastChanged(ScreenMessage):
    """A broadcast was paused, resumed or cancelled."""

    def __init__(self, broadcast_id: int, status: str) -> None:
        super().__init__()
        self.broadcast_id = broadcast_id
        self.status = status


class OrdersLoaded(DataLoaded):
    """Order summaries matching the screen's filter."""


class OrderLoaded(DataLoaded):
    """One order with its lines, payment, emails, webhook events and activity."""


class OrderStatusChanged(ScreenMessage):
    """An operator's status change was applied (or found already in place)."""

    def __init__(self, summary: str) -> None:
        super().__init__()
        self.summary = summary


class WebhooksLoaded(DataLoaded):
    """Stored webhook events matching the screen's filter."""


class WebhookLoaded(DataLoaded):
    """One stored webhook event with its payload."""


class WebhookReplayed(ScreenMessage):
    """A failed, flagged or ignored event was put back for processing."""

    def __init__(self, row_id: int) -> None:
        super().__init__()
        self.row_id = row_id


class TextsLoaded(DataLoaded):
    """Recent SMS/WhatsApp messages (summaries) matching the screen's filter."""


class TextActed(ScreenMessage):
    """An operator's action on a message finished: `what` says what it did, in one line."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what


class StockAdjusted(ScreenMessage):
    """An operator's adjustment was applied; `summary` says what changed."""

    def __init__(self, summary: str) -> None:
        super().__init__()
        self.summary = summary


class LowStockAlertSent(ScreenMessage):
    """`A` on Inventory ran the low-stock alert; `summary` says what happened."""

    def __init__(self, summary: str) -> None:
        super().__init__()
        self.summary = summary


class ActivityLoaded(DataLoaded):
    """Audit-trail entries matching the Activity screen's filter."""
