"""Messages the dashboard's widgets and screens send each other."""

from __future__ import annotations

from typing import Any

from textual.message import Message


class SessionSelected(Message):
    """The cursor moved to another session (or to none)."""

    def __init__(self, name: str | None) -> None:
        super().__init__()
        self.name = name


class SessionChanged(Message):
    """A session's view changed (from an event or an action); `None` when it is gone."""

    def __init__(self, name: str, session: dict[str, Any] | None) -> None:
        super().__init__()
        self.name = name
        self.session = session


class DaemonLost(Message):
    """The event stream broke; the dashboard says so and reconnects."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class DaemonBack(Message):
    """The event stream is back: reload everything once."""
