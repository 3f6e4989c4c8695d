"""The push-scoping parser and decision (proxy/pushscope.py), hostile inputs included."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clauderon.proxy.pushscope import (
    FLUSH,
    MAX_COMMAND_BYTES,
    PushCommands,
    PushGate,
    PushParseError,
    RefUpdate,
    is_receive_pack,
    parse_commands,
    pkt,
    refusals,
    report,
)

ZERO = "0" * 40
A = "a" * 40
B = "b" * 40
CAPS = "report-status side-band-64k atomic agent=git/2.39.5"


def command(old: str, new: str, ref: str, caps: str | None = None) -> bytes:
    line = f"{old} {new} {ref}" + (f"\0{caps}" if caps is not None else "") + "\n"
    return pkt(line.encode())


def body(*updates: tuple[str, str, str], pack: bytes = b"PACK\x00\x00\x00\x02") -> bytes:
    lines = [command(*u, caps=CAPS if i == 0 else None) for i, u in enumerate(updates)]
    return b"".join(lines) + FLUSH + pack


def test_reads_the_ref_updates_and_capabilities():
    data = body((A, B, "refs/heads/s"), (ZERO, B, "refs/tags/v1"))
    commands = parse_commands(data)
    assert commands is not None
    assert commands.updates == (
        RefUpdate(A, B, "refs/heads/s"),
        RefUpdate(ZERO, B, "refs/tags/v1"),
    )
    assert {"report-status", "side-band-64k"} <= commands.capabilities
    assert data[commands.size :] == b"PACK\x00\x00\x00\x02"


def test_shallow_lines_sha256_ids_and_an_empty_push():
    shallow = pkt(f"shallow {A}\n".encode())
    commands = parse_commands(shallow + command("c" * 64, "d" * 64, "refs/heads/s", CAPS) + FLUSH)
    assert commands is not None and commands.updates[0].ref == "refs/heads/s"
    empty = parse_commands(FLUSH)  # git's probe before a large push
    assert empty == PushCommands((), frozenset(), 4)
    assert refusals(empty, "s", "s") == {}


def test_every_prefix_asks_for_more():
    data = body((A, B, "refs/heads/s"))
    size = parse_commands(data).size
    for cut in range(size):
        assert parse_commands(data[:cut]) is None, cut


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"zzzz", "not a pkt-line"),
        (b"+01a", "not a pkt-line"),
        (b"0x1a", "not a pkt-line"),
        (b"0001", "length 1"),
        (b"0002", "length 2"),
        (b"0004", "length 4"),
        (b"fff1" + b"x" * 70000, "length 65521"),
        (pkt(b"hello world\n") + FLUSH, "not `<old-id>"),
        (pkt(f"{A} {B}\n".encode()) + FLUSH, "readable ref"),
        (pkt(f"{A} {'b' * 64} refs/heads/s\n".encode()) + FLUSH, "not `<old-id>"),
        (pkt(f"{A.upper()} {B} refs/heads/s\n".encode()) + FLUSH, "not `<old-id>"),
        (pkt(f"{A} {B} \n".encode()) + FLUSH, "readable ref"),
        (pkt(f"{A} {B} refs/heads/a\tb\n".encode()) + FLUSH, "readable ref"),
        (pkt(b"shallow nothex\n") + FLUSH, "shallow"),
        (pkt(b"push-cert\0report-status\n") + FLUSH, "signed push"),
    ],
)
def test_malformed_lists_are_refused(data, fragment):
    with pytest.raises(PushParseError, match=fragment):
        parse_commands(data)


def test_the_list_is_bounded():
    many = b"".join(command(A, B, f"refs/heads/b{i}") for i in range(2000))
    with pytest.raises(PushParseError, match="too long"):
        parse_commands(many + FLUSH)
    with pytest.raises(PushParseError, match="too long"):
        parse_commands(many)  # never ends: refused once past the bound, not buffered


def test_a_nul_in_a_later_line_is_read_as_receive_pack_does():
    data = command(A, B, "refs/heads/s", CAPS) + command(A, B, "refs/heads/s", "x") + FLUSH
    commands = parse_commands(data)
    assert [u.ref for u in commands.updates] == ["refs/heads/s", "refs/heads/s"]
    assert "x" in commands.capabilities


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_any_bytes_parse_refuse_or_ask_for_more(data):
    try:
        result = parse_commands(data)
    except PushParseError:
        return
    assert result is None or result.size <= len(data)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([ZERO, A, B]),
            st.sampled_from([ZERO, A, B]),
            st.from_regex(r"refs/[a-z][a-z0-9/._-]{0,40}", fullmatch=True),
        ),
        min_size=1,
        max_size=8,
    ),
    st.binary(max_size=64),
)
def test_round_trip_and_the_decision(updates, pack):
    data = body(*updates, pack=pack)
    commands = parse_commands(data)
    assert commands is not None
    assert [(u.old, u.new, u.ref) for u in commands.updates] == updates
    assert data[commands.size :] == pack
    reasons = refusals(commands, "s", "s")
    only_own = all(ref == "refs/heads/s" and new != ZERO for _old, new, ref in updates)
    assert (reasons == {}) is only_own
    if reasons:  # all or nothing: every ref of a refused push gets a reason
        assert set(reasons) == {ref for _o, _n, ref in updates}


def test_refusals_name_the_allowed_ref():
    commands = parse_commands(body((A, B, "refs/heads/main"), (A, B, "refs/heads/s")))
    reasons = refusals(commands, "s", "sess")
    assert reasons["refs/heads/main"] == "clauderon: session sess may push only refs/heads/s"
    assert "refused with the other refs" in reasons["refs/heads/s"]
    deletion = parse_commands(body((A, ZERO, "refs/heads/s")))
    assert "may not delete refs/heads/s" in refusals(deletion, "s", "sess")["refs/heads/s"]
    assert refusals(parse_commands(body((A, B, "refs/heads/s"))), "", "x")  # no branch: none


def test_report_is_receive_packs_answer_on_the_side_band():
    commands = parse_commands(body((A, B, "refs/heads/main")))
    answer = report(commands, {"refs/heads/main": "no"}, "clauderon: why\n")
    assert answer is not None and answer.endswith(FLUSH)
    # Progress first (band 2), then the report-status (band 1), as git reads them.
    assert answer.startswith(pkt(b"\x02clauderon: why\n"))
    status = pkt(b"unpack ok\n") + pkt(b"ng refs/heads/main no\n") + FLUSH
    assert pkt(b"\x01" + status) in answer
    plain = PushCommands(commands.updates, frozenset({"report-status"}))
    assert report(plain, {"refs/heads/main": "no"}, "x") == status
    assert report(PushCommands(commands.updates), {}, "x") is None  # no report asked for


def test_the_gate_holds_the_body_until_it_decides():
    decided = []

    def decide(commands, error):
        decided.append((commands, error))
        return commands is not None and not refusals(commands, "s", "s")

    data = body((A, B, "refs/heads/s"), pack=b"PACK" + b"x" * 100)
    gate = PushGate(decide)
    out = [gate(data[i : i + 7]) for i in range(0, len(data), 7)] + [gate(b"")]
    assert b"".join(b"".join(chunks) for chunks in out) == data
    assert len(decided) == 1 and decided[0][1] is None
    assert all(chunk for chunks in out for chunk in chunks)  # never an empty chunk

    refused = PushGate(decide)
    sent = refused(body((A, B, "refs/heads/main"))) + refused(b"more pack") + refused(b"")
    assert sent == [FLUSH]  # the upstream sees an empty push

    broken = PushGate(decide)
    assert broken(b"00") == [] and broken(b"") == [FLUSH]
    assert decided[-1][0] is None and "ended" in decided[-1][1]
    huge = PushGate(decide)
    assert huge(b"fff0") == [] and huge(b"x" * (MAX_COMMAND_BYTES + 10)) == [FLUSH]
    assert PushGate(decide)(b"ffff") == [FLUSH]  # longer than any pkt-line


@pytest.mark.parametrize(
    ("method", "path", "ctype", "push"),
    [
        ("POST", "/o/r.git/git-receive-pack", None, True),
        ("POST", "/o/r/git-receive-pack?x=1", None, True),
        ("POST", "/o/r.git/GIT-RECEIVE-PACK/", None, True),
        ("POST", "/o/r.git/git-%72eceive-pack", None, True),
        ("POST", "/o/r.git/%2e%2e/git-receive-pack", None, True),
        ("POST", "/o/x", "application/x-git-receive-pack-request", True),
        ("POST", "/o/r.git/git-upload-pack", None, False),
        ("GET", "/o/r.git/info/refs?service=git-receive-pack", None, False),
        ("GET", "/o/r.git/git-receive-pack", None, False),
    ],
)
def test_what_counts_as_a_push(method, path, ctype, push):
    assert is_receive_pack(method, path, ctype) is push


@given(
    st.sampled_from(["refs/heads/s", "refs/heads/main", "refs/tags/v1"]),
    st.sampled_from([A, ZERO]),
    st.binary(max_size=200),
    st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    st.booleans(),
)
def test_the_gate_decides_the_same_however_the_body_is_cut(ref, new, pack, cuts, garble):
    data = body((B, new, ref), pack=pack)
    if garble:
        data = data[:10] + b"\xff" + data[11:]
    decisions = []

    def decide(commands, error):
        allowed = commands is not None and not refusals(commands, "s", "s")
        decisions.append(allowed)
        return allowed

    gate = PushGate(decide)
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    # b"" is the end of the body for mitmproxy's stream filters: only at the end here
    sent = b"".join(b"".join(gate(p)) for p in [*(p for p in pieces if p), b""])
    try:
        whole = parse_commands(data)
        expected = whole is not None and not refusals(whole, "s", "s")
    except PushParseError:
        expected = False
    assert decisions == [expected]
    assert sent == (data if expected else FLUSH)
