"""The selected session's live screen, read-only: the console WebSocket drawn through pyte.

It never sends anything to the console (no keys, no size), so watching here cannot
disturb the agent or a terminal attached to it. A console larger than the panel is
cropped by scrolling.
"""

from __future__ import annotations

from typing import Any

import pyte
from rich.style import Style
from rich.text import Text
from textual.containers import ScrollableContainer
from textual.widgets import Static

_NAMES = {"brown": "yellow", "default": None}


def _color(value: str) -> str | None:
    if value in _NAMES:
        return _NAMES[value]
    if len(value) == 6 and all(c in "0123456789abcdefABCDEF" for c in value):
        return f"#{value}"
    if value.startswith("bright"):
        base = value[len("bright") :]
        return f"bright_{_NAMES.get(base, base) or 'white'}"
    return value


def _used_lines(screen: pyte.Screen) -> int:
    """Rows down to the last one drawn on (or the cursor): agents like Claude Code draw
    from the top, and the blank rows below are not worth the room."""
    last = screen.cursor.y
    for y in range(screen.lines - 1, last, -1):
        if screen.display[y].strip():
            last = y
            break
    return last + 1


def screen_text(screen: pyte.Screen) -> Text:
    """The pyte screen as Rich text, with its colours and attributes (Textual drops the
    colours itself under NO_COLOR)."""
    text = Text(no_wrap=True, overflow="crop")
    lines = _used_lines(screen)
    for y in range(lines):
        row = screen.buffer[y]
        run_style: Style | None = None
        run = ""
        for x in range(screen.columns):
            char = row[x]
            style = Style(
                color=_color(char.fg),
                bgcolor=_color(char.bg),
                bold=char.bold or None,
                italic=char.italics or None,
                underline=char.underscore or None,
                reverse=char.reverse or None,
            )
            if style != run_style and run:
                text.append(run, run_style)
                run = ""
            run_style = style
            run += char.data or " "
        text.append(run.rstrip() if run_style == Style() else run, run_style)
        if y < lines - 1:
            text.append("\n")
    return text


class ConsoleView(Static):
    """Feed it the console's messages; it redraws at most a few times a second."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self._screen: pyte.Screen | None = None
        self._stream: pyte.ByteStream | None = None
        self._dirty = False
        self._follow = False

    def on_mount(self) -> None:
        self.set_interval(1 / 15, self._flush)

    def show_message(self, text: str) -> None:
        self._screen = None
        self._stream = None
        self._dirty = False
        self.update(Text(text, style="italic"))

    def feed(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "snapshot":
            self._screen = pyte.Screen(int(message["cols"]), int(message["rows"]))
            self._stream = pyte.ByteStream(self._screen)
            self._stream.feed(message["bytes"])
            self._dirty = True
            self._flush()
            self._follow = True
        elif kind == "output" and self._stream is not None:
            self._stream.feed(message["bytes"])
            self._dirty = True
        elif kind == "exit":
            self._flush()
            self.border_subtitle = "the agent's terminal closed"
        elif kind == "error":
            self.show_message(message.get("message", "the console is not available"))

    @property
    def text(self) -> str:
        """The whole screen as plain text (no-break spaces as spaces, as a reader sees it)."""
        if self._screen is None:
            return ""
        return "\n".join(line.replace("\xa0", " ") for line in self._screen.display)

    def _flush(self) -> None:
        if self._dirty and self._screen is not None:
            self._dirty = False
            parent = self.parent
            # Keep the agent's input line in view, unless the user scrolled up to read.
            follow = self._follow or (
                isinstance(parent, ScrollableContainer)
                and parent.scroll_y >= parent.max_scroll_y - 1
            )
            self._follow = False
            self.update(screen_text(self._screen))
            if follow and isinstance(parent, ScrollableContainer):
                self.call_after_refresh(parent.scroll_end, animate=False)
