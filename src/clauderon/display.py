"""Text from a session shown in the user's terminal: never a control sequence.

An agent chooses request paths, session output, error details… Printed raw, an `ESC]52`
writes the user's clipboard, `ESC]0` their title, cursor moves rewrite what they read.
Everything clauderon prints about a session goes through `printable`; only `logs` and
`attach` are raw by nature (they are the agent's terminal), and say so in their help.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

# C0 and C1 controls and DEL (newline kept), and the bidirectional overrides that make
# text read differently from what it is.
_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def printable(text: str) -> str:
    """`text` with every control character shown as an escape (`\\x1b`); newlines kept."""
    return _UNSAFE.sub(_escape, text)


_UNSAFE_BUT_TAB = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# git's colors for a diff, by how its line starts (checked in order).
_DIFF_COLORS = (
    ("diff --git ", "1"),
    ("+++ ", "1"),
    ("--- ", "1"),
    ("@@", "36"),
    ("+", "32"),
    ("-", "31"),
)


def terminal_diff(chunks: Iterable[bytes], color: bool) -> Iterator[bytes]:
    """A diff for a terminal: the agent's file contents made printable (tabs kept), and
    colored here rather than by git, so no byte of theirs is ever a control sequence."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield _diff_line(line, color) + b"\n"
    if pending:
        yield _diff_line(pending, color)


def _diff_line(raw: bytes, color: bool) -> bytes:
    text = _UNSAFE_BUT_TAB.sub(_escape, raw.decode("utf-8", errors="replace"))
    if color:
        for prefix, code in _DIFF_COLORS:
            if text.startswith(prefix):
                text = f"\x1b[{code}m{text}\x1b[m"
                break
    return text.encode()
