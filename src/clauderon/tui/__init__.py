"""`clauderon tui`: the terminal dashboard, one more client of the daemon.

Textual is imported only here (and below), never by the rest of the CLI, so other
commands keep their start-up time.
"""

from __future__ import annotations

import threading
from typing import Any


def run() -> int:
    """Load the sessions (starting the daemon if needed), then open the dashboard.

    The first request runs while Textual is imported (the two overlap: the request waits
    on the socket, the import on the CPU). A daemon that cannot start raises
    ClauderonError before anything is drawn: one clear line, not a blank screen."""
    from ..client import Client
    from ..errors import ClauderonError, DaemonUnavailable

    client = Client()
    answer: dict[str, Any] = {}

    def fetch() -> None:
        try:
            answer["sessions"] = client.request("GET", "/api/sessions", params={"archived": True})
        except ClauderonError as exc:
            answer["error"] = exc

    loading = threading.Thread(target=fetch, name="first-list", daemon=True)
    loading.start()
    from .app import ClauderonApp
    from .daemon import DaemonClient

    loading.join()
    error = answer.get("error")
    if isinstance(error, DaemonUnavailable):
        raise DaemonUnavailable(
            f"{error.message} (the dashboard needs it; `clauderon doctor` says what is missing)"
        ) from None
    if error is not None:
        raise error
    ClauderonApp(DaemonClient(client), sessions=answer["sessions"]).run()
    return 0
