"""The dashboard: the sessions on one side, the selected one's live screen on the other."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, ScrollableContainer
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Input, Static

from ...display import printable
from ...errors import ClauderonError
from .. import model
from ..messages import DaemonBack, DaemonLost, SessionChanged, SessionSelected
from ..widgets.audit_view import AuditView
from ..widgets.console_view import ConsoleView
from ..widgets.diff_view import DiffView
from ..widgets.session_list import SessionList

# The dialogs are imported when first opened: the first paint does not wait for them.
if TYPE_CHECKING:
    from ..app import ClauderonApp

WIDE = 140  # at this width and more the detail pane sits beside the list
CONSOLE_DELAY = 0.15  # let the cursor settle before connecting to a console
RECONNECT = (0.5, 1, 2, 5)


class MainScreen(Screen[None]):
    BINDINGS = [  # noqa: RUF012 (Textual's declaration style)
        Binding("enter", "attach", "Attach"),
        Binding("s", "send", "Send"),
        Binding("n", "new", "New"),
        Binding("x", "stop_start", "Stop"),
        Binding("a", "archive", "Archive"),
        Binding("D", "delete", "Delete"),
        Binding("m", "merge", "Merge"),
        Binding("p", "pull_request", "PR"),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("A", "toggle_archived", "Show archived", show=False),
        Binding("c", "show('console')", "Screen", show=False),
        Binding("l", "show('audit')", "Audit", show=False),
        Binding("d", "show('diff')", "Diff", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._pending: set[str] = set()  # sessions to fetch again (events coalesced)
        self._console_timer: Any = None
        self._console_for: str | None = None  # whose screen the detail pane shows

    @property
    def capp(self) -> ClauderonApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="filter: words in name, repository, state, status (Escape clears)",
            compact=True,
            id="filter",
        )
        with Container(id="body"):
            with Container(id="list-pane"):
                yield SessionList(now=self.capp.now, id="sessions")
                yield Static("No sessions yet. Press n to start one.", id="empty", classes="hint")
            with Container(id="detail-pane"), ContentSwitcher(initial="console", id="detail"):
                with ScrollableContainer(id="console"):
                    yield ConsoleView(id="screen")
                with ScrollableContainer(id="audit"):
                    yield AuditView(id="audit-log")
                with ScrollableContainer(id="diff"):
                    yield DiffView(id="diff-text")
        yield Static("", id="banner")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter").display = False
        self.query_one("#banner").display = False
        self._layout(self.app.size.width)
        self.sessions.set_sessions(self.capp.initial_sessions)
        self.sessions.focus()
        self.follow_events()

    def on_resize(self) -> None:
        self._layout(self.app.size.width)

    def _layout(self, width: int) -> None:
        self.set_class(width >= WIDE, "wide")

    @property
    def sessions(self) -> SessionList:
        return self.query_one(SessionList)

    @property
    def detail_mode(self) -> str:
        return self.query_one(ContentSwitcher).current or "console"

    # --- following the daemon --------------------------------------------------------

    @work(exclusive=True, group="events")
    async def follow_events(self) -> None:
        attempt = 0
        lost = False
        while True:
            try:
                async for event in self.capp.daemon.events():
                    if event.get("type") == "connected":
                        attempt = 0
                        if lost:
                            lost = False
                            self.post_message(DaemonBack())
                        continue
                    if event.get("session"):
                        self._refetch(event["session"])
            except (ClauderonError, OSError) as exc:
                reason = getattr(exc, "message", str(exc))
                lost = True
                self.post_message(DaemonLost(reason))
            await asyncio.sleep(RECONNECT[min(attempt, len(RECONNECT) - 1)])
            attempt += 1

    def _refetch(self, name: str) -> None:
        """Ask for the session's view once, however many events arrive together."""
        if not self._pending:
            self.set_timer(0.05, self._fetch_pending)
        self._pending.add(name)

    @work(group="fetch")
    async def _fetch_pending(self) -> None:
        names, self._pending = self._pending, set()
        for name in names:
            try:
                session = await self.capp.daemon.session(name)
            except ClauderonError:
                continue
            self.post_message(SessionChanged(name, session))

    @work(exclusive=True, group="reload")
    async def reload(self) -> None:
        try:
            sessions = await self.capp.daemon.sessions(archived=True)
        except ClauderonError as exc:
            self.notify(exc.message, severity="error")
            return
        before = dict(self.sessions.sessions)
        self.sessions.set_sessions(sessions)
        for session in sessions:
            if model.became_waiting(before.get(session["name"]), session) and before:
                self._announce(session)

    def on_session_changed(self, message: SessionChanged) -> None:
        before = self.sessions.sessions.get(message.name)
        self.sessions.update_session(message.name, message.session)
        if message.session is not None and model.became_waiting(before, message.session):
            self._announce(message.session)
        if message.name == self._console_for and (
            message.session is None
            or model.is_running(message.session) != model.is_running(before or {})
        ):
            self._select(message.name, force=True)
        self._update_empty()

    def on_daemon_lost(self, message: DaemonLost) -> None:
        banner = self.query_one("#banner", Static)
        banner.update(f"Lost the daemon ({message.reason}); reconnecting…")
        banner.display = True

    def on_daemon_back(self, _: DaemonBack) -> None:
        self.query_one("#banner").display = False
        self.reload()

    def _announce(self, session: dict[str, Any]) -> None:
        """A session now waits for the user: a toast, the bell, a desktop notification."""
        what = "approval" if session["agent_status"] == "waiting_approval" else "input"
        text = f"{session['name']} is waiting for {what}"
        self.notify(text, title="clauderon", severity="warning", timeout=8)
        self.app.bell()
        notify_send = shutil.which("notify-send")
        if notify_send:
            self._desktop_notify(notify_send, text)

    @work(group="notify")
    async def _desktop_notify(self, program: str, text: str) -> None:
        with contextlib.suppress(OSError):
            proc = await asyncio.create_subprocess_exec(
                program,
                "clauderon",
                text,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)

    # --- the detail pane -------------------------------------------------------------

    def on_session_selected(self, message: SessionSelected) -> None:
        self._update_empty()
        if message.name != self._console_for:
            self._select(message.name)

    def _update_empty(self) -> None:
        self.query_one("#empty").display = not self.sessions.shown

    def _select(self, name: str | None, force: bool = False) -> None:
        if name == self._console_for and not force:
            return
        self._console_for = name
        if self._console_timer is not None:
            self._console_timer.stop()
        pane = self.query_one("#detail-pane")
        pane.border_title = f"{name} · {self.detail_mode}" if name else ""
        # Why the agent is in error when it did not say so itself (it cannot reach its model).
        reason = (
            (self.sessions.sessions.get(name) or {}).get("agent_status_reason") if name else None
        )
        pane.border_subtitle = printable(reason) if reason else ""
        view = self.query_one(ConsoleView)
        if name is None:
            self.workers.cancel_group(self, "console")
            view.show_message("")
            return
        if self.detail_mode == "audit":
            self.load_audit(name)
            return
        if self.detail_mode == "diff":
            self.load_diff(name)
            return
        session = self.sessions.sessions.get(name) or {}
        if not model.is_running(session):
            self.workers.cancel_group(self, "console")
            view.show_message(
                f"{name} is {model.state_label(session)}: no live screen. "
                + ("a unarchives it." if model.is_archived(session) else "x starts it.")
            )
            return
        view.show_message("connecting…")
        self._console_timer = self.set_timer(CONSOLE_DELAY, lambda: self.watch_console(name))

    @work(exclusive=True, group="console")
    async def watch_console(self, name: str) -> None:
        view = self.query_one(ConsoleView)
        view.border_subtitle = ""
        try:
            async for message in self.capp.daemon.console(name):
                view.feed(message)
                if message.get("type") in ("exit", "error"):
                    break
        except ClauderonError as exc:
            view.show_message(exc.message)

    @work(exclusive=True, group="console")
    async def load_audit(self, name: str) -> None:
        view = self.query_one(AuditView)
        try:
            view.show(await self.capp.daemon.audit(name, 200))
        except ClauderonError as exc:
            view.update(exc.message)

    @work(exclusive=True, group="console")
    async def load_diff(self, name: str) -> None:
        view = self.query_one(DiffView)
        view.update("reading the changes…")
        try:
            view.show(*await self.capp.daemon.diff(name))
        except ClauderonError as exc:
            view.update(printable(exc.message))

    def action_show(self, mode: str) -> None:
        self.query_one(ContentSwitcher).current = mode
        self._select(self._console_for, force=True)

    # --- filter and archived -------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.sessions.filter_text = event.value
        self.sessions.rebuild()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.sessions.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.display:
            box.value = ""
            box.display = False
            self.sessions.focus()

    def action_toggle_archived(self) -> None:
        self.sessions.show_archived = not self.sessions.show_archived
        self.sessions.rebuild()
        self._update_empty()
        self.notify(
            "Showing archived sessions" if self.sessions.show_archived else "Archived hidden",
            timeout=2,
        )

    # --- actions on the selected session ---------------------------------------------------

    def _selected(self) -> dict[str, Any] | None:
        session = self.sessions.selected
        if session is None:
            self.notify("No session selected", severity="warning", timeout=3)
        return session

    async def _do(self, work: Awaitable[Any], done: str | None = None) -> Any:
        try:
            result = await work
        except ClauderonError as exc:
            self.notify(exc.message, severity="error", timeout=10)
            return None
        if done:
            self.notify(done, timeout=4)
        return result

    def _progress(self, event: dict[str, Any]) -> None:
        self.sub_title = event.get("message", "")

    def action_attach(self) -> None:
        session = self._selected()
        if session is None:
            return
        if model.is_archived(session):
            self.notify(f"{session['name']} is archived: a unarchives it", severity="warning")
            return
        attach = getattr(self.capp.daemon, "attach", None)
        if attach is None:
            self.notify("attach needs the daemon's terminal", severity="error")
            return
        try:
            with self.app.suspend():
                outcome = attach(session["name"])
        except ClauderonError as exc:
            self.notify(exc.message, severity="error", timeout=10)
            return
        except Exception as exc:  # e.g. no terminal to step aside to (a headless run)
            self.notify(f"cannot attach here: {exc}", severity="error", timeout=10)
            return
        self.notify(outcome, timeout=4)
        self.reload()
        self._select(session["name"], force=True)

    def action_send(self) -> None:
        from .send import SendScreen

        session = self._selected()
        if session is None:
            return
        name = session["name"]

        def sent(text: str | None) -> None:
            if text:
                self.run_worker(
                    self._do(
                        self.capp.daemon.call(
                            "POST", f"/api/sessions/{name}/send", json={"text": text}
                        ),
                        f"Sent to {name}",
                    ),
                    group="action",
                )

        self.app.push_screen(SendScreen(name), sent)

    def action_new(self) -> None:
        from .new_session import NewSessionScreen

        def created(session: dict[str, Any] | None) -> None:
            if session:
                self.sessions.update_session(session["name"], session)
                self._update_empty()
                if session["name"] in self.sessions.shown:
                    self.sessions.move_cursor(row=self.sessions.shown.index(session["name"]))
                self.notify(f"Session {session['name']} is running", timeout=5)

        self.app.push_screen(NewSessionScreen(self.capp.default_repo), created)

    def action_stop_start(self) -> None:
        session = self._selected()
        if session is None:
            return
        name = session["name"]
        if model.is_archived(session):
            self.notify(f"{name} is archived: a unarchives it", severity="warning")
        elif model.is_running(session):
            self.notify(f"Stopping {name}…", timeout=3)
            self.run_worker(
                self._do(
                    self.capp.daemon.call("POST", f"/api/sessions/{name}/stop"), f"Stopped {name}"
                ),
                group="action",
            )
        else:
            self._long(name, "start", f"Starting {name}…", f"Started {name}")

    def _long(self, name: str, verb: str, doing: str, done: str) -> None:
        self.notify(doing, timeout=3)
        self.run_worker(
            self._do(
                self.capp.daemon.run_long(f"/api/sessions/{name}/{verb}", None, self._progress),
                done,
            ),
            group="action",
        )

    def action_archive(self) -> None:
        session = self._selected()
        if session is None:
            return
        name = session["name"]
        if model.is_archived(session):
            self._long(name, "unarchive", f"Unarchiving {name}…", f"{name} is running again")
        else:
            self.run_worker(
                self._do(
                    self.capp.daemon.call("POST", f"/api/sessions/{name}/archive"),
                    f"Archived {name}: container removed, worktree kept (A shows archived)",
                ),
                group="action",
            )

    def action_refresh(self) -> None:
        from .confirm import ConfirmScreen

        session = self._selected()
        if session is None:
            return
        name = session["name"]

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._long(name, "refresh", f"Refreshing {name}…", f"Refreshed {name}")

        self.app.push_screen(
            ConfirmScreen(
                f"Refresh {name}?",
                "Pulls its image and recreates its container from the record; the worktree "
                "stays and the agent continues its conversation.",
                "Refresh",
            ),
            confirmed,
        )

    def _confirmed_call(
        self, title: str, text: str, yes: str, path: str, body: dict[str, Any], done: Any
    ) -> None:
        """Ask, then POST `body` to `path`; `done(result)` says what happened."""
        from .confirm import ConfirmScreen

        async def call() -> None:
            result = await self._do(self.capp.daemon.call("POST", path, json=body))
            if result is not None:
                self.notify(printable(done(result)), timeout=10)
                self.reload()

        def confirmed(yes_pressed: bool | None) -> None:
            if yes_pressed:
                self.run_worker(call(), group="action")

        self.app.push_screen(ConfirmScreen(title, text, yes), confirmed)

    def action_merge(self) -> None:
        session = self._selected()
        if session is None:
            return
        name = session["name"]
        self._confirmed_call(
            f"Merge {name}?",
            "Lands its commits on the branch it was created from, in your repository, "
            "without touching your checkout behind your back (a clean checkout of that "
            "branch follows; one in the way is refused). On a conflict nothing changes.",
            "Merge",
            f"/api/sessions/{name}/merge",
            {"mode": "merge"},
            lambda r: (
                f"Merged {name} into {r.get('into')}"
                + (" (already there)" if r.get("already_merged") else "")
            ),
        )

    def action_pull_request(self) -> None:
        session = self._selected()
        if session is None:
            return
        name = session["name"]
        self._confirmed_call(
            f"Open a pull request for {name}?",
            "Pushes its branch with your own git setup, then opens a pull request on "
            "GitHub with the token from clauderon's credentials.",
            "Open pull request",
            f"/api/sessions/{name}/pr",
            {},
            lambda r: f"Pull request: {r.get('url')}",
        )

    def action_delete(self) -> None:
        from .delete import DeleteScreen

        session = self._selected()
        if session is not None:
            self.app.push_screen(DeleteScreen(session["name"]))
