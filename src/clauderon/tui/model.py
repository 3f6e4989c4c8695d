"""Pure pieces of the dashboard: how sessions sort, filter and read as table cells.

No Textual here, so these are unit-tested fast and the rules are in one place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

WAITING = ("waiting_approval", "waiting_input")
# Lower sorts first: whoever needs the user, then what went wrong, then the rest.
_RANK = {"waiting_approval": 0, "waiting_input": 1, "error": 2, "working": 3, "idle": 4}


def is_waiting(session: dict[str, Any]) -> bool:
    return session.get("agent_status") in WAITING


def is_archived(session: dict[str, Any]) -> bool:
    return session.get("status") == "archived"


def is_running(session: dict[str, Any]) -> bool:
    return session.get("state") == "running"


def age(timestamp: str | None, now: datetime) -> str:
    if not timestamp:
        return "-"
    then = datetime.fromisoformat(timestamp)
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = int((now - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def sort_key(session: dict[str, Any]) -> tuple[int, float, str]:
    created = session.get("created_at") or ""
    try:
        stamp = datetime.fromisoformat(created).timestamp()
    except ValueError:
        stamp = 0.0
    return (_RANK.get(session.get("agent_status", ""), 5), -stamp, session.get("name", ""))


def matches(session: dict[str, Any], text: str) -> bool:
    """Whether the `/` filter keeps this session: every word in name, repo, state or status."""
    if not text.strip():
        return True
    haystack = " ".join(
        str(session.get(k) or "")
        for k in ("name", "repo", "subdirectory", "state", "agent_status", "agent", "branch")
    ).lower()
    return all(word in haystack for word in text.lower().split())


def visible(
    sessions: Iterable[dict[str, Any]], *, text: str = "", archived: bool = False
) -> list[dict[str, Any]]:
    return sorted(
        (s for s in sessions if (archived or not is_archived(s)) and matches(s, text)),
        key=sort_key,
    )


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    optional: bool = False  # shown only when the daemon gives the field


# `ahead` and `changed_files` come with the review commands; their columns appear once the API
# sends the fields, with no change here.
COLUMNS = (
    Column("mark", " "),
    Column("name", "NAME"),
    Column("repo", "REPOSITORY"),
    Column("state", "STATE"),
    Column("agent_status", "AGENT"),
    Column("ahead", "AHEAD", optional=True),
    Column("changed_files", "CHANGED", optional=True),
    Column("age", "AGE"),
)


def columns_for(sessions: Iterable[dict[str, Any]]) -> list[Column]:
    present = {key for s in sessions for key in s}
    return [c for c in COLUMNS if not c.optional or c.key in present]


def status_label(session: dict[str, Any]) -> str:
    return str(session.get("agent_status") or "unknown").replace("_", " ")


def state_label(session: dict[str, Any]) -> str:
    state = str(session.get("state") or session.get("status") or "?")
    code = session.get("exit_code")
    return f"{state} ({code})" if code is not None else state


def repo_label(session: dict[str, Any]) -> str:
    repo = str(session.get("repo") or "")
    name = repo.rstrip("/").rsplit("/", 1)[-1] or repo
    sub = session.get("subdirectory")
    return f"{name}/{sub}" if sub else name


def cells(session: dict[str, Any], columns: Iterable[Column], now: datetime) -> list[str]:
    out = []
    for column in columns:
        if column.key == "mark":
            out.append("!" if is_waiting(session) else ("x" if session.get("error") else ""))
        elif column.key == "repo":
            out.append(repo_label(session))
        elif column.key == "state":
            out.append(state_label(session))
        elif column.key == "agent_status":
            out.append(status_label(session))
        elif column.key == "age":
            out.append(age(session.get("created_at"), now))
        else:
            value = session.get(column.key)
            out.append("" if value is None else str(value))
    return out


def became_waiting(before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    """A session that starts waiting for the user now (worth a toast and a bell)."""
    return is_waiting(after) and (
        before is None or before.get("agent_status") != after.get("agent_status")
    )
