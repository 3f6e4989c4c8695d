"""The Textual application: wiring only. Screens live in `screens/`, widgets in
`widgets/`, the look in `clauderon.tcss`, and every word with the daemon goes through
`daemon.py`."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from textual.app import App
from textual.binding import Binding

from .daemon import Daemon
from .screens.main import MainScreen


class ClauderonApp(App[None]):
    TITLE = "clauderon"
    CSS_PATH = "clauderon.tcss"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [  # noqa: RUF012
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(
        self,
        daemon: Daemon,
        sessions: list[dict[str, Any]] | None = None,
        now: Callable[[], datetime] | None = None,
        default_repo: str | None = None,
    ) -> None:
        super().__init__()
        self.default_repo = default_repo or os.getcwd()
        self.daemon = daemon
        self.initial_sessions = sessions or []
        self.now = now or (lambda: datetime.now(UTC))

    def on_mount(self) -> None:
        self.push_screen(MainScreen())

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())
