"""5 Broadcasts: compose (subject, audience with its live count, Markdown body and a live
preview), send a test to the admin, send (confirmed with the exact count), then follow the
progress; past broadcasts with their figures; pause / resume / cancel. Drafts are saved (^s,
and on leaving the screen); the newest draft is back in the composer next time.

A little over 400 lines: the composer, the progress line and the list of past broadcasts are
one screen (5) whose parts share the draft and the running broadcast."""

from __future__ import annotations

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.suggester import SuggestFromList
from textual.timer import Timer
from textual.widgets import DataTable, Input, Markdown, ProgressBar, Static, TextArea

from kolaq_console.broadcasts import lifecycle
from kolaq_console.broadcasts.audience import NAMES
from kolaq_console.broadcasts.progress import duration
from kolaq_console.db import session_scope
from kolaq_console.errors import UserError
from kolaq_console.models import Broadcast
from kolaq_console.ui import broadcast_data
from kolaq_console.ui.dialogs.confirm import ConfirmDialog
from kolaq_console.ui.format import clip, one_line, when
from kolaq_console.ui.messages import (
    AdminCopySent,
    BroadcastChanged,
    BroadcastsLoaded,
    BroadcastSubmitted,
    DraftOpened,
    DraftSaved,
    SendPrepared,
)
from kolaq_console.ui.screens.base import POLL, LiveScreen
from kolaq_console.ui.screens.list_screen import TABLE_KEYS, TableActions
from kolaq_console.ui.widgets.record_table import Col, RecordTable

COLUMNS = (
    Col("#", 4, right=True), Col("status", 9), Col("audience", 11, hide_below=90),
    Col("sent", 6, right=True), Col("failed", 6, right=True, hide_below=70),
    Col("unsent", 7, right=True, hide_below=100), Col("total", 6, right=True),
    Col("subject", 14, flex=1), Col("started", 11, hide_below=110),
)
PREVIEW_DELAY = 0.25  # seconds of quiet typing before the preview is rendered again
STATUS_COLOURS = {"sending": "$warning", "paused": "$warning", "done": "$success",
                  "cancelled": "$text-muted", "draft": "$text-muted"}


def progress_line(p) -> str:
    """`#12 sending — 120/250 sent · 1 failed · 2 skipped · 1.9/s · ETA 1m05s`"""
    if p is None:
        return "[dim]No broadcast running. ^n composes one above; ^g sends it.[/]"
    if p.status in ("done", "cancelled"):  # over: how long it took, not a rate
        took = (p.finished_at - p.started_at).total_seconds() \
            if p.finished_at and p.started_at else None
        rate = "took ?" if took is None else f"took {duration(took)}"
    elif p.status == "draft":
        rate = "not sent"
    else:
        rate = "rate ?" if p.rate is None else f"{p.rate:.1f}/s"
    eta = "" if p.eta_seconds is None else f" · ETA {duration(p.eta_seconds)}"
    colour = STATUS_COLOURS.get(p.status, "")
    extra = f" · {p.cancelled} cancelled" if p.cancelled else ""
    return (f"[b]#{p.id}[/] [{colour}]{p.status}[/] — [b]{p.sent}[/]/{p.total} sent · "
            f"{p.failed} failed · {p.skipped} skipped{extra} · {rate}{eta}")


