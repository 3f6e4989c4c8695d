"""A daemon with fixed answers, for the snapshot tests only: the screens drawn from the
same data at the same time every run. Everything else in tests/tui runs against the
real daemon."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from clauderon.errors import ClauderonError

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def _session(name: str, repo: str, state: str, status: str, minutes: int, **extra: Any) -> dict:
    return {
        "id": f"id-{name}",
        "name": name,
        "status": "archived" if state == "archived" else "running",
        "state": state,
        "agent": "claude",
        "agent_status": status,
        "image": "clauderon-agents:bookworm",
        "repo": f"/home/dev/{repo}",
        "subdirectory": "",
        "branch": name,
        "exit_code": None,
        "error": None,
        "created_at": (NOW - timedelta(minutes=minutes)).isoformat(),
        **extra,
    }


SESSIONS = [
    _session("fix-login-redirect", "webshop", "running", "working", 42),
    _session("add-csv-export", "webshop", "running", "waiting_input", 130),
    _session("upgrade-deps", "api-server", "running", "waiting_approval", 8),
    _session("flaky-test-hunt", "api-server", "exited", "exited", 60 * 26, exit_code=1),
    _session("docs-typos", "handbook", "stopped", "idle", 60 * 24 * 3),
    _session("old-spike", "webshop", "archived", "exited", 60 * 24 * 9),
]

SCREEN = [
    "╭───────────────────────────────────────────────╮",
    "│ ✻ Welcome to Claude Code!                     │",
    "╰───────────────────────────────────────────────╯",
    "",
    "> Add a CSV export to the orders page",
    "",
    "● I added `export_csv()` to orders/views.py and a",
    "  button on the orders page. Tests pass.",
    "",
    "> ",
]

AUDIT = [
    {
        "ts": "2026-01-15T11:58:01.5+00:00",
        "session": "add-csv-export",
        "status": 200,
        "decision": "allowed",
        "method": "POST",
        "host": "api.anthropic.com",
        "path": "/v1/messages",
        "credential": "anthropic_api_key",
    },
    {
        "ts": "2026-01-15T11:58:09.1+00:00",
        "session": "add-csv-export",
        "status": 403,
        "decision": "denied:egress",
        "method": "GET",
        "host": "pastebin.example",
        "path": "/raw/x",
    },
]


# An agent's file may carry escape sequences: the pane shows them, never runs them.
DIFF = (
    "diff --git a/orders/views.py b/orders/views.py\n"
    "--- a/orders/views.py\n+++ b/orders/views.py\n@@ -1,2 +1,2 @@\n"
    " import csv\n-def export(): pass\n+def export(): \x1b]52;c;cm0gLXJmIH4=\x07return csv\n"
)


def screen_bytes(lines: list[str], cols: int = 60) -> bytes:
    out = b"\x1b[2J\x1b[H"
    for i, line in enumerate(lines):
        out += f"\x1b[{i + 1};1H".encode() + line[:cols].encode()
    return out


class FixedDaemon:
    def __init__(self, sessions: list[dict] | None = None) -> None:
        self.data = {s["name"]: copy.deepcopy(s) for s in (sessions or SESSIONS)}
        self.calls: list[tuple[str, str]] = []
        self.events_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def sessions(self, archived: bool) -> list[dict]:
        return [copy.deepcopy(s) for s in self.data.values()]

    async def session(self, name: str) -> dict | None:
        return copy.deepcopy(self.data.get(name))

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        self.calls.append((method, path))
        if method == "DELETE" and not kwargs.get("params", {}).get("force"):
            raise ClauderonError(
                "session 'add-csv-export' has 2 uncommitted file(s) (orders/views.py, "
                "orders/tests.py) and 1 commit(s) on no other branch: merge or push them, or "
                "`clauderon delete --force add-csv-export` to save them under "
                "refs/clauderon/add-csv-export/ and delete",
                code="would_lose_work",
                status=409,
            )
        return {}

    async def run_long(self, path: str, body: Any, progress: Any) -> Any:
        self.calls.append(("POST", path))
        return None

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "connected"}
        while True:
            yield await self.events_queue.get()

    async def console(self, name: str) -> AsyncIterator[dict[str, Any]]:
        yield {
            "type": "snapshot",
            "rows": 12,
            "cols": 60,
            "bytes": screen_bytes(SCREEN),
        }
        await asyncio.Event().wait()  # no more output

    async def audit(self, name: str, limit: int) -> list[dict]:
        return [dict(e, session=name) for e in AUDIT]

    async def diff(self, name: str) -> tuple[str, bool]:
        return DIFF, False
