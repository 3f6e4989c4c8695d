"""`n`: the new-session form. Progress while the daemon creates it; an error stays in the
form (the daemon has already undone every step, so nothing is left behind)."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, ProgressBar, Select, Static, TextArea

from ...errors import ClauderonError
from ..widgets.path_input import PathSuggester, is_directory

if TYPE_CHECKING:
    from ..app import ClauderonApp

AGENTS = [("Claude Code", "claude"), ("Codex", "codex")]


class NewSessionScreen(ModalScreen[dict[str, Any] | None]):
    BINDINGS = [  # noqa: RUF012
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "create", "Create"),
    ]

    def __init__(self, repo: str = "") -> None:
        super().__init__()
        self.repo = repo or os.getcwd()
        self.request_id: str | None = None

    def compose(self) -> ComposeResult:
        def field(label: str, widget: Widget) -> Horizontal:
            return Horizontal(Label(label, classes="field-label"), widget, classes="field")

        with Vertical(classes="dialog wide-dialog", id="new-dialog"):
            yield Label("New session", classes="dialog-title")
            with VerticalScroll(id="form"):
                yield field(
                    "Repository",
                    Input(self.repo, suggester=PathSuggester(), compact=True, id="repo"),
                )
                yield Label("Prompt (several lines welcome)", classes="hint")
                yield TextArea(id="prompt", soft_wrap=True, compact=True)
                yield field(
                    "Agent",
                    Select(AGENTS, value="claude", allow_blank=False, compact=True, id="agent"),
                )
                yield field(
                    "Image", Input(placeholder="clauderon-base:bookworm", compact=True, id="image")
                )
                yield field("CPU limit", Input(placeholder="e.g. 2", compact=True, id="cpu"))
                yield field("Memory limit", Input(placeholder="e.g. 8g", compact=True, id="memory"))
                yield field("Base branch", Input(placeholder="HEAD", compact=True, id="base"))
                yield field("Name", Input(placeholder="from the prompt", compact=True, id="name"))
            yield Static("", id="form-error", classes="error")
            yield ProgressBar(total=None, show_eta=False, id="progress")
            yield Static("", id="progress-text")
            with Horizontal(classes="buttons"):
                yield Button("Create", variant="primary", compact=True, id="create")
                yield Button("Cancel", compact=True, id="cancel")

    def on_mount(self) -> None:
        for widget_id in ("#form-error", "#progress", "#progress-text"):
            self.query_one(widget_id).display = False
        self.query_one("#prompt", TextArea).focus()

    def _value(self, widget_id: str) -> str | None:
        return self.query_one(widget_id, Input).value.strip() or None

    def body(self) -> dict[str, Any]:
        repo = self.query_one("#repo", Input).value.strip()
        return {
            "repo": os.path.abspath(os.path.expanduser(repo)) if repo else "",
            "prompt": self.query_one("#prompt", TextArea).text,
            "agent": self.query_one("#agent", Select).value,
            "image": self._value("#image"),
            "cpu_limit": self._value("#cpu"),
            "memory_limit": self._value("#memory"),
            "base_branch": self._value("#base"),
            "name": self._value("#name"),
        }

    def show_error(self, message: str) -> None:
        error = self.query_one("#form-error", Static)
        error.update(message)
        error.display = bool(message)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "create":
            self.action_create()
        else:
            self.action_cancel()

    def action_create(self) -> None:
        if self.request_id is not None:
            return
        body = self.body()
        if not is_directory(body["repo"]):
            self.show_error(f"No such directory: {body['repo'] or '(empty)'}")
            self.query_one("#repo").focus()
            return
        if not body["prompt"].strip():
            self.show_error("Say what the agent should do: the prompt is empty.")
            self.query_one("#prompt").focus()
            return
        self.show_error("")
        self.request_id = str(uuid.uuid4())
        self.create({**body, "request_id": self.request_id})

    def _creating(self, on: bool, text: str = "") -> None:
        self.query_one("#create", Button).disabled = on
        self.query_one("#form").disabled = on
        self.query_one("#progress").display = on
        self.query_one("#progress-text", Static).display = on
        self.query_one("#progress-text", Static).update(text)

    def _progress(self, event: dict[str, Any]) -> None:
        self.query_one("#progress-text", Static).update(event.get("message", ""))

    @work(exclusive=True, group="create")
    async def create(self, body: dict[str, Any]) -> None:
        app: ClauderonApp = self.app  # type: ignore[assignment]
        self._creating(True, "Creating…")
        try:
            session = await app.daemon.run_long("/api/sessions", body, self._progress)
        except ClauderonError as exc:
            self.request_id = None
            self._creating(False)
            if exc.code != "cancelled":
                self.show_error(exc.message)
            return
        self.dismiss(session)

    def action_cancel(self) -> None:
        if self.request_id is None:
            self.dismiss(None)
        else:
            self.cancel_creation(self.request_id)

    @work(exclusive=True, group="cancel")
    async def cancel_creation(self, request_id: str) -> None:
        app: ClauderonApp = self.app  # type: ignore[assignment]
        self.query_one("#progress-text", Static).update("Cancelling: undoing every step…")
        try:
            await app.daemon.call("POST", "/api/sessions/cancel", json={"request_id": request_id})
        except ClauderonError as exc:
            self.show_error(exc.message)