class BroadcastsScreen(TableActions, LiveScreen):
    MODE = "broadcast"
    TITLE_TEXT = "Broadcasts"
    # The list, not the subject, has the focus on arrival: digits typed there change screens
    # (in the subject they were typed into it); ^n or Tab goes to the composer.
    AUTO_FOCUS = "RecordTable"
    WRITE_ACTIONS = frozenset({"save", "test_send", "send", "pause", "resume", "cancel"})
    BINDINGS = [
        Binding("ctrl+s", "save", "Save draft"),
        Binding("ctrl+t", "test_send", "Test to admin"),
        Binding("ctrl+g", "send", "Send…"),
        Binding("ctrl+n", "new", "New"),
        Binding("P", "pause", "Pause"),
        Binding("R", "resume", "Resume"),
        Binding("C", "cancel", "Cancel"),
        Binding("enter", "open", "Open", show=False),
        Binding("escape", "back", "Back", show=False),
        *TABLE_KEYS,  # o/O sort, y/Y copy (while the list has the focus)
    ]

    def __init__(self) -> None:
        super().__init__()
        self.draft_id: int | None = None
        self.dirty = False
        self.chosen: int | None = None  # the broadcast the progress line follows
        # A broadcast just sent: the list's cursor goes to it once it is listed, so P/R/C act
        # on the one being followed (the cursor stayed on the row it was on before).
        self._cursor_to: int | None = None
        self.rows: dict[int, object] = {}
        self._preview_timer: Timer | None = None
        self._skus_loaded = False

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome_top()
        with Horizontal(id="bc-top"):
            with Vertical(id="bc-editor", classes="panel") as editor:
                editor.border_title = "Compose"
                with Horizontal(classes="bc-field"):
                    yield Static("Subject ", classes="bc-label")
                    yield Input(id="bc-subject", placeholder="one line", compact=True,
                                max_length=200)
                with Horizontal(classes="bc-field"):
                    yield Static("Audience", classes="bc-label")
                    yield Input("subscribers", id="bc-audience", compact=True,
                                placeholder=" · ".join(NAMES))
                yield Static(id="bc-reach", classes="caption")
                yield TextArea(id="bc-body", soft_wrap=True, tab_behavior="focus",
                               compact=True, placeholder="The body, in Markdown")
            with Vertical(id="bc-preview-box", classes="panel") as box:
                box.border_title = "Preview"
                yield Markdown(id="bc-preview")
        with Horizontal(id="bc-progress-row"):
            yield Static(id="bc-progress")
            yield ProgressBar(id="bc-bar", show_eta=False, show_percentage=False)
        yield RecordTable(id="broadcasts")
        yield from self.compose_chrome_bottom()

    # The footer shows what the focused part takes: the composer's draft and test keys while
    # composing, the list's pause/resume/cancel on the list (at 80 columns both did not fit,
    # and `? Help` and `q Quit` fell off). `?` lists them all.
    COMPOSER_ACTIONS = frozenset({"save", "test_send"})
    LIST_ACTIONS = frozenset({"pause", "resume", "cancel"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        allowed = super().check_action(action, parameters)
        on_list = isinstance(self.focused, RecordTable)
        if action in (self.COMPOSER_ACTIONS if on_list else self.LIST_ACTIONS):
            return False
        return allowed

    @on(events.DescendantFocus)
    def _focus_moved(self) -> None:
        self.refresh_bindings()

    def on_mount(self) -> None:
        self.query_one(RecordTable).set_columns(*COLUMNS)
        for editor in self.query("#bc-editor Input, #bc-body"):
            editor.cursor_blink = False  # a steady cursor: what the screen shows is stable
        if self.console.read_only:
            for widget in self.query("#bc-editor Input, #bc-body"):
                widget.disabled = True
        self.open_latest_draft()

    # --- reading -----------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL, description="Broadcasts")
    def load(self) -> None:
        audience, chosen = self.audience_text, self.chosen
        app = self.console
        view = broadcast_data.load(app.engine, app.settings, audience=audience, chosen=chosen,
                                   now=app.clock(), with_skus=not self._skus_loaded)
        self.deliver(BroadcastsLoaded(view, (audience, chosen)))

    @property
    def audience_text(self) -> str:
        return self.query_one("#bc-audience", Input).value

    @on(BroadcastsLoaded)
    def show(self, event: BroadcastsLoaded) -> None:
        if not self.accepts():
            return
        view: broadcast_data.BroadcastsView = event.data
        if view.skus:
            self._skus_loaded = True
            self.query_one("#bc-audience", Input).suggester = SuggestFromList(
                [*NAMES[:3], *(f"sku:{s}" for s in view.skus)], case_sensitive=False)
        zone = self.console.settings.shop.zone
        self.rows = {p.id: p for p in view.broadcasts}
        with self.app.batch_update():
            if event.query[0] == self.audience_text:
                self._show_reach(view.reach)
            self.query_one("#bc-progress", Static).update(progress_line(view.followed))
            bar = self.query_one("#bc-bar", ProgressBar)
            followed = view.followed
            bar.display = followed is not None
            if followed is not None:
                bar.update(total=max(followed.total, 1), progress=followed.done)
            table = self.query_one(RecordTable)
            table.replace_rows(
                (p.id, (str(p.id), _status(p.status), p.audience, *_figures(p), p.subject,
                        when(p.started_at, zone)))
                for p in view.broadcasts
            )
            if self._cursor_to is not None and table.move_to(self._cursor_to):
                self._cursor_to = None

    def _show_reach(self, reach: broadcast_data.Reach) -> None:
        if reach.problem:
            text = f"[$warning]{one_line(reach.problem)}[/]"
        else:
            text = f"[b]{reach.count:,}[/] recipients · opt-outs excluded"
        self.query_one("#bc-reach", Static).update(text)

    # --- the composer ------------------------------------------------------------------------

    @work(thread=True, exit_on_error=False, group="draft", description="Open draft")
    def open_latest_draft(self) -> None:
        self.post_message(DraftOpened(broadcast_data.latest_draft(self.console.engine)))

    @work(thread=True, exit_on_error=False, group="draft", description="Open draft")
    def open_draft(self, broadcast_id: int) -> None:
        with session_scope(self.console.engine) as session:
            draft = session.get(Broadcast, broadcast_id)
            if draft is not None:
                session.expunge(draft)
        self.post_message(DraftOpened(draft))

    @on(DraftOpened)
    def _draft_opened(self, event: DraftOpened) -> None:
        draft = event.draft
        if draft is None:
            return
        self.draft_id = draft.id
        with self.prevent(Input.Changed, TextArea.Changed):  # filled in, not edited
            self.query_one("#bc-subject", Input).value = draft.subject
            self.query_one("#bc-audience", Input).value = draft.audience or "subscribers"
            self.query_one("#bc-body", TextArea).text = draft.body_markdown
        self.dirty = False
        self._render_preview()
        self.reload()

    @on(Input.Changed, "#bc-subject")
    @on(TextArea.Changed, "#bc-body")
    def _content_changed(self) -> None:
        self.dirty = True
        if self._preview_timer is not None:
            self._preview_timer.stop()
        self._preview_timer = self.set_timer(PREVIEW_DELAY, self._render_preview)

    @on(Input.Changed, "#bc-audience")
    def _audience_changed(self) -> None:
        self.dirty = True
        self.reload()  # counts the new audience

    def _render_preview(self) -> None:
        subject = self.query_one("#bc-subject", Input).value.strip()
        body = self.query_one("#bc-body", TextArea).text
        heading = f"**Subject:** {subject}\n\n---\n\n" if subject else ""
        self.query_one("#bc-preview", Markdown).update(
            heading + (body or "*The body appears here as you type.*")
            + "\n\n---\n\n*Unsubscribe* (one click, no login) — in every copy.")

    def _content(self) -> tuple[str, str, str]:
        return (self.query_one("#bc-subject", Input).value,
                self.query_one("#bc-body", TextArea).text, self.audience_text.strip())

    def action_save(self) -> None:
        if not self.refused("saving a draft"):
            self.save_draft(*self._content(), quiet=False)

    @work(thread=True, exit_on_error=False, group="draft", description="Save draft")
    def save_draft(self, subject: str, body: str, audience: str, quiet: bool) -> None:
        app = self.console
        with session_scope(app.engine) as session:
            draft = lifecycle.save_draft(session, subject=subject, body=body, audience=audience,
                                         actor=app.operator, broadcast_id=self.draft_id)
        self.post_message(DraftSaved(draft.id or 0, quiet))

    @on(DraftSaved)
    def _draft_saved(self, event: DraftSaved) -> None:
        self.draft_id = event.broadcast_id
        self.dirty = False
        if not event.quiet:
            self.notify(f"Draft #{event.broadcast_id} saved")
        self.reload()

    def on_screen_suspend(self) -> None:
        super().on_screen_suspend()
        subject, body, audience = self._content()
        if self.dirty and not self.console.read_only and (subject.strip() or body.strip()):
            self.save_draft(subject, body, audience, quiet=True)

    def action_new(self) -> None:
        if self.dirty and not self.console.read_only:
            self.save_draft(*self._content(), quiet=False)
        self.draft_id = None
        # Emptied, not edited: their Changed events would mark the new composer dirty, and the
        # next ^n (or leaving) saved an empty draft into the list.
        with self.prevent(Input.Changed, TextArea.Changed):
            self.query_one("#bc-subject", Input).value = ""
            self.query_one("#bc-body", TextArea).text = ""
        self.dirty = False
        self._render_preview()
        self.query_one("#bc-subject", Input).focus()

    def action_test_send(self) -> None:
        if self.refused("a test send"):
            return
        subject, body, _ = self._content()
        self.send_test(subject, body)

    @work(thread=True, exit_on_error=False, group="send", description="Test to admin")
    def send_test(self, subject: str, body: str) -> None:
        app = self.console
        with session_scope(app.engine) as session:
            row = lifecycle.send_test(session, app.settings, subject=subject, body=body,
                                      actor=app.operator)
            self.post_message(AdminCopySent(row.id or 0, row.to_address))

    @on(AdminCopySent)
    def _admin_copy_sent(self, event: AdminCopySent) -> None:
        self.notify(f"Test copy queued to {event.to} (email #{event.row_id})", markup=False)

    # --- sending -----------------------------------------------------------------------------

    def action_send(self) -> None:
        if self.refused("sending"):
            return
        self.prepare_send(*self._content())

    @work(thread=True, exit_on_error=False, group="send", description="Send")
    def prepare_send(self, subject: str, body: str, audience: str) -> None:
        """Save the draft and count its audience now: the count the dialog shows is the count
        submitted (unless someone unsubscribes in between)."""
        app = self.console
        with session_scope(app.engine) as session:
            lifecycle.check(app.settings, subject, body, audience)
            draft = lifecycle.save_draft(session, subject=subject, body=body, audience=audience,
                                         actor=app.operator, broadcast_id=self.draft_id)
            reach = broadcast_data.reach(session, app.settings, audience)
        if reach.problem:
            raise UserError(reach.problem)
        self.post_message(SendPrepared(draft.id or 0, reach.count or 0, reach.audience,
                                       subject.strip()))

    @on(SendPrepared)
    def _confirm_send(self, event: SendPrepared) -> None:
        self.draft_id, self.dirty = event.draft_id, False
        if event.count == 0:
            self.notify(f"Audience {event.audience} has no one to send to", severity="warning")
            return
        dialog = ConfirmDialog(
            "Send this broadcast?",
            f"“{clip(event.subject, 60)}”\nto {event.count:,} recipients ({event.audience}, "
            "net of unsubscribed and suppressed addresses).\n\nEvery copy carries a one-click "
            "unsubscribe link. Pause (P) or cancel (C) at any time.",
            confirm=f"Send to {event.count:,}",
        )
        self.app.push_screen(dialog, lambda ok: self.submit(event.draft_id) if ok else None)

    @work(thread=True, exit_on_error=False, group="send", description="Send")
    def submit(self, draft_id: int) -> None:
        app = self.console
        with session_scope(app.engine) as session:
            result = lifecycle.submit(session, app.settings, actor=app.operator,
                                      broadcast_id=draft_id)
            b = result.broadcast
            self.post_message(BroadcastSubmitted(b.id or 0, result.created, b.total))

    @on(BroadcastSubmitted)
    def _submitted(self, event: BroadcastSubmitted) -> None:
        self.chosen = self._cursor_to = event.broadcast_id
        if event.created:
            self.notify(f"Broadcast #{event.broadcast_id} is sending to {event.total:,} "
                        "recipients")
            self.action_new()
            # The list has the focus while it sends: P/C act on it, digits change screens.
            self.query_one(RecordTable).focus()
        else:
            self.notify(f"Already sent as broadcast #{event.broadcast_id}; nothing new was "
                        "sent", severity="warning")
        self.reload()

    # --- pause, resume, cancel ---------------------------------------------------------------

    def _target(self) -> int | None:
        table = self.query_one(RecordTable)
        return table.current if table.has_focus and table.current is not None else (
            self.chosen or table.current)

    def _change(self, action: str, question: str, detail: str, confirm: str = "",
                back: str = "Cancel") -> None:
        if self.refused(action):
            return
        target = self._target()
        if target is None:
            self.notify("No broadcast selected", severity="warning")
            return
        p = self.rows.get(target)
        title = f"#{target} “{clip(getattr(p, 'subject', ''), 50)}”"
        dialog = ConfirmDialog(question, f"{title}\n\n{detail}",
                               confirm=confirm or action.capitalize(), back=back)
        self.app.push_screen(dialog, lambda ok: self.change(action, target) if ok else None)

    def action_pause(self) -> None:
        self._change("pause", "Pause this broadcast?",
                     "No new batch is formed; copies not yet handed to the provider wait.")

    def action_resume(self) -> None:
        self._change("resume", "Resume this broadcast?", "It goes on where it stopped.")

    def action_cancel(self) -> None:
        self._change("cancel", "Cancel this broadcast?",
                     "Nothing more is sent. This cannot be undone.",
                     confirm="Cancel broadcast", back="Keep it")

    @work(thread=True, exit_on_error=False, group="change", description="Broadcast")
    def change(self, action: str, broadcast_id: int) -> None:
        app = self.console
        with session_scope(app.engine) as session:
            b = getattr(lifecycle, action)(session, broadcast_id, actor=app.operator)
            self.post_message(BroadcastChanged(broadcast_id, b.status))

    @on(BroadcastChanged)
    def _changed(self, event: BroadcastChanged) -> None:
        self.chosen = event.broadcast_id
        self.notify(f"Broadcast #{event.broadcast_id} {event.status}")
        self.reload()

    # --- navigation --------------------------------------------------------------------------

    def action_open(self) -> None:
        """Enter on a past broadcast: follow it; on a draft: open it in the composer."""
        target = self.query_one(RecordTable).current
        if target is None:
            return
        p = self.rows.get(target)
        if getattr(p, "status", None) == "draft":
            if self.dirty and not self.console.read_only:
                self.save_draft(*self._content(), quiet=True)
            self.open_draft(target)
        else:
            self.chosen = target
            self.reload()

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_open()

    def list_table(self) -> RecordTable:
        return self.query_one(RecordTable)

    async def action_back(self) -> None:
        table = self.query_one(RecordTable)
        if not table.has_focus:
            table.focus()
        else:
            await self.app.run_action("go('overview')")


def _figures(p) -> tuple[str, str, str, str]:
    """sent, failed, unsent (skipped or cancelled: never handed to the provider; the
    progress line tells the two apart), total; a draft has none yet."""
    if p.status == "draft":
        return ("-", "-", "-", "-")
    return (str(p.sent), str(p.failed), str(p.skipped + p.cancelled), str(p.total))


def _status(status: str):
    from textual.content import Content

    return Content.from_markup(f"[{STATUS_COLOURS.get(status, '')}]{status}[/]")
