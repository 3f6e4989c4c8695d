"""What the manager answers about sessions: views combining the record, the container,
the proxy, the sync state and the transcript."""

from __future__ import annotations

import asyncio
import builtins
import logging
from pathlib import Path

from ..backends import ContainerState, ContainerStatus
from ..errors import ClauderonError
from ..gitsync import SyncState
from ..models import AgentKind, AgentStatus, Session, SessionStatus, SessionView
from .blocking import blocking
from .proxycontrol import ProxyControl
from .status import effective_status, status_reason, transcript_interrupted
from .syncing import Syncing

log = logging.getLogger(__name__)

TRANSCRIPT_TIMEOUT = 2.0  # seconds for reading every transcript `list` needs


class Views(ProxyControl, Syncing):
    """Part of SessionManager: reading sessions."""

    def view(
        self,
        session: Session,
        containers: dict[str, ContainerStatus] | None,
        sync: SyncState | None = None,
        interrupted: bool = False,
    ) -> SessionView:
        status = None
        if containers is not None and session.container:
            status = containers.get(session.container)
        view = SessionView(**session.model_dump(), **self.stats_view(session))
        if sync is not None:
            view.agent_branches = sorted(sync.agent)
            view.warnings += [
                f"both you and the agent moved branch {session.branch} at {c['at']}: the "
                f"agent's tip won; yours is kept as {c['ref']} (merge it: "
                f"git merge {c['ref']})"
                for c in sync.conflicts
            ]
        if containers is None:
            view.container_state = ContainerState.UNKNOWN.value
        elif session.container:
            view.container_state = (status.state if status else ContainerState.MISSING).value
            view.exit_code = status.exit_code if status else None
        view.state = session.status.value
        if session.status == SessionStatus.RUNNING and containers is not None:
            view.state = (status.state if status else ContainerState.MISSING).value
        elif session.status == SessionStatus.STOPPED and status and status.running:
            view.state = ContainerState.RUNNING.value  # started behind clauderon's back
        if containers is not None:
            calls = self.directory.model_calls_in_flight(session.name)
            view.agent_status = effective_status(
                session.agent_status, session.status, status, calls, interrupted
            )
            view.agent_status, view.agent_status_reason = status_reason(
                view.agent_status,
                status,
                calls,
                session.model_error,
                self.missing_credential_warning(session),
            )
        return view

    def created_view(self, session: Session) -> SessionView:
        """The view of a session whose container was just started (no engine round trip)."""
        assert session.container is not None
        return self.view(
            session, {session.container: ContainerStatus(session.container, ContainerState.RUNNING)}
        )

    async def _containers(self) -> dict[str, ContainerStatus] | None:
        try:
            everywhere = await self._inspect_everywhere(self._labels())
        except ClauderonError:
            return None  # the engine is down: still list what the store knows
        return {name: status for name, (_, status) in everywhere.items()}

    async def list(self, include_archived: bool = False) -> builtins.list[SessionView]:
        containers = await self._containers()
        syncs = self._sync_views()
        sessions = [
            s
            for s in self.store.list_sessions()
            if include_archived or s.status != SessionStatus.ARCHIVED
        ]
        interrupted = await self._interrupted(sessions)
        return [self.view(s, containers, syncs.get(s.id), s.name in interrupted) for s in sessions]

    async def get(self, name: str) -> SessionView:
        session = self._get(name)
        return await self.public_view(session)

    async def public_view(self, session: Session) -> SessionView:
        """What every route answers about a session: the view, never the raw record
        (which holds the proxy and hook tokens)."""
        interrupted = await self._interrupted([session])
        containers = await self._containers()
        sync = self.gitsync.state(session.id)
        return self.view(session, containers, sync, session.name in interrupted)

    async def _interrupted(self, sessions: builtins.list[Session]) -> set[str]:
        """Sessions whose Claude transcript ends with an interruption (Escape fires no
        hook). The transcript is the container's file: read in worker threads, without
        following links or opening special files, and never waited on for long."""
        asked = [
            s
            for s in sessions
            if s.agent == AgentKind.CLAUDE
            and s.agent_status == AgentStatus.WORKING
            and not self.directory.model_calls_in_flight(s.name)
        ]
        if not asked:
            return set()
        checks = [blocking(transcript_interrupted, Path(s.worktree), s.id) for s in asked]
        try:
            found = await asyncio.wait_for(asyncio.gather(*checks), TRANSCRIPT_TIMEOUT)
        except TimeoutError:
            log.warning("reading agent transcripts took over %ss; skipped", TRANSCRIPT_TIMEOUT)
            return set()
        return {s.name for s, interrupted in zip(asked, found, strict=True) if interrupted}
