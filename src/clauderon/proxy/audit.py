"""The audit log: one JSON line per request through the proxy, never a secret.

Paths are logged without their query string (which can carry keys); header values are
never logged. The file is rotated by size (`audit.jsonl` → `audit.jsonl.1` …).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any

from ..models import utcnow

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 3


class AuditLog:
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """New entries as they are written (`clauderon audit -f`)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(1000)
        self._listeners.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._listeners.discard(queue)

    def write(self, entry: dict[str, Any]) -> None:
        entry = {"ts": utcnow().isoformat(), **entry}
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        for queue in list(self._listeners):
            if not queue.full():
                queue.put_nowait(entry)
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
        """The last `limit` entries (of one session), oldest first."""
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if session is None or entry.get("session") == session:
                entries.append(entry)
                if len(entries) >= limit:
                    break
        return entries[::-1]
