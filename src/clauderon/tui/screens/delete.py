"""`D`: delete the selected session, saying first what would be lost."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from ...errors import ClauderonError

if TYPE_CHECKING:
    from ..app import ClauderonApp


class DeleteScreen(ModalScreen[dict[str, Any] | None]):
    """Asks; deletes without force; when the daemon refuses because work would be lost,
    shows what and offers to save it under refs/clauderon/<name>/ and delete."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]  # noqa: RUF012

    def __init__(self, name: str) -> None:
        super().__init__()
        self.session_name = name
        self.force = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Delete {self.session_name}?", classes="dialog-title")
            yield Static(
                "Its container, worktree and branch go. Unsaved work is never deleted "
                "silently: the daemon refuses, and says what it would lose.",
                id="what",
            )
            with Horizontal(classes="buttons"):
                yield Button("Delete", variant="error", compact=True, id="delete")
                yield Button("Cancel", compact=True, id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        elif event.button.id == "delete":
            event.button.disabled = True
            self.delete()

    @work(exclusive=True)
    async def delete(self) -> None:
        app: ClauderonApp = self.app  # type: ignore[assignment]
        what = self.query_one("#what", Static)
        button = self.query_one("#delete", Button)
        what.update("Deleting…")
        try:
            result = await app.daemon.call(
                "DELETE", f"/api/sessions/{self.session_name}", params={"force": self.force}
            )
        except ClauderonError as exc:
            button.disabled = False
            if exc.code == "would_lose_work" and not self.force:
                self.force = True
                what.update(
                    f"Refused: {exc.message}\n\nSave that work under "
                    f"refs/clauderon/{self.session_name}/ and delete?"
                )
                what.add_class("warning")
                button.label = "Save and delete"
                button.refresh(layout=True)
            else:
                what.update(f"Error: {exc.message}")
                what.add_class("error")
            return
        if result and result.get("saved_ref"):
            self.notify(
                f"Deleted {self.session_name}; its work is saved as {result['saved_ref']}. "
                f"Restore: {result['restore_hint']}",
                timeout=20,
            )
        else:
            self.notify(f"Deleted {self.session_name}", timeout=4)
        self.dismiss(result)
