"""Creating, starting, stopping, archiving, refreshing and deleting sessions.

A session's resources go one way, `_teardown`: when a creation fails or is cancelled
(Ctrl-C), when it is deleted, and when start-up finishes either for a daemon that died
(recovery.py), so nothing is left half made and nothing is forgotten by one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from .. import git
from ..agents import Agent, get_agent
from ..agents.provision import ensure_agent
from ..backends import ContainerState, Progress
from ..container import (
    GitMounts,
    ProvidedAgent,
    ProxyInputs,
    SpecInputs,
    build_container_spec,
    container_name,
    prepare_mountpoints,
)
from ..errors import (
    BackendUnavailable,
    Cancelled,
    ClauderonError,
    Conflict,
    InvalidInput,
    WouldLoseWork,
)
from ..gitsync import SessionGit, extra_alternates
from ..models import CreateSessionRequest, DeleteResult, Session, SessionStatus
from ..spec import Mount
from .blocking import blocking
from .savework import SavingWork
from .validation import _CONTROL_RE, Validation

log = logging.getLogger(__name__)

CREATE_STEPS = 5


def git_identity(repo: Path, session_name: str) -> dict[str, str]:
    """The user's git identity for commits made inside the container (one git call)."""
    proc = git.run_git(
        ["config", "-z", "--get-regexp", r"^user\.(name|email)$"], cwd=repo, check=False
    )
    found: dict[str, str] = {}
    for entry in proc.stdout.split("\0"):
        key, _, value = entry.partition("\n")
        if key in ("user.name", "user.email"):
            found[key] = _CONTROL_RE.sub("", value.strip())  # the last one set wins
    name = found.get("user.name") or f"clauderon ({session_name})"
    email = found.get("user.email") or "clauderon@localhost"
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_COMMITTER_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_EMAIL": email,
    }


