"""Where clauderon keeps its files: everything lives under one home directory.

`CLAUDERON_HOME` overrides `~/.clauderon`, so tests and several users on one machine
never share state by accident.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    home: Path

    @classmethod
    def from_env(cls) -> Paths:
        override = os.environ.get("CLAUDERON_HOME")
        home = Path(override).expanduser() if override else Path.home() / ".clauderon"
        return cls(home.absolute())

    @property
    def socket(self) -> Path:
        return self.home / "clauderon.sock"

    @property
    def db(self) -> Path:
        return self.home / "db.sqlite"

    @property
    def daemon_lock(self) -> Path:
        """Held (flock) by the running daemon for its whole life."""
        return self.home / "daemon.lock"

    @property
    def spawn_lock(self) -> Path:
        """Held by a client while it starts the daemon, so two clients never start two."""
        return self.home / "spawn.lock"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def worktrees(self) -> Path:
        return self.home / "worktrees"

    @property
    def uploads(self) -> Path:
        return self.home / "uploads"

    @property
    def hooks(self) -> Path:
        return self.home / "hooks"

    @property
    def sessions(self) -> Path:
        """Per-session generated files (agent settings), one directory per session name."""
        return self.home / "sessions"

    @property
    def agents(self) -> Path:
        """Agent binaries fetched once per version and shared read-only by every session."""
        return self.home / "agents"

    @property
    def secrets(self) -> Path:
        return self.home / "secrets"

    @property
    def audit_log(self) -> Path:
        return self.home / "audit.jsonl"

    @property
    def config(self) -> Path:
        return self.home / "config.toml"

    @property
    def instance(self) -> str:
        """A short stable id of this home, used to tell its Docker resources from another's."""
        return hashlib.sha256(str(self.home).encode()).hexdigest()[:10]

    def worktree(self, name: str) -> Path:
        return self.worktrees / name

    def session_dir(self, name: str) -> Path:
        return self.sessions / name

    def ensure(self) -> None:
        """Create the home with private permissions (it holds the socket and the store)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        for sub in (
            self.logs,
            self.worktrees,
            self.uploads,
            self.hooks,
            self.sessions,
            self.agents,
        ):
            sub.mkdir(exist_ok=True)
