"""The list of sessions: who needs the user first, filtered, archived ones on a toggle."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable

from .. import model
from ..messages import SessionSelected

STATUS_STYLE = {
    "waiting_approval": "bold reverse",
    "waiting_input": "bold reverse",
    "error": "bold red",
    "working": "green",
    "exited": "dim",
}


class SessionList(DataTable[Any]):
    """One row per session; the row key is the session's name."""

    BINDINGS = [Binding("enter", "screen.attach", "Attach")]  # noqa: RUF012

    def __init__(self, now: Callable[[], datetime] | None = None, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.now = now or (lambda: datetime.now(UTC))
        self.sessions: dict[str, dict[str, Any]] = {}
        self.filter_text = ""
        self.show_archived = False
        self._columns: list[model.Column] = []
        self._shown: list[str] = []

    # --- data -------------------------------------------------------------------------

    def set_sessions(self, sessions: list[dict[str, Any]]) -> None:
        self.sessions = {s["name"]: s for s in sessions}
        self.rebuild()

    def update_session(self, name: str, session: dict[str, Any] | None) -> None:
        if session is None:
            self.sessions.pop(name, None)
        else:
            self.sessions[name] = session
        self.rebuild()

    @property
    def selected(self) -> dict[str, Any] | None:
        if not self._shown or self.cursor_row < 0 or self.cursor_row >= len(self._shown):
            return None
        return self.sessions.get(self._shown[self.cursor_row])

    @property
    def shown(self) -> list[str]:
        return list(self._shown)

    def title(self) -> str:
        total = sum(
            1 for s in self.sessions.values() if self.show_archived or not model.is_archived(s)
        )
        waiting = sum(1 for s in self.sessions.values() if model.is_waiting(s))
        parts = [
            f"Sessions {len(self._shown)}" + (f"/{total}" if len(self._shown) != total else "")
        ]
        if waiting:
            parts.append(f"{waiting} waiting")
        if self.show_archived:
            parts.append("with archived")
        if self.filter_text:
            parts.append(f"filter: {self.filter_text}")
        return " · ".join(parts)

    # --- drawing ----------------------------------------------------------------------

    def rebuild(self) -> None:
        keep = self.selected["name"] if self.selected else None
        rows = model.visible(
            self.sessions.values(), text=self.filter_text, archived=self.show_archived
        )
        columns = model.columns_for(self.sessions.values())
        if columns != self._columns:
            self.clear(columns=True)
            for column in columns:
                self.add_column(column.label, key=column.key)
            self._columns = columns
        else:
            self.clear()
        now = self.now()
        for session in rows:
            style = STATUS_STYLE.get(session.get("agent_status", ""), "")
            if model.is_archived(session):
                style = "dim"
            texts = model.cells(session, columns, now)
            row = []
            for column, text in zip(columns, texts, strict=True):
                cell_style = style if column.key in ("mark", "name", "agent_status") else ""
                if model.is_archived(session):
                    cell_style = "dim"
                row.append(Text(text, style=cell_style, no_wrap=True, overflow="ellipsis"))
            self.add_row(*row, key=session["name"])
        self._shown = [s["name"] for s in rows]
        if isinstance(self.parent, Widget):  # the pane around the list shows its title
            self.parent.border_title = self.title()
        if keep in self._shown:
            self.move_cursor(row=self._shown.index(keep), animate=False)
        self.post_message(SessionSelected(self.selected["name"] if self.selected else None))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(SessionSelected(event.row_key.value if event.row_key else None))
