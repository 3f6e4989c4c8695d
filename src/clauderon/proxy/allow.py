"""Hosts allowed or refused while the daemon runs: `clauderon allow|disallow HOST
[--session NAME]`.

Each entry is a host pattern (as in config.toml's `allow`: `host`, `*.domain`,
`host:port`) with a rule, for one session or for all. They live in
`~/.clauderon/proxy-allow.json` — the daemon's own file (0600, replaced atomically), so
config.toml stays the user's hand-written file that clauderon never rewrites — and are
read by the proxy on the next request: no restart. Session entries are keyed by the
session's id, so a later session of the same name does not inherit them.

Precedence (policy.Policy.egress_allows): the session's entries, then those for all
sessions, then config.toml and the default allowlist. Within one scope a refusal wins
over an allowance when two patterns match.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from ..models import Egress, utcnow
from .policy import Policy, address_matches, split_pattern

Rule = Literal["allow", "deny"]
MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class AllowEntry:
    host: str  # a checked pattern: `host`, `*.domain`, `host:port`
    rule: Rule
    session_id: str = ""  # "" = every session
    session: str = ""  # the session's name when the entry was made (for display)
    added: str = ""


class AllowRules:
    """Entries in memory, as the proxy decides on them."""

    def __init__(self, entries: list[AllowEntry]):
        self._entries = entries

    def entries(self) -> list[AllowEntry]:
        return list(self._entries)

    def rule_for(self, host: str, port: int, session_id: str) -> Rule | None:
        """The rule of this scope ("" = all sessions) that applies to host:port."""
        rules = {
            e.rule
            for e in self._entries
            if e.session_id == session_id and address_matches(host, port, e.host)
        }
        if "deny" in rules:
            return "deny"
        return "allow" if rules else None

    def without(self, host: str, session_id: str) -> AllowRules:
        """These rules less the entry for host in one scope (what a change replaces)."""
        return AllowRules(
            [e for e in self._entries if not (e.host == host and e.session_id == session_id)]
        )

    def get(self, host: str, session_id: str) -> AllowEntry | None:
        return next(
            (e for e in self._entries if e.host == host and e.session_id == session_id), None
        )


class LiveAllowList(AllowRules):
    """The entries, in memory for the proxy's decisions and on disk for the next daemon.
    The list is replaced, never changed in place: the proxy reads it without a lock."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.RLock()
        super().__init__(self._load())

    def _load(self) -> list[AllowEntry]:
        try:
            with open(self.path, "rb") as handle:
                data = json.loads(handle.read(MAX_FILE_BYTES + 1))
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            return []  # unreadable: start empty (the file is rewritten on the next change)
        entries = []
        for item in data.get("entries", []) if isinstance(data, dict) else []:
            try:
                entry = AllowEntry(**item)
            except TypeError:
                continue
            if entry.rule in ("allow", "deny") and isinstance(entry.host, str):
                entries.append(entry)
        return entries

    def put(self, host: str, rule: Rule | None, session_id: str = "", session: str = "") -> None:
        """Set (or, with rule None, remove) the entry for host in one scope, and save."""
        with self._lock:
            kept = [e for e in self._entries if not (e.host == host and e.session_id == session_id)]
            if rule is not None:
                kept.append(AllowEntry(host, rule, session_id, session, utcnow().isoformat()))
            self._save(kept)
            self._entries = kept

    def forget_sessions(self, keep: set[str]) -> None:
        """Drop the entries of sessions whose id is not in `keep` (deleted sessions)."""
        with self._lock:
            kept = [e for e in self._entries if not e.session_id or e.session_id in keep]
            if len(kept) != len(self._entries):
                self._save(kept)
                self._entries = kept

    def _save(self, entries: list[AllowEntry]) -> None:
        body = json.dumps({"entries": [asdict(e) for e in entries]}, indent=1) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise


def change(
    policy: Policy,
    live: LiveAllowList,
    host: str,
    allow: bool,
    session_id: str = "",
    session: str = "",
    egress: Egress | None = None,
) -> Rule | None:
    """Apply `allow` (or `disallow`) of a checked host pattern in one scope; return the
    entry recorded. `allow` takes back a `disallow` of that scope and records an
    allowance only if the host would still be refused; `disallow` likewise takes back an
    `allow` and records a refusal only if something else (the defaults, config.toml, an
    entry for all sessions, egress open) would still let the host through. For all
    sessions (egress None) an allowance is weighed in allowlist mode and a refusal is
    always recorded (sessions with egress open are refused it too)."""
    if egress is None:
        egress = Egress.ALLOWLIST if allow else Egress.OPEN
    name, ports = split_pattern(host)
    with live._lock:
        rest = replace(policy, live=live.without(host, session_id))
        reachable = rest.egress_allows(name, egress, ports[-1], session_id)
        rule: Rule | None = None
        if allow and not reachable:
            rule = "allow"
        elif not allow and reachable:
            rule = "deny"
        live.put(host, rule, session_id, session)
    return rule
