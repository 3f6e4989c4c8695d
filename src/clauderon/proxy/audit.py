"""The audit log: one JSON line per request through the proxy, never a secret.

Paths are logged without their query string (which can carry keys); header values are
never logged. The file is rotated by size (`audit.jsonl` → `audit.jsonl.1` …).

The proxy runs on the daemon's event loop, so nothing here touches the disk there:
`write` hands the entry to followers (`audit -f`) at once and the line to one writer
thread (`SerialWorker`: lines keep their order; when the disk stalls so long that
AUDIT_BACKLOG lines wait, further lines are dropped and a `audit-dropped` line says how
many; `close` writes everything queued). `read` is blocking — callers on the loop run it
in a thread — and reads the files from their end, only as far back as it must.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from ..models import utcnow
from ..worker import SerialWorker

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 3
AUDIT_BACKLOG = 10_000  # lines waiting for the disk; beyond that, dropped (and counted)
READ_BLOCK = 64 * 1024


class AuditLog:
    def __init__(
        self,
        path: Path,
        max_bytes: int = MAX_BYTES,
        backups: int = BACKUPS,
        backlog: int = AUDIT_BACKLOG,
    ):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()  # the files: the writer thread against readers
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self._writer = SerialWorker("audit-writer", backlog, on_drop=self._dropped)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """New entries as they are written (`clauderon audit -f`)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(1000)
        self._listeners.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._listeners.discard(queue)

    def write(self, entry: dict[str, Any]) -> None:
        """Record an entry (never blocks: the line is written by the writer thread)."""
        entry = {"ts": utcnow().isoformat(), **entry}
        for queue in list(self._listeners):
            if not queue.full():
                queue.put_nowait(entry)
        self._writer.submit(self._append, entry)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every entry written so far is on disk (blocking)."""
        return self._writer.flush(timeout)

    def close(self) -> None:
        """Write what is queued and stop the writer (blocking; the daemon's stop)."""
        self._writer.close()

    def _dropped(self, count: int) -> None:
        self._append({"ts": utcnow().isoformat(), "decision": "audit-dropped", "dropped": count})

    def _append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                if self.path.stat().st_size + len(line) > self.max_bytes:
                    self._rotate()
            except FileNotFoundError:
                pass
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as handle:
                handle.write(line)

    def _rotate(self) -> None:
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))

    def read(self, session: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The last `limit` entries (of one session), oldest first. Blocking: reads the
        current file, then the rotated ones, backwards, and stops once it has `limit`."""
        self.flush()  # what was written before this call is in the answer
        # Only lines that name the session are parsed (most of a busy log is others').
        needle = json.dumps(session).encode() if session is not None else b""
        entries: list[dict[str, Any]] = []
        with self._lock:  # no rotation halfway through
            for index in range(self.backups + 1):
                path = self.path if index == 0 else self.path.with_name(f"{self.path.name}.{index}")
                for line in _lines_backwards(path):
                    if needle not in line:
                        continue
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if not isinstance(entry, dict):
                        continue
                    if session is None or entry.get("session") == session:
                        entries.append(entry)
                        if len(entries) >= limit:
                            return entries[::-1]
        return entries[::-1]

    async def follow(
        self, session: str | None = None, limit: int = 200
    ) -> AsyncIterator[dict[str, Any]]:
        """The last `limit` entries, then every new one (`audit -f`): subscribed before
        the file is read (in a thread), so nothing falls between the two; an entry both
        read and queued is given once."""
        queue = self.subscribe()
        try:
            past = await asyncio.to_thread(self.read, session, limit)
            for entry in past:
                yield entry
            last = past[-1]["ts"] if past else ""
            while True:
                entry = await queue.get()
                if session is not None and entry.get("session") != session:
                    continue
                if last and str(entry.get("ts", "")) <= last:
                    continue  # already read from the file
                last = ""
                yield entry
        finally:
            self.unsubscribe(queue)


def _lines_backwards(path: Path) -> Iterator[bytes]:
    """The file's lines, last first, read in blocks from its end (no links followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return
    with os.fdopen(fd, "rb") as handle:
        position = handle.seek(0, os.SEEK_END)
        rest = b""
        while position > 0:
            size = min(READ_BLOCK, position)
            position -= size
            handle.seek(position)
            block = handle.read(size) + rest
            lines = block.split(b"\n")
            rest = lines[0]  # maybe the end of a line that starts in the block before
            for line in reversed(lines[1:]):
                if line.strip():
                    yield line
        if rest.strip():
            yield rest
