"""Text from a session shown in the user's terminal: never a control sequence.

An agent chooses request paths, session output, error details… Printed raw, an `ESC]52`
writes the user's clipboard, `ESC]0` their title, cursor moves rewrite what they read.
Everything clauderon prints about a session goes through `printable`; only `logs` and
`attach` are raw by nature (they are the agent's terminal), and say so in their help.
"""

from __future__ import annotations

import re

# C0 and C1 controls and DEL (newline kept), and the bidirectional overrides that make
# text read differently from what it is.
_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def printable(text: str) -> str:
    """`text` with every control character shown as an escape (`\\x1b`); newlines kept."""
    return _UNSAFE.sub(_escape, text)
