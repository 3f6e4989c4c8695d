"""`clauderon tui`: the terminal dashboard, one more client of the daemon.

Textual is imported only here (and below), never by the rest of the CLI, so other
commands keep their start-up time.
"""

from __future__ import annotations


def run() -> int:
    """Load the sessions (starting the daemon if needed), then open the dashboard.

    A daemon that cannot start raises ClauderonError before anything is drawn, so the
    user sees one clear line instead of a blank screen."""
    from ..client import Client
    from ..errors import DaemonUnavailable

    client = Client()
    try:
        sessions = client.request("GET", "/api/sessions", params={"archived": True})
    except DaemonUnavailable as exc:
        raise DaemonUnavailable(
            f"{exc.message} (the dashboard needs it; `clauderon doctor` says what is missing)"
        ) from None

    from .app import ClauderonApp
    from .daemon import DaemonClient

    ClauderonApp(DaemonClient(client), sessions=sessions).run()
    return 0
