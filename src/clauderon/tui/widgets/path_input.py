"""An input that completes directory paths as the user types (→ or Tab accepts)."""

from __future__ import annotations

import os
from pathlib import Path

from textual.suggester import Suggester

MAX_ENTRIES = 2000  # a huge directory must not stall the form


def complete_path(value: str) -> str | None:
    """The first directory that completes `value` (with `~` kept as typed), or None."""
    if not value:
        return None
    expanded = os.path.expanduser(value)
    folder, _, prefix = expanded.rpartition("/")
    folder = folder or ("/" if expanded.startswith("/") else ".")
    try:
        with os.scandir(folder) as entries:
            names = []
            for i, entry in enumerate(entries):
                if i >= MAX_ENTRIES:
                    break
                if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=True):
                    if entry.name.startswith(".") and not prefix.startswith("."):
                        continue
                    names.append(entry.name)
    except OSError:
        return None
    if not names:
        return None
    best = sorted(names)[0]
    completed = value[: len(value) - len(prefix)] + best + "/"
    return completed if completed != value else None


class PathSuggester(Suggester):
    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        return complete_path(value)


def is_directory(value: str) -> bool:
    return bool(value) and Path(os.path.expanduser(value)).is_dir()
