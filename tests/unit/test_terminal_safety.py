"""What clauderon types into an agent's terminal, and prints into the user's (issue 9)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from clauderon.daemon.console import PASTE_END, PASTE_START, bracketed_paste


def test_a_nested_paste_end_cannot_end_the_paste_early():
    # The finding: one pass of removal turned `\x1b[20\x1b[201~1~` into a paste end.
    pasted = bracketed_paste("hello \x1b[20\x1b[201~1~\rrm -rf ~")
    assert pasted.startswith(PASTE_START) and pasted.endswith(PASTE_END)
    assert pasted.count(PASTE_END) == 1


@given(st.lists(st.sampled_from(["\x1b[201~", "\x1b[20", "1~", "\x1b", "[201~", "a", "\r"])))
def test_the_only_paste_end_is_the_last(pieces):
    pasted = bracketed_paste("".join(pieces))
    assert pasted.endswith(PASTE_END) and pasted.count(PASTE_END) == 1
