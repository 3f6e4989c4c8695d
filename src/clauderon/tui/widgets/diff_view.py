"""The selected session's changes (what `clauderon diff` shows), drawn safely: every
byte of the agent's files is made printable before it reaches the terminal."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ...display import printable

_STYLES = (
    ("diff --git ", "bold"),
    ("+++ ", "bold"),
    ("--- ", "bold"),
    ("@@", "cyan"),
    ("+", "green"),
    ("-", "red"),
)


def diff_text(diff: str, truncated: bool = False) -> Text:
    if not diff.strip():
        return Text("No changes against where the session started.", style="italic")
    text = Text(no_wrap=True, overflow="ellipsis")
    for line in diff.splitlines():
        style = next((s for prefix, s in _STYLES if line.startswith(prefix)), "")
        text.append(printable(line.replace("\t", "    ")) + "\n", style=style)
    if truncated:
        text.append("… (cut here: `clauderon diff NAME` shows it all)", style="italic")
    text.rstrip()
    return text


class DiffView(Static):
    def show(self, diff: str, truncated: bool = False) -> None:
        self.update(diff_text(diff, truncated))
