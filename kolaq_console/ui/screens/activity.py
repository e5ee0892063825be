"""8 Activity: the audit trail (who did what to which record), filterable by actor, action
and subject with the list grammar; Enter follows the record an entry names."""

from __future__ import annotations

from sqlmodel import Session
from textual import on, work

from kolaq_console.activity import ActivityEntry, list_activity
from kolaq_console.ui import links
from kolaq_console.ui.filtering import Filter, Grammar
from kolaq_console.ui.format import when
from kolaq_console.ui.messages import ActivityLoaded
from kolaq_console.ui.screens.base import POLL
from kolaq_console.ui.screens.list_screen import ListScreen
from kolaq_console.ui.widgets.record_table import Col

LIMIT = 200
COLUMNS = (
    Col("when", 11, priority=0), Col("by", 8, flex=1, priority=1),
    Col("action", 16, flex=1, priority=0), Col("subject", 14, flex=1, priority=0),
    Col("details", 16, flex=3, priority=2),
)
GRAMMAR = Grammar({"actor": None, "action": None, "subject": None})


def load_activity(session: Session, flt: Filter) -> list[ActivityEntry]:
    entries = list_activity(session, actor=flt.get("actor"), action=flt.get("action"),
                            subject=flt.get("subject"), limit=LIMIT)
    return [e for e in entries if flt.matches(e.actor, e.action, e.subject, e.summary())]


def follow(app, entry: ActivityEntry) -> str | None:
    """Open the record `entry` names through ui/links.py; what went wrong, or None."""
    record = entry.record
    if record is None:
        return f"Entry #{entry.id} names no single record ({entry.subject})"
    kind, key = record
    links.open_kind(app, kind, int(key) if kind in ("email", "job") and key.isdigit() else key)
    return None


class ActivityScreen(ListScreen):
    MODE = "activity"
    TITLE_TEXT = "Activity"
    COLUMNS = COLUMNS
    GRAMMAR = GRAMMAR
    TABLE_ID = "activity-log"
    PLACEHOLDER = "actor:ada action:inventory subject:KB-10004 or words"
    EMPTY = ("No activity recorded yet. Operator actions (adjustments, retries, status "
             "changes), reconciliations and alerts are written here as they happen.")

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[int, ActivityEntry] = {}

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL, description="Activity")
    def load(self) -> None:
        flt = self.filter
        with Session(self.console.engine) as session:
            self.deliver(ActivityLoaded(load_activity(session, flt), flt))

    @on(ActivityLoaded)
    def show_activity(self, event: ActivityLoaded) -> None:
        if not self.accepts() or event.query != self.filter:
            return
        zone = self.console.settings.shop.zone
        entries: list[ActivityEntry] = event.data
        self.entries = {e.id: e for e in entries}
        self.show_rows((e.id, (when(e.at, zone), e.actor, e.action, e.subject, e.summary()))
                       for e in entries)

    def caption(self) -> str:
        more = " (latest shown)" if len(self.entries) >= LIMIT else ""
        return (f"[b]{len(self.entries)}[/] entries{more} · {self.filter.describe()}"
                "   [dim]/ filter · Enter opens the record[/]")

    def open_record(self, key: object) -> None:
        entry = self.entries.get(key)  # type: ignore[call-overload]
        if entry is not None and (problem := follow(self.app, entry)):
            self.notify(problem, severity="warning", markup=False)