class Lifecycle(Validation, SavingWork):
    """Part of SessionManager: create … delete."""

    async def create(self, req: CreateSessionRequest, progress: Progress) -> Session:
        """Create a session; cancellable through `cancel_create(req.request_id)`."""
        task = asyncio.create_task(self._create(req, progress))
        if req.request_id:
            self._creations[req.request_id] = task
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The caller went away (client disconnected): that cancels the creation.
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        finally:
            if req.request_id:
                self._creations.pop(req.request_id, None)

    async def cancel_create(self, request_id: str) -> bool:
        task = self._creations.get(request_id)
        if task is None or task.done():
            return False
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        return True

    async def _create(self, req: CreateSessionRequest, progress: Progress) -> Session:
        await blocking(self.backends.get(self.backends.check_kind(req.backend)).check)
        session, repo, agent = await blocking(self._validate, req)
        backend = self._backend(session)
        await self.ensure_proxy()
        await blocking(self._forwarder)  # built once; without a compiler: the fix, first
        progress = self._broadcasting(session.name, progress)
        inserted = False  # the row reserves the name: only then is anything ours to remove
        step = 0

        def report(message: str) -> None:
            nonlocal step
            step += 1
            progress(message, step, CREATE_STEPS)

        try:
            async with self._lock(session.name):
                self.store.insert_session(session)  # reserves the name
                inserted = True
                self.directory.register(session)
                session_dir = self.paths.session_dir(session.name)
                await self._open_proxy_socket(session)
                self._publish("session_created", session)

                report(f"Checking image {session.image}")
                await blocking(backend.ensure_image, session.image, session.pull_policy, progress)
                provided = await self._provide_agent(session, agent, progress)

                report(f"Creating worktree on branch {session.branch}")
                worktree = Path(session.worktree)
                git_dir = await blocking(
                    git.add_worktree, repo.root, worktree, session.branch, session.base_commit
                )
                session.git_dir = str(git_dir)
                if session.subdirectory and not (worktree / session.subdirectory).is_dir():
                    raise InvalidInput(
                        f"{session.subdirectory!r} does not exist on "
                        f"{session.base_branch or 'HEAD'}: choose another --repo or --base-branch"
                    )

                report("Preparing the agent's settings")
                uploads = self.paths.uploads / session.id
                session_dir.mkdir(parents=True, exist_ok=True)
                uploads.mkdir(parents=True, exist_ok=True)
                self._save(session)

                report(f"Starting container {self._container_name(session)}")
                session.container = self._container_name(session)
                # With the session's own git dir and mirror (removed with session_dir).
                await self._start_container(session, agent, provided, new=True)

                report("Session running")
                session.status = SessionStatus.RUNNING
                self._save(session, "session_running")
                return session
        except BaseException as exc:
            reason = "cancelled" if isinstance(exc, asyncio.CancelledError) else str(exc)
            log.info("create %s failed (%s): rolling back", session.name, reason)
            if inserted:
                await asyncio.shield(self._teardown(session, creating=True))
            self.events.publish(
                {"type": "session_deleted", "session": session.name, "reason": reason}
            )
            if isinstance(exc, asyncio.CancelledError):
                raise Cancelled("creation cancelled; nothing was left behind") from None
            raise

    async def _provide_agent(
        self, session: Session, agent: Agent, progress: Progress
    ) -> ProvidedAgent | None:
        """The agent clauderon provides, or None when the image has the agent itself."""
        image_id = await blocking(self._backend(session).image_id, session.image)
        facts_json = self.store.get_image_facts(image_id)
        if facts_json is None:
            progress(f"Inspecting image {session.image} (once per image)", None, None)
            facts = await blocking(self._backend(session).image_facts, session.image)
            facts_json = {
                "commands": sorted(facts.commands),
                "musl": facts.musl,
                "path": facts.path,
            }
            self.store.put_image_facts(image_id, facts_json)
        if agent.command in facts_json["commands"]:
            return None
        version = session.agent_version or agent.default_version
        arch = await blocking(self._backend(session).architecture)
        progress(f"Providing {agent.display_name} {version} (fetched once per version)", None, None)
        directory = await blocking(
            ensure_agent, self.paths.agents, agent, version, arch, facts_json["musl"]
        )
        return ProvidedAgent(directory, facts_json["path"])

    async def _start_container(
        self, session: Session, agent: Agent, provided: ProvidedAgent | None, new: bool = False
    ) -> None:
        """Settings, identity and the session's git dir side by side (each in a thread),
        then the container. A new session's git dir is made here; one made before
        per-session git dirs moves to one (its container is gone by now)."""
        session_dir = self.paths.session_dir(session.name)
        git_dir = (
            blocking(self.gitsync.prepare, session, session.base_commit)
            if new
            else blocking(self.gitsync.ensure, session)
        )
        done = await asyncio.gather(
            blocking(agent.write_settings, session, session_dir, self.paths.home),
            blocking(git_identity, Path(session.repo), session.name),
            git_dir,
            return_exceptions=True,  # all three end before an undo may run
        )
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        agent_mounts, identity, lay = cast(tuple[list[Mount], dict[str, str], SessionGit], done)
        inputs = SpecInputs(
            uid=self.uid,
            gid=self.gid,
            git=GitMounts(
                git_dir=lay.git_dir,
                admin_dir=lay.admin_dir,
                container_admin=lay.container_admin,
                objects=lay.common_dir / "objects",
                dotgit=lay.dotgit,
                alternates=tuple(extra_alternates(lay.common_dir)),
            ),
            git_identity=identity,
            provided_agent=provided,
            proxy=ProxyInputs(
                self.proxy.port,
                self.ca_cert,
                self._placeholders(),
                socket_dir=self._proxy_dir(session),
                forwarder=await blocking(self._forwarder),
            ),
        )
        spec = build_container_spec(session, agent, self.paths, inputs, agent_mounts)
        prepare_mountpoints(spec, Path(session.worktree))
        await blocking(self._backend(session).create, spec)

    async def _recreate(
        self, session: Session, progress: Progress, pull: bool = False
    ) -> str | None:
        """Build a new container from the record (refresh, unarchive, start, reconcile)."""
        if not self.proxy.has_session(session.name):
            await self._open_proxy_socket(session)
        progress = self._broadcasting(session.name, progress)
        agent = get_agent(session.agent)
        backend = self._backend(session)
        warning = None
        if pull:
            warning = await blocking(backend.refresh_image, session.image, progress)
        else:
            await blocking(backend.ensure_image, session.image, session.pull_policy, progress)
        provided = await self._provide_agent(session, agent, progress)
        if not Path(session.worktree).is_dir():
            raise ClauderonError(
                f"the worktree {session.worktree} is gone; the session cannot run without it "
                f"(delete it with `clauderon delete {session.name}`)",
                code="worktree_missing",
                status=409,
            )
        self.consoles.forget(session.name)
        await blocking(self._backend(session).remove, self._container_name(session))
        session.container = container_name(session.name, self.paths.instance)
        await self._start_container(session, agent, provided)
        return warning

    async def stop(self, name: str) -> Session:
        async with self._lock(name):
            session = self._get_to_change(name)
            self._require(session, SessionStatus.RUNNING, SessionStatus.STOPPED)
            if session.container:
                await blocking(self._backend(session).stop, session.container)
            self.consoles.forget(name)
            session.status = SessionStatus.STOPPED
            return self._save(session, "session_stopped")

    async def start(self, name: str, progress: Progress) -> Session:
        async with self._lock(name):
            session = self._get_to_change(name)
            self._require(
                session, SessionStatus.RUNNING, SessionStatus.STOPPED, SessionStatus.FAILED
            )
            status = (
                await blocking(self._backend(session).inspect, session.container)
                if session.container
                else None
            )
            if status is None:
                await self._recreate(session, progress)
            elif status.state != ContainerState.RUNNING:
                await blocking(self._backend(session).start, session.container)
            session.status, session.error = SessionStatus.RUNNING, None
            return self._save(session, "session_running")

    async def archive(self, name: str) -> Session:
        async with self._lock(name):
            session = self._get_to_change(name)
            self._require(
                session, SessionStatus.RUNNING, SessionStatus.STOPPED, SessionStatus.FAILED
            )
            await self._sync_locked(session, force=True)  # its last commits, first
            if session.container:
                await blocking(self._backend(session).remove, session.container)
            self.consoles.forget(name)
            session.container = None
            session.status = SessionStatus.ARCHIVED
            return self._save(session, "session_archived")

    async def unarchive(self, name: str, progress: Progress) -> Session:
        async with self._lock(name):
            session = self._get_to_change(name)
            self._require(session, SessionStatus.ARCHIVED)
            try:
                await self._recreate(session, progress)
            except BaseException:
                session.container = None
                await blocking(self._backend(session).remove, self._container_name(session))
                raise
            session.status, session.error = SessionStatus.RUNNING, None
            return self._save(session, "session_running")

    async def refresh(self, name: str, progress: Progress) -> tuple[Session, str | None]:
        async with self._lock(name):
            session = self._get_to_change(name)
            if session.status == SessionStatus.ARCHIVED:
                raise Conflict(f"session {name!r} is archived: `clauderon unarchive {name}` first")
            self._require(
                session, SessionStatus.RUNNING, SessionStatus.STOPPED, SessionStatus.FAILED
            )
            try:
                warning = await self._recreate(session, progress, pull=True)
            except ClauderonError as exc:
                session.status, session.error = SessionStatus.FAILED, exc.message
                self._save(session, "session_failed", error=exc.message)
                raise
            session.status, session.error = SessionStatus.RUNNING, None
            return self._save(session, "session_running"), warning

    async def delete(self, name: str, force: bool) -> DeleteResult:
        async with self._lock(name):
            session = self._get_to_change(name)
            if session.status == SessionStatus.CREATING:
                raise Conflict(f"session {name!r} is still being created")
            saved_ref: str | None = None
            kept: list[str] = []
            if not session.removing_files:  # else a delete failed while removing files:
                # the work was saved then, and what is left is removal
                saved_ref, kept = await self._stop_and_secure(session, force)
            session.status = SessionStatus.DELETING
            self._save(session, "session_deleting")
            try:
                late_ref, late_kept = await self._teardown(session)
                saved_ref, kept = saved_ref or late_ref, sorted({*kept, *late_kept})
            except Exception as exc:
                session.status, session.error = SessionStatus.FAILED, f"delete failed: {exc}"
                self._save(session, "session_failed", error=session.error)
                raise
            self.store.add_event(session, "session_deleted", {"saved_ref": saved_ref})
            self.events.publish({"type": "session_deleted", "session": session.name})
            hint = None
            if saved_ref:
                hint = f"git -C {session.repo} branch {session.name}-restored {saved_ref}"
            return DeleteResult(
                name=session.name, saved_ref=saved_ref, restore_hint=hint, agent_branches=kept
            )

    async def _stop_and_secure(self, session: Session, force: bool) -> tuple[str | None, list[str]]:
        """Refuse (without force) or save the session's work, its agent stopped first."""
        if not force:  # refuse before touching the agent
            await self._sync_locked(session, force=True)
            await blocking(self._secure_work, session, False)
        # Stop the agent before the last sync, check and save: a commit it made after
        # them would be lost with its git dir and worktree.
        was_running = False
        if session.container:
            status = await blocking(self._backend(session).inspect, session.container)
            was_running = status is not None and status.state == ContainerState.RUNNING
            await blocking(self._backend(session).stop, session.container)
        await self._sync_locked(session, force=True)  # the agent's last commits first
        try:
            saved_ref, kept = await blocking(self._secure_work, session, force)
        except WouldLoseWork:  # the agent made work in between: leave it running
            if was_running and session.container:
                await blocking(self._backend(session).start, session.container)
            raise
        return saved_ref, kept

    async def _teardown(
        self, session: Session, creating: bool = False
    ) -> tuple[str | None, list[str]]:
        """The one way a session's resources go (its lock held): the container; then,
        for a session that was running, one last sync that saves what the agent committed
        late; the worktree, the branch, the session's files and uploads; the row; and what
        the daemon keeps about it (sync state, proxy policy and socket, console).

        `creating`: undoing a creation (failed, cancelled, or found half made at
        start-up): nothing to save, and the branch goes only while it is still at the base
        commit. A failed creation's undo goes on past a step that fails (logged), so the
        name is free again (but not past an engine that is down); otherwise the first
        failure is raised and the row stays.
        Once the late work is saved the record says so (`removing_files`): a daemon that
        finishes the delete after a crash goes straight to the removal. Returns what the
        late sync saved (ref, agent branches)."""
        saved: tuple[str | None, list[str]] = (None, [])
        backend = self._backend(session)
        self.consoles.forget(session.name)
        only_at = session.base_commit if creating else None
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("container", lambda: backend.remove(self._container_name(session))),
            ("files", lambda: self._remove_files(session, only_at)),
        ]
        for what, step in steps:
            try:
                await blocking(step)
            except Exception as exc:
                # With the engine down the row stays, so the container is not forgotten:
                # start-up or the periodic reconcile undoes it once the engine answers.
                if not creating or isinstance(exc, BackendUnavailable):
                    raise
                log.exception("undoing %s: could not remove its %s", session.name, what)
            if what == "container" and not creating and not session.removing_files:
                saved = await self._save_late_work(session)
                session.removing_files = True
                self._save(session)
        self.store.delete_session(session.id)
        self.gitsync.forget(session.id)
        self.directory.unregister(session)
        self.proxy.close_session(session.name)
        return saved

    def _remove_files(self, session: Session, only_at: str | None = None) -> None:
        """The worktree, the branch (with `only_at`: only while it points there), the
        session's files and uploads. Blocking."""
        repo = Path(session.repo)
        if repo.is_dir():
            self._remove_worktree(session)
            git.delete_branch(repo, session.branch, only_at=only_at)
        else:
            git.remove_tree(Path(session.worktree))
        git.remove_tree(self.paths.session_dir(session.name))
        git.remove_tree(self.paths.uploads / session.id)

    def _remove_worktree(self, session: Session) -> None:
        git.remove_worktree(
            Path(session.repo),
            Path(session.worktree),
            Path(session.git_dir) if session.git_dir else None,
            Path(session.git_common_dir) if session.git_common_dir else None,
        )
