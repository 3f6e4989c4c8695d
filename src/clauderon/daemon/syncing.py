"""The manager's side of the git sync (gitsync.py): on demand, and every second for each
session with a container, under the session's lock."""

from __future__ import annotations

import asyncio
import logging
import os

from ..gitsync import SyncResult, SyncState
from ..models import Session, SessionStatus
from .blocking import blocking
from .stats import BranchStats

log = logging.getLogger(__name__)

# How often the agent's commits are brought to the host (tests may slow it down).
SYNC_INTERVAL = float(os.environ.get("CLAUDERON_SYNC_INTERVAL", "1.0"))


class Syncing(BranchStats):
    """Part of SessionManager: the git sync loop."""

    async def sync(self, name: str) -> SyncResult | None:
        """Bring a session's branch up to date on the host now: what a command that reads
        the branch (diff, merge…) calls first."""
        async with self._lock(name):
            return await self._sync_locked(self._get(name), force=True)

    async def _sync_locked(self, session: Session, force: bool = False) -> SyncResult | None:
        try:
            result = await blocking(self.gitsync.sync, session, force)
        except Exception:  # a broken repository must not stop the loop or a delete
            log.exception("git sync of %s failed", session.name)
            return None
        if result is not None:
            self._publish_sync(session, result)
        return result

    def _publish_sync(self, session: Session, result: SyncResult) -> None:
        base = {"session": session.name, "branch": session.branch}
        if result.tip or result.written_back:
            self.events.publish(
                {
                    "type": "branch_updated",
                    **base,
                    "tip": result.tip or result.written_back,
                    "from": "agent" if result.tip else "host",
                    "saved": result.saved,
                }
            )
        if result.conflict:
            self.store.add_event(session, "branch_conflict", result.conflict)
            self.events.publish({"type": "branch_conflict", **base, **result.conflict})
        if result.agent_branches is not None:
            self.events.publish(
                {"type": "agent_branches", **base, "agent_branches": sorted(result.agent_branches)}
            )

    async def sync_forever(self, interval: float) -> None:
        """Every `interval` seconds, each session with a container: cheap when nothing
        changed; a session busy with an operation is left for the next round."""
        while True:
            await asyncio.sleep(interval)
            try:
                # Read in a thread: every second, every session's record (the loop
                # carries the proxy; `bench_loop.py --loop-slow` caught these reads).
                records = await blocking(self.store.list_sessions)
                sessions = [
                    s
                    for s in records
                    if s.container
                    and s.status not in (SessionStatus.CREATING, SessionStatus.DELETING)
                ]
                await asyncio.gather(*(self._sync_if_free(s) for s in sessions))
                records = await blocking(self.store.list_sessions)
                live = [
                    s
                    for s in records
                    if s.status not in (SessionStatus.CREATING, SessionStatus.DELETING)
                ]
                await blocking(self.stats_round, live)  # what `list` shows (landing.py)
            except Exception:
                log.exception("git sync round failed")

    async def _sync_if_free(self, session: Session) -> None:
        if self._lock.busy(session.name):
            return
        async with self._lock(session.name):
            fresh = await blocking(self.store.get_session, session.name)
            if fresh is not None and fresh.id == session.id and fresh.container:
                await self._sync_locked(fresh)

    def _sync_views(self) -> dict[str, SyncState]:
        return {sid: SyncState.from_row(*row) for sid, row in self.store.list_git_sync().items()}
