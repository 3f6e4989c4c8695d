"""The numbers `list` shows for each session (ahead/behind, files changed, dirty), cached
and refreshed by the sync loop."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .. import review
from ..models import Session, SessionStatus
from .core import ManagerCore

log = logging.getLogger(__name__)

# Seconds between looks at a worktree's uncommitted changes: while its agent runs, and
# otherwise (only the user edits then).
DIRTY_INTERVAL = 10.0
DIRTY_INTERVAL_IDLE = 60.0


class BranchStats(ManagerCore):
    """Part of SessionManager: the cached numbers of `list`."""

    def stats_view(self, session: Session) -> dict[str, Any]:
        stats = self._stats.get(session.id)
        out: dict[str, Any] = {"merged": False}
        if stats is not None:
            out.update(
                ahead=stats.ahead,
                behind=stats.behind,
                changed_files=stats.changed_files,
                dirty=bool(stats.uncommitted),
            )
            out["merged"] = bool(session.merged_tip) and stats.key[0] == session.merged_tip
        return out

    def compute_stats(self, session: Session, force: bool = False) -> None:
        """Refresh the cached numbers of one session (blocking: run off the loop). Cheap
        when its branch and base branch did not move (two small file reads) and the
        worktree was looked at less than DIRTY_INTERVAL (stopped: _IDLE) ago."""
        common = Path(session.git_common_dir)
        if not common.is_dir():
            return
        key = (
            review.read_ref(common, f"refs/heads/{session.branch}"),
            review.read_ref(common, f"refs/heads/{session.base_ref}") if session.base_ref else None,
        )
        old = self._stats.get(session.id)
        now = time.monotonic()
        moved = old is None or old.key != key
        interval = (
            DIRTY_INTERVAL if session.status == SessionStatus.RUNNING else DIRTY_INTERVAL_IDLE
        )
        dirty_due = force or old is None or now - old.dirty_at >= interval
        if not moved and not dirty_due:
            return
        stats = review.Stats(key)
        if moved or force:
            stats.ahead, stats.behind, stats.committed = review.branch_stats(
                common, key[0], key[1], session.base_commit
            )
        else:
            assert old is not None
            stats.ahead, stats.behind, stats.committed = old.ahead, old.behind, old.committed
        if dirty_due or moved:
            if Path(session.worktree).is_dir() and Path(session.git_dir).is_dir():
                stats.uncommitted = self._worktree(session).changed_files()
            stats.dirty_at = now
        else:
            assert old is not None
            stats.uncommitted, stats.dirty_at = old.uncommitted, old.dirty_at
        self._stats[session.id] = stats

    def stats_round(self, sessions: list[Session]) -> None:
        """One pass of the sync loop over every session (blocking, in one worker thread);
        a session busy with an operation is left for the next pass."""
        live = {s.id for s in sessions}
        for sid in set(self._stats) - live:
            self._stats.pop(sid, None)
        for session in sessions:
            if self._lock.busy(session.name):
                continue
            try:
                self.compute_stats(session)
            except Exception as exc:  # a broken repository must not stop the loop
                log.debug("stats of %s: %s", session.name, exc)
