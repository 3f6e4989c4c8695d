"""The manager's review-and-land operations: diff, commit, merge, push, pull request, and
the cached numbers `list` shows (ahead/behind, files changed, dirty).

A mixin of `SessionManager` (it uses its store, locks and helpers): each operation brings
the branch up to date first (`sync`), then under the session's lock reads the record
again, runs the git work of `review.py` off the event loop, and saves.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from .. import github, review
from ..errors import ClauderonError, Conflict, InvalidInput
from ..models import (
    CommitRequest,
    MergeRequest,
    PullRequestRequest,
    PushRequest,
    Session,
    SessionStatus,
    utcnow,
)
from .blocking import blocking, iterate_in_thread
from .syncing import Syncing

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 100_000


class NoGitHubToken(ClauderonError):
    code = "no_github_token"
    status = 400


def _check_text(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise InvalidInput(f"the {what} is empty")
    if "\x00" in value:
        raise InvalidInput(f"the {what} contains a NUL byte")
    if len(value.encode()) > MAX_MESSAGE_BYTES:
        raise InvalidInput(f"the {what} is longer than {MAX_MESSAGE_BYTES} bytes")
    return value


def _base_of(session: Session) -> str | None:
    """Where the work goes back to: `base_ref` (recorded at creation); for a session made
    before it was recorded, --base-branch when that is a branch."""
    if session.base_ref:
        return session.base_ref
    name = (session.base_branch or "").removeprefix("refs/heads/")
    common = Path(session.git_common_dir)
    if name and review.read_ref(common, f"refs/heads/{name}") is not None:
        return name
    return None


def _check_remote(remote: str) -> str:
    if not remote or remote.startswith("-") or len(remote) > 100 or not remote.isprintable():
        raise InvalidInput(f"invalid remote name {remote!r}")
    return remote


def _ssh_env(sock: str | None) -> dict[str, str]:
    if not sock:
        return {}
    if not sock.startswith("/") or "\x00" in sock or len(sock) > 4096:
        raise InvalidInput("invalid ssh_auth_sock: an absolute path is expected")
    return {"SSH_AUTH_SOCK": sock}


class Landing(Syncing):
    """Part of SessionManager."""

    def _need_worktree(self, session: Session) -> None:
        if session.status in (SessionStatus.CREATING, SessionStatus.DELETING):
            raise Conflict(f"session {session.name!r} is {session.status.value}")
        if not (Path(session.worktree).is_dir() and Path(session.git_dir).is_dir()):
            raise ClauderonError(
                f"the worktree {session.worktree} of session {session.name!r} is missing",
                code="worktree_missing",
                status=409,
            )

    # --- diff -------------------------------------------------------------------------

    async def diff(
        self,
        name: str,
        *,
        stat: bool = False,
        name_only: bool = False,
        base: str | None = None,
        color: bool = False,
        numstat: bool = False,
    ) -> AsyncIterator[bytes]:
        """Everything the session changed against `base` (default: the commit it started
        from): its commits, uncommitted and untracked files. Cut at review.MAX_DIFF_BYTES."""
        await self.sync(name)
        async with self._lock(name):
            session = self._get(name)
            self._need_worktree(session)
            common = Path(session.git_common_dir)
            worktree = self._worktree(session)

            def prepare() -> list[str]:
                base_sha = review.resolve_base(common, base) if base else session.base_commit
                with review.snapshot(worktree) as snap:
                    tree = snap.tree
                return review.diff_command(
                    common,
                    base_sha,
                    tree,
                    stat=stat,
                    name_only=name_only,
                    color=color,
                    numstat=numstat,
                )

            argv = await blocking(prepare)
        return iterate_in_thread(review.stream_command(argv, common))

    async def changes(self, name: str, base: str | None = None) -> dict[str, Any]:
        """The changed files as data: path, lines added and deleted (None: binary)."""
        chunks = []
        async for chunk in await self.diff(name, base=base, numstat=True):
            chunks.append(chunk)
        data = b"".join(chunks)
        session = self._get(name)
        return {
            "name": name,
            "base": base or session.base_commit,
            "truncated": len(data) >= review.MAX_DIFF_BYTES,
            "files": review.parse_numstat(data),
        }

    # --- commit -----------------------------------------------------------------------

    async def commit(self, name: str, req: CommitRequest) -> dict[str, Any]:
        from .manager import git_identity

        message = _check_text(req.message, "commit message")
        await self.sync(name)
        async with self._lock(name):
            session = self._get_to_change(name)
            self._need_worktree(session)
            identity = await blocking(git_identity, Path(session.repo), session.name)
            commit, files = await blocking(
                review.commit_all,
                self._worktree(session),
                Path(session.git_common_dir),
                session.prompt,
                message,
                identity,
            )
            # The host's branch moved: the sync writes it into the session's own git dir
            # (and the host's index into the container's), so the agent sees the commit.
            await self._sync_locked(session, force=True)
            self._save(session, "session_committed", commit=commit, files=len(files))
            await blocking(self.compute_stats, session, True)
            return {"name": name, "branch": session.branch, "commit": commit, "files": files}

    # --- merge ------------------------------------------------------------------------

    async def merge(self, name: str, req: MergeRequest) -> dict[str, Any]:
        from .manager import git_identity

        if req.mode not in review.MODES:
            raise InvalidInput(f"unknown merge mode {req.mode!r}: use merge, squash or rebase")
        message = _check_text(req.message, "merge message")
        if req.into is not None:
            review.check_branch_name(req.into, "--into branch")
        await self.sync(name)
        async with self._lock(name):
            session = self._get_to_change(name)
            self._need_worktree(session)
            into = req.into or _base_of(session)
            if not into:
                raise InvalidInput(
                    f"session {name!r} was not made from a branch: say where to merge with "
                    "--into BRANCH"
                )
            owner = next(
                (
                    s.name
                    for s in self.store.list_sessions()
                    if s.branch == into and s.git_common_dir == session.git_common_dir
                ),
                None,
            )
            if owner is not None:
                raise Conflict(
                    f"{into} is the branch of session {owner!r}: merge into a branch of yours"
                )
            changed = await blocking(self._worktree(session).changed_files)
            if changed:
                shown = ", ".join(changed[:3]) + (", …" if len(changed) > 3 else "")
                raise review.UncommittedWork(
                    f"session {name!r} has {len(changed)} uncommitted file(s) ({shown}): "
                    f"commit them first with `clauderon commit {name}`, then merge again"
                )
            identity = await blocking(git_identity, Path(session.repo), session.name)
            common = Path(session.git_common_dir)

            def land() -> review.MergeOutcome:
                outcome = review.plan_merge(
                    common,
                    session.name,
                    session.branch,
                    into,
                    req.mode,
                    message,
                    session.prompt,
                    identity,
                )
                return review.apply_merge(
                    common,
                    outcome,
                    f"clauderon merge {session.name} ({req.mode})",
                    not_under=self.paths.worktrees,
                )

            outcome = await blocking(land)
            session.merged_into, session.merged_commit = into, outcome.commit
            session.merged_tip, session.merged_at = outcome.session_tip, utcnow()
            self._save(
                session,
                "session_merged",
                into=into,
                mode=req.mode,
                commit=outcome.commit,
                already=outcome.already,
            )
            await blocking(self.compute_stats, session, True)
            return {
                "name": name,
                "into": into,
                "mode": req.mode,
                "commit": outcome.commit,
                "previous": outcome.previous,
                "already_merged": outcome.already,
                "fast_forward": outcome.fast_forward,
                "checkout_updated": outcome.checkout,
            }

    # --- push and pull requests ------------------------------------------------------------

    async def _push_locked(self, session: Session, remote: str, env: dict[str, str]) -> str:
        return await blocking(review.push, Path(session.repo), remote, session.branch, env)

    async def push(self, name: str, req: PushRequest) -> dict[str, Any]:
        remote = _check_remote(req.remote)
        env = _ssh_env(req.ssh_auth_sock)
        await self.sync(name)
        async with self._lock(name):
            session = self._get_to_change(name)
            status = await self._push_locked(session, remote, env)
            tip = review.read_ref(Path(session.git_common_dir), f"refs/heads/{session.branch}")
            self._save(session, "session_pushed", remote=remote, commit=tip)
            return {
                "name": name,
                "remote": remote,
                "branch": session.branch,
                "commit": tip,
                "status": status,
            }

    async def pull_request(self, name: str, req: PullRequestRequest) -> dict[str, Any]:
        remote = _check_remote(req.remote)
        env = _ssh_env(req.ssh_auth_sock)
        title = _check_text(req.title, "title")
        body = req.body
        if body is not None and ("\x00" in body or len(body.encode()) > MAX_MESSAGE_BYTES):
            raise InvalidInput(f"the body has a NUL byte or is over {MAX_MESSAGE_BYTES} bytes")
        if req.base is not None:
            review.check_branch_name(req.base, "--base branch")
        session = self._get(name)
        if session.pr_url:
            return {"name": name, "url": session.pr_url, "existing": True}
        credential = self.proxy.credentials.get("github_token")
        if credential is None or not credential.value:
            raise NoGitHubToken(
                "no GitHub token: set $GITHUB_TOKEN (or $GH_TOKEN) in the daemon's environment "
                "or `clauderon config set-credential github_token`"
            )
        base = req.base or _base_of(session)
        if not base:
            raise InvalidInput(
                f"session {name!r} was not made from a branch: give the pull request's --base"
            )
        await self.sync(name)
        async with self._lock(name):
            session = self._get_to_change(name)
            if session.pr_url:
                return {"name": name, "url": session.pr_url, "existing": True}
            repo, common = Path(session.repo), Path(session.git_common_dir)
            url = await blocking(review.remote_url, repo, remote)
            host, owner, repo_name = review.parse_github_url(url)
            status = await self._push_locked(session, remote, env)

            def commits() -> str:
                start = review.rev(common, f"refs/heads/{base}") or session.base_commit
                return review.main_git(
                    common, ["log", "--format=* %s", f"{start}..refs/heads/{session.branch}"]
                ).stdout

            subjects = await blocking(commits)
            pr_url, existed = await github.create_pull(
                github.api_url_for(host, self.github_api_url),
                credential.value,
                owner,
                repo_name,
                head=session.branch,
                base=base,
                title=title or review.first_line(session.prompt) or f"Session {name}",
                body=body
                if body is not None
                else (
                    f"{session.prompt.strip()}\n\n---\nCommits:\n{subjects}\n"
                    f"Opened by clauderon from session `{name}`."
                ),
                draft=req.draft,
            )
            session.pr_url = pr_url
            self._save(session, "session_pull_request", url=pr_url)
            return {"name": name, "url": pr_url, "existing": existed, "pushed": status}
