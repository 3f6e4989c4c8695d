"""The selected session's proxy audit: what it asked for, and what was decided."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static


def audit_text(entries: list[dict[str, Any]]) -> Text:
    if not entries:
        return Text("No requests through the proxy yet.", style="italic")
    text = Text(no_wrap=True, overflow="ellipsis")
    for entry in entries:
        decision = str(entry.get("decision", ""))
        denied = decision.startswith("denied")
        text.append(str(entry.get("ts", ""))[11:19] + " ", style="dim")
        text.append(f"{entry.get('status', '')!s:>3} ", style="bold red" if denied else "")
        text.append(f"{decision:<14} ", style="bold red" if denied else "green")
        text.append(f"{entry.get('method', '')} {entry.get('host', '')}{entry.get('path', '')}")
        if entry.get("credential"):
            text.append(f" +{entry['credential']}", style="cyan")
        text.append("\n")
    text.rstrip()
    return text


class AuditView(Static):
    def show(self, entries: list[dict[str, Any]]) -> None:
        self.update(audit_text(entries))
