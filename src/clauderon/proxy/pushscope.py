"""Push scoping: a session's `git push` over smart HTTP may update only its own branch.

A push is a POST to `…/git-receive-pack` whose body starts with the ref updates as
pkt-lines (`<old-id> <new-id> <refname>`, the first one followed by NUL and the client's
capabilities; `shallow <id>` lines may come first), ended by a flush-pkt (`0000`); the pack
follows. The proxy holds the body back until that list is read — at most
`MAX_COMMAND_BYTES`, whatever the pack's size — and decides: only an update (or creation)
of `refs/heads/<branch>` passes. Anything it cannot read is refused, never guessed at.

A refused push is answered as receive-pack answers a declined one (report-status, on the
side band when the client asked for it), so git prints the reason for each ref:
`! [remote rejected] main -> main (clauderon: … may push only refs/heads/<branch>)`.
Pure code (no I/O): the parser is unit-tested, hostile inputs included.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .policy import normalise_path

MAX_PKT = 65520  # git's LARGE_PACKET_MAX: a pkt-line's length, its 4 header bytes included
MAX_COMMAND_BYTES = 64 * 1024  # shallow lines and ref updates before the pack
FLUSH = b"0000"
RESULT_TYPE = "application/x-git-receive-pack-result"
_HEX4 = re.compile(rb"[0-9a-fA-F]{4}")
_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class PushParseError(ValueError):
    """The start of a receive-pack request is not a list of ref updates."""


@dataclass(frozen=True)
class RefUpdate:
    old: str
    new: str
    ref: str

    @property
    def deletes(self) -> bool:
        return set(self.new) == {"0"}


@dataclass(frozen=True)
class PushCommands:
    updates: tuple[RefUpdate, ...]
    capabilities: frozenset[str] = frozenset()
    size: int = 0  # bytes of the body they took, their flush-pkt included


def is_receive_pack(method: str, path: str, content_type: str | None) -> bool:
    """Whether a request is a push a smart-HTTP server would act on. Paths that servers
    could read differently (encoded, dot segments) count when they mention receive-pack."""
    if method.upper() != "POST":
        return False
    if "git-receive-pack" in (content_type or "").lower():
        return True
    route = normalise_path(path)
    if route is None:
        return "receive-pack" in path.lower()
    segments = [s for s in route.split("/") if s]
    return bool(segments) and segments[-1].lower() == "git-receive-pack"


def _line(payload: bytes) -> str:
    text = payload.decode("utf-8", "surrogateescape")
    return text[:-1] if text.endswith("\n") else text


def parse_commands(data: bytes | bytearray) -> PushCommands | None:
    """The ref updates at the start of `data`, or None when more bytes are needed.

    Raises PushParseError for anything that is not a well-formed list: a bad length, a
    special packet (delim, response-end, an empty line), a line that is neither
    `shallow <id>` nor `<old-id> <new-id> <ref>`, a signed push (push-cert), or a list
    longer than MAX_COMMAND_BYTES. Like receive-pack, each line is read up to a NUL;
    what follows a NUL is capabilities."""
    pos = 0
    updates: list[RefUpdate] = []
    capabilities: set[str] = set()
    while True:
        if pos > MAX_COMMAND_BYTES:
            raise PushParseError("the list of ref updates is too long")
        header = bytes(data[pos : pos + 4])
        if len(header) < 4:
            if len(data) > MAX_COMMAND_BYTES:
                raise PushParseError("the list of ref updates is too long")
            return None
        if not _HEX4.fullmatch(header):
            raise PushParseError("not a pkt-line")
        length = int(header, 16)
        if length == 0:
            return PushCommands(tuple(updates), frozenset(capabilities), pos + 4)
        if length <= 4 or length > MAX_PKT:
            raise PushParseError(f"a pkt-line of length {length} is not a ref update")
        if pos + length > len(data):
            if pos + length > MAX_COMMAND_BYTES:
                raise PushParseError("the list of ref updates is too long")
            return None
        line = _line(bytes(data[pos + 4 : pos + length]))
        pos += length
        command, nul, features = line.partition("\0")
        if nul:
            capabilities.update(f for f in features.split(" ") if f)
        if command.startswith("shallow "):
            if not _OBJECT_ID.fullmatch(command[8:]):
                raise PushParseError("a shallow line without an object id")
            continue
        if command == "push-cert":
            raise PushParseError("a signed push (push-cert) cannot be checked")
        old, _, rest = command.partition(" ")
        new, _, ref = rest.partition(" ")
        if not (_OBJECT_ID.fullmatch(old) and _OBJECT_ID.fullmatch(new)) or len(old) != len(new):
            raise PushParseError("a line that is not `<old-id> <new-id> <ref>`")
        if not ref or any(ord(c) < 0x20 or c == "\x7f" for c in ref):
            raise PushParseError("a ref update without a readable ref name")
        updates.append(RefUpdate(old, new, ref))


def refusals(commands: PushCommands, branch: str, session: str) -> dict[str, str]:
    """Why each ref update is refused (empty: the push may go). One refused update
    refuses the whole push, so nothing lands half."""
    allowed = f"refs/heads/{branch}" if branch else ""
    only = f"clauderon: session {session} may push only {allowed or 'no ref'}"
    reasons: dict[str, str] = {}
    for update in commands.updates:
        if update.ref != allowed:
            reasons[update.ref] = only
        elif update.deletes:
            reasons[update.ref] = f"clauderon: session {session} may not delete {allowed}"
    if reasons:
        for update in commands.updates:
            reasons.setdefault(update.ref, f"{only} (refused with the other refs)")
    return reasons


def pkt(payload: bytes) -> bytes:
    return b"%04x%s" % (len(payload) + 4, payload)


def _side_band(band: int, data: bytes, limit: int) -> Iterable[bytes]:
    size = limit - 5
    for start in range(0, len(data), size):
        yield pkt(bytes([band]) + data[start : start + size])


def report(commands: PushCommands, reasons: dict[str, str], message: str) -> bytes | None:
    """receive-pack's answer declining the push (report-status, on the side band the
    client asked for, `message` on the progress band git prints as `remote: …`); None
    when the client asked for no report (git always does)."""
    caps = commands.capabilities
    if not caps & {"report-status", "report-status-v2"}:
        return None
    status = pkt(b"unpack ok\n")
    for update in commands.updates:
        reason = reasons.get(update.ref, "clauderon: refused").replace("\n", " ")
        line = f"ng {update.ref} {reason}\n".encode("utf-8", "surrogateescape")
        if len(line) + 4 <= MAX_PKT:
            status += pkt(line)
    status += FLUSH
    limit = 65520 if "side-band-64k" in caps else 1000 if "side-band" in caps else 0
    if not limit:
        return status
    text = message.encode("utf-8", "surrogateescape")
    return b"".join([*_side_band(2, text, limit), *_side_band(1, status, limit), FLUSH])


@dataclass
class PushGate:
    """The request body's stream filter: holds the body back until the ref updates are
    read, asks `decide` once, then passes the body on — or, refused, sends the upstream
    a lone flush-pkt (an empty push, which changes nothing) and drops the rest.

    `decide(commands, error)` gets the updates, or None and why they could not be read;
    it returns whether the push may go. An empty chunk is the end of the body (mitmproxy's
    convention): one that comes early (an empty HTTP/2 DATA frame) ends the list unread,
    so the push is refused — never passed on unread."""

    decide: Callable[[PushCommands | None, str | None], bool]
    buffer: bytearray = field(default_factory=bytearray)
    state: str = "reading"  # reading → passing | refused

    def __call__(self, chunk: bytes) -> list[bytes]:
        if self.state == "passing":
            return [chunk] if chunk else []
        if self.state == "refused":
            return []
        self.buffer += chunk
        try:
            commands = parse_commands(self.buffer)
        except PushParseError as exc:
            return self._refuse(None, str(exc))
        if commands is None:
            if chunk:
                return []
            return self._refuse(None, "the push ended before its list of ref updates")
        if not self.decide(commands, None):
            self.state = "refused"
            self.buffer.clear()
            return [FLUSH]
        self.state = "passing"
        held, self.buffer = bytes(self.buffer), bytearray()
        return [held]

    def _refuse(self, commands: PushCommands | None, error: str) -> list[bytes]:
        self.decide(commands, error)
        self.state = "refused"
        self.buffer.clear()
        return [FLUSH]
