"""`?`: every key, what it does."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

KEYS = [
    ("↑ ↓, mouse", "select a session"),
    ("enter", "attach: the dashboard steps aside; Ctrl-P Ctrl-Q comes back"),
    ("s", "send a message to the agent"),
    ("n", "new session"),
    ("x", "stop / start"),
    ("a", "archive / unarchive"),
    ("r", "refresh: pull the image, recreate the container"),
    ("D", "delete (says what would be lost; can save it first)"),
    ("m", "merge the session's commits into the branch it came from"),
    ("p", "push and open a pull request on GitHub"),
    ("c", "the agent's live screen (read-only)"),
    ("l", "the proxy's audit log for the session"),
    ("d", "what the session changed (its diff)"),
    ("/", "filter (Escape clears)"),
    ("A", "show / hide archived sessions"),
    ("?", "this help"),
    ("q", "quit (sessions keep running)"),
]


def key_table() -> Table:
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, what in KEYS:
        table.add_row(key, what)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [  # noqa: RUF012
        Binding("escape,q,question_mark", "dismiss(None)", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Label("clauderon: keys", classes="dialog-title")
            yield Static(key_table())
            yield Static(
                "Sessions waiting for you sort first and are marked with !. Escape closes this.",
                classes="hint",
            )
