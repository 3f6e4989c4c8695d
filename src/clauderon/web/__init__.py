"""The web UI: static pages (HTML, CSS, ES modules) the daemon serves on its TCP listener.

The pages are one more client of the daemon's API: they read `/api/…`, follow
`/ws/events` and `/ws/console/{name}`, and change nothing the CLI could not. xterm.js is
not in the repository: `assets.py` fetches it from the npm registry (pinned, integrity
checked) into `static/vendor/`, which the Python package ships.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
VENDOR = STATIC / "vendor"
FETCH_COMMAND = "clauderon web --fetch-assets"


def missing_assets() -> list[str]:
    """The vendored files the pages need that are missing or from other versions."""
    from .assets import FILES, up_to_date

    if up_to_date(VENDOR):
        return []
    return [name for name in FILES.values() if not (VENDOR / name).is_file()] or ["VERSIONS"]
