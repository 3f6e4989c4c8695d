"""The SessionManager: the one place that changes sessions.

A facade over the parts it is made of, one module each: `validation` (checking a create
request), `lifecycle` (create … delete), `savework` (what a delete must not lose),
`recovery` (reconcile, start-up recovery, caches), `syncing` (the git sync loop),
`proxycontrol` (the credential proxy and credentials), `views` (reading sessions) and
`landing` (review and land). This module holds the state they share, the helpers every
change uses (lock, read again, change, save), the agents' status reports, and consoles.

Every operation validates first and changes nothing until the input is known to be good.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from ..backends import ContainerState
from ..errors import Conflict, InvalidInput
from ..models import SessionStatus
from ..terminal import DETACH_HUMAN
from .auth import new_token
from .blocking import blocking, iterate_in_thread
from .console import Console
from .core import NamedLocks
from .landing import Landing
from .lifecycle import git_identity
from .recovery import RECONCILE_BACKOFF, WORKTREE_MISSING, Recovery, reconcile_due
from .syncing import SYNC_INTERVAL
from .validation import MAX_PROMPT_BYTES
from .views import Views

log = logging.getLogger(__name__)

__all__ = [
    "MAX_PROMPT_BYTES",
    "RECONCILE_BACKOFF",
    "SYNC_INTERVAL",
    "WORKTREE_MISSING",
    "NamedLocks",
    "SessionManager",
    "git_identity",
    "reconcile_due",
]


class SessionManager(Recovery, Views, Landing):
    """The one place that changes sessions: its parts composed, plus the agents' status
    reports and consoles."""

    # --- consoles -------------------------------------------------------------------

    async def console(self, name: str) -> Console:
        """The agent's terminal, shared by every viewer (attached on first use)."""
        session = self._get(name)
        if session.status != SessionStatus.RUNNING or not session.container:
            raise Conflict(
                f"session {name!r} is {session.status.value}: `clauderon start {name}` first"
            )
        status = await blocking(self._backend(session).inspect, session.container)
        if status is None or status.state != ContainerState.RUNNING:
            raise Conflict(
                f"the agent of {name!r} is not running (its container is "
                f"{status.state if status else 'missing'})"
            )
        return await self.consoles.open(name, session.container, self._backend(session))

    async def send(self, name: str, text: str) -> None:
        if not text.strip():
            raise InvalidInput("the message is empty")
        if "\x00" in text:
            raise InvalidInput("the message contains a NUL byte")
        console = await self.console(name)
        await console.send_message(text)
        self.store.add_event(self._get(name), "message_sent", {"length": len(text)})

    # --- API tokens of the TCP listener (auth.py) ------------------------------------

    def new_token(self, name: str) -> tuple[str, str]:
        """Make an API token; only its hash is stored. Returns (id, token)."""
        return new_token(self.store, name)

    def list_tokens(self) -> list[dict[str, str]]:
        return self.store.list_tokens()

    def delete_token(self, token_id: str) -> bool:
        return self.store.delete_token(token_id)

    # --- attach and logs ------------------------------------------------------------

    async def attach_info(self, name: str) -> dict[str, Any]:
        session = self._get(name)
        if session.status == SessionStatus.ARCHIVED:
            raise Conflict(f"session {name!r} is archived: `clauderon unarchive {name}` first")
        if not session.container:
            raise Conflict(f"session {name!r} has no container")
        status = await blocking(self._backend(session).inspect, session.container)
        if status is None:
            raise Conflict(f"the container of {name!r} is missing: run `clauderon start {name}`")
        if status.state != ContainerState.RUNNING:
            if session.print_mode:
                raise Conflict(
                    f"session {name!r} ran once in print mode and has exited: see "
                    f"`clauderon logs {name}`"
                )
            await blocking(self._backend(session).start, session.container)
        return {"detach_keys": DETACH_HUMAN, "container": session.container}

    async def logs(self, name: str, follow: bool, tail: int | None) -> AsyncIterator[bytes]:
        session = self._get(name)
        if not session.container:
            raise Conflict(f"session {name!r} has no container (it is {session.status.value})")
        if await blocking(self._backend(session).inspect, session.container) is None:
            raise Conflict(f"the container of {name!r} is missing")
        iterator = await blocking(self._backend(session).logs, session.container, follow, tail)
        async for chunk in iterate_in_thread(iterator):
            yield chunk
