def test_a_diff_shown_on_a_terminal_carries_no_control_sequence_of_the_agent():
    from clauderon.display import terminal_diff

    diff = (
        b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n"
        b"-old\tline\n+\x1b]52;c;cm0gLXJmIH4=\x07new \x1b[2J\x1b[Hline\n"
    )
    chunks = [diff[i : i + 7] for i in range(0, len(diff), 7)]  # split anywhere
    plain = b"".join(terminal_diff(chunks, color=False)).decode()
    assert "\x1b" not in plain and "\x07" not in plain
    assert "+\\x1b]52;c;cm0gLXJmIH4=\\x07new \\x1b[2J\\x1b[Hline" in plain
    assert "-old\tline" in plain  # tabs stay
    colored = b"".join(terminal_diff(chunks, color=True)).decode()
    assert "\x1b[31m-old\tline\x1b[m" in colored
    assert colored.count("\x1b]") == 0
