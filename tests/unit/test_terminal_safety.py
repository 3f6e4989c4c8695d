"""What clauderon types into an agent's terminal, and prints into the user's (issue 9)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from clauderon.daemon.console import PASTE_END, PASTE_START, bracketed_paste
from clauderon.display import printable


def test_a_nested_paste_end_cannot_end_the_paste_early():
    # The finding: one pass of removal turned `\x1b[20\x1b[201~1~` into a paste end.
    pasted = bracketed_paste("hello \x1b[20\x1b[201~1~\rrm -rf ~")
    assert pasted.startswith(PASTE_START) and pasted.endswith(PASTE_END)
    assert pasted.count(PASTE_END) == 1


@given(st.lists(st.sampled_from(["\x1b[201~", "\x1b[20", "1~", "\x1b", "[201~", "a", "\r"])))
def test_the_only_paste_end_is_the_last(pieces):
    pasted = bracketed_paste("".join(pieces))
    assert pasted.endswith(PASTE_END) and pasted.count(PASTE_END) == 1


def test_control_characters_are_shown_not_obeyed():
    hostile = "/v1/\x1b]52;c;cm0gLXJmIH4=\x07\x1b]0;owned\x07\x1b[2A\x1b[K\r\x9b1m\u202eabc"
    shown = printable(hostile)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)
    assert "\\x1b]52;c;" in shown and "\\x07" in shown and "\\x9b" in shown and "\\u202e" in shown
    assert printable("two\nlines") == "two\nlines"
    assert printable("plain/path?q=1 ünïcode") == "plain/path?q=1 ünïcode"


@given(st.text())
def test_nothing_printable_lets_a_control_character_through(text):
    assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F for c in printable(text))
