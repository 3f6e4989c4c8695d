"""What every part of the SessionManager shares: its state, the per-session locks and the
helpers each change uses (take the lock, read the record again, change it, save it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from .. import git, review
from ..agents import install_report_script
from ..backends import Backend, Backends, ContainerStatus, Progress
from ..config import GitHubConfig
from ..container import container_name
from ..errors import Conflict, session_not_found
from ..gitsync import GitSync
from ..models import Session, SessionStatus
from ..paths import Paths
from ..proxy.server import CredentialProxy
from ..store import Store
from .blocking import blocking
from .console import ConsoleManager
from .directory import ProxySessions
from .events import EventBus
from .live import LiveReports

log = logging.getLogger(__name__)


class NamedLocks:
    """One asyncio lock per session name, held only while someone uses it (a dict of
    every name ever asked for would grow without bound)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[asyncio.Lock, int]] = {}

    def busy(self, name: str) -> bool:
        return name in self._entries

    @contextlib.asynccontextmanager
    async def __call__(self, name: str) -> AsyncIterator[None]:
        lock, users = self._entries.get(name, (asyncio.Lock(), 0))
        self._entries[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._entries[name]
            if users == 1:
                del self._entries[name]
            else:
                self._entries[name] = (lock, users - 1)


class ManagerCore:
    """The state and helpers of a SessionManager (its parts subclass this)."""

    def __init__(
        self,
        paths: Paths,
        store: Store,
        backends: Backends,
        events: EventBus,
        proxy: CredentialProxy,
        directory: ProxySessions,
        ca_cert: Path,
        github: GitHubConfig | None = None,
    ):
        self.paths = paths
        self.store = store
        self.backends = backends
        self.events = events
        self.proxy = proxy
        self.directory = directory
        self.ca_cert = ca_cert
        self._proxy_lock = asyncio.Lock()
        self._lock = NamedLocks()
        self._creations: dict[str, asyncio.Task[Session]] = {}
        self.uid, self.gid = os.getuid(), os.getgid()
        (paths.home / "gitignore").write_text(git.AGENT_HOME_EXCLUDES)
        install_report_script(paths.hooks)
        self.consoles = ConsoleManager()
        self.gitsync = GitSync(paths.sessions, store)
        self._sync_task: asyncio.Task[None] | None = None
        self._stats: dict[str, review.Stats] = {}  # by session id (stats.py), for `list`
        self.github_api_url = github.api_url if github else None
        # Agent reports and model calls: recorded off the loop, in order (live.py).
        self.live = LiveReports(store, directory, self._publish)
        self.live.attach()

    # --- backends ----------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The default backend (what `create` uses unless `--backend` names another)."""
        return self.backends.get(self.backends.default)

    def _backend(self, session: Session) -> Backend:
        """The backend the session was made with."""
        return self.backends.get(session.backend)

    def _backends_in_use(self) -> list[Backend]:
        """The default backend and every backend a session uses (what reconcile and
        `list` ask about)."""
        kinds = {self.backends.default} | {s.backend for s in self.store.list_sessions()}
        return [self.backends.get(k) for k in sorted(kinds) if k in self.backends.kinds()]

    async def _inspect_everywhere(
        self, labels: dict[str, str]
    ) -> dict[str, tuple[Backend, ContainerStatus]]:
        """Every container with these labels, of every backend in use, by name."""
        found: dict[str, tuple[Backend, ContainerStatus]] = {}
        for backend in self._backends_in_use():
            containers = await blocking(backend.inspect_all, labels)
            found.update((name, (backend, c)) for name, c in containers.items())
        return found

    def _get(self, name: str) -> Session:
        session = self.store.get_session(name)
        if session is None:
            raise session_not_found(name)
        return session

    def _get_to_change(self, name: str) -> Session:
        """The record, read again under the session's lock, once the store is known to
        take the change: nothing acts on a container or a worktree that it cannot record."""
        session = self._get(name)
        self.store.check_writable()
        return session

    def _save(self, session: Session, event: str | None = None, **payload: Any) -> Session:
        self.store.save_session(session)
        if event:
            self.store.add_event(session, event, payload)
            self._publish("session_updated", session, reason=event, **payload)
        return session

    def _publish(self, type_: str, session: Session, **payload: Any) -> None:
        data = session.model_dump(mode="json", exclude={"proxy_token", "hook_token"})
        self.events.publish({"type": type_, "session": session.name, **payload, "data": data})

    def _broadcasting(self, name: str, progress: Progress) -> Progress:
        """The same progress, also published as events (callable from worker threads)."""
        loop = asyncio.get_running_loop()

        def report(message: str, current: int | None = None, total: int | None = None) -> None:
            progress(message, current, total)
            loop.call_soon_threadsafe(
                self.events.publish,
                {
                    "type": "session_progress",
                    "session": name,
                    "message": message,
                    "current": current,
                    "total": total,
                },
            )

        return report

    def _worktree(self, session: Session) -> git.Worktree:
        return git.Worktree(
            root=Path(session.worktree),
            git_dir=Path(session.git_dir),
            common_dir=Path(session.git_common_dir),
            branch=session.branch,
            excludes_file=self.paths.home / "gitignore",
        )

    def _container_name(self, session: Session) -> str:
        """The session's container: the recorded one (older sessions keep their name), or
        the name this home gives it."""
        return session.container or container_name(session.name, self.paths.instance)

    def _labels(self) -> dict[str, str]:
        return {"clauderon.managed": "true", "clauderon.instance": self.paths.instance}

    def _require(self, session: Session, *allowed: SessionStatus) -> None:
        if session.status not in allowed:
            raise Conflict(f"session {session.name!r} is {session.status.value}")
