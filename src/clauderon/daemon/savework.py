"""Saving work before anything is removed: what would be lost, and the refs that keep it
(`refs/clauderon/<name>/…`)."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import git
from ..errors import WouldLoseWork
from ..gitsync import unsaved_agent_branches
from ..models import Session
from .blocking import blocking
from .syncing import Syncing

log = logging.getLogger(__name__)


class SavingWork(Syncing):
    """Part of SessionManager: what a delete must not lose."""

    async def _save_late_work(self, session: Session) -> tuple[str | None, list[str]]:
        """With the container gone, one last sync: what the agent committed after the work
        check is saved too, never dropped with its git dir."""
        late = await self._sync_locked(session, force=True)
        if late is None or not (late.tip or late.agent_branches is not None):
            return None, []
        return await blocking(self._secure_work, session, True)

    def _secure_work(self, session: Session, force: bool) -> tuple[str | None, list[str]]:
        """Refuse to lose work; with force, save it under refs/clauderon/<name>/ first.
        Returns the saved ref and the agent's branches kept under
        refs/clauderon/<name>/branches/ (those with commits on no user branch)."""
        repo = Path(session.repo)
        if not (repo.is_dir() and Path(session.git_common_dir).is_dir()):
            return None, []  # the repository itself is gone: there is nothing left to save
        worktree = self._worktree(session)
        # Commits landed by `clauderon merge` (squash and rebase included) are not lost.
        merged = (session.merged_tip,) if session.merged_tip else ()
        if Path(session.worktree).is_dir() and Path(session.git_dir).is_dir():
            changed = worktree.changed_files()
            commits = worktree.unique_commits(merged)
        else:
            changed, commits = [], git.unique_branch_commits(repo, session.branch, merged)
        state = self.gitsync.state(session.id)
        lay = self.gitsync.layout(session)
        branches = unsaved_agent_branches(lay, state.agent) if state else []
        if not force and (changed or commits or branches):
            parts = []
            if changed:
                shown = ", ".join(changed[:3]) + (", …" if len(changed) > 3 else "")
                parts.append(f"{len(changed)} uncommitted file(s) ({shown})")
            if commits:
                parts.append(f"{len(commits)} commit(s) on no other branch")
            if branches:
                shown = ", ".join(branches[:3]) + (", …" if len(branches) > 3 else "")
                parts.append(f"{len(branches)} branch(es) of the agent ({shown})")
            raise WouldLoseWork(
                f"session {session.name!r} has {' and '.join(parts)}: merge or push them, or "
                f"`clauderon delete --force {session.name}` to save them under "
                f"refs/clauderon/{session.name}/ and delete"
            )
        if state:  # agent branches with nothing of their own are not kept
            for name in set(state.agent) - set(branches):
                lay.git(["update-ref", "-d", f"refs/clauderon/{session.name}/branches/{name}"])
        if not changed and not commits:
            return None, branches
        if Path(session.worktree).is_dir() and Path(session.git_dir).is_dir():
            return worktree.save_work(session.name), branches
        return git.save_branch(repo, session.branch, session.name), branches
