"""Reconcile and recovery: making the store, the containers and the worktrees agree, at
start-up (finishing what a killed daemon left half done) and periodically."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ..backends import Backend, CacheVolume, ContainerState, ContainerStatus, Progress
from ..container import cache_volumes
from ..errors import BackendUnavailable, ClauderonError
from ..models import Session, SessionStatus, utcnow
from .blocking import blocking
from .lifecycle import Lifecycle
from .syncing import SYNC_INTERVAL

log = logging.getLogger(__name__)

# Delays before each attempt to recreate a missing container, then the daemon gives up.
RECONCILE_BACKOFF = (30.0, 120.0, 300.0)
WORKTREE_MISSING = (
    "its worktree is missing (nothing was deleted; restore it, or delete the session)"
)


def reconcile_due(attempts: int, last: datetime, now: datetime) -> bool:
    """Whether the periodic reconcile should try again to recreate a missing container."""
    if attempts >= len(RECONCILE_BACKOFF):
        return False
    return (now - last).total_seconds() >= RECONCILE_BACKOFF[attempts]


class Recovery(Lifecycle):
    """Part of SessionManager: reconcile, start-up recovery, caches."""

    async def reconcile(
        self, remove_orphans: bool, progress: Progress, manual: bool = True
    ) -> dict[str, Any]:
        """Make the store, the containers and the worktrees agree, as far as is safe.

        A manual pass (`clauderon reconcile`) recreates a missing container at once; the
        daemon's periodic pass backs off (30 s, 2 min, 5 min) and then gives up with a
        visible error. Worktrees are never deleted here."""
        report: dict[str, list[Any]] = {
            "recreated": [],
            "restarted": [],
            "failed": [],
            "gave_up": [],
            "adopted": [],
            "missing_worktrees": [],
            "orphan_containers": [],
            "removed_orphans": [],
            "orphan_worktrees": [],
            "rolled_back": [],
        }
        everywhere = await self._inspect_everywhere(self._labels())
        containers = {name: c for name, (_, c) in everywhere.items()}
        sessions = self.store.list_sessions()
        by_id = {c.labels.get("clauderon.session-id"): c for c in containers.values()}
        owned = set()
        for snapshot in sessions:
            found = by_id.get(snapshot.id)
            if found is not None:
                owned.add(found.name)
            if self._lock.busy(snapshot.name):
                continue  # an operation is under way on it
            async with self._lock(snapshot.name):  # lock, read again, change, save
                session = self.store.get_session(snapshot.name)
                if session is None or session.id != snapshot.id:
                    continue  # deleted (or replaced) since the snapshot
                await self._reconcile_one(session, found, progress, manual, report)
        for name, found in containers.items():
            if name not in owned and "clauderon.role" not in found.labels:  # (probes: ours)
                report["orphan_containers"].append(name)
                if remove_orphans:
                    await blocking(everywhere[name][0].remove, name)
                    report["removed_orphans"].append(name)
        known = {Path(s.worktree).name for s in sessions}
        if self.paths.worktrees.is_dir():
            report["orphan_worktrees"] = sorted(
                str(p) for p in self.paths.worktrees.iterdir() if p.name not in known
            )
        return report

    async def _reconcile_one(
        self,
        session: Session,
        found: ContainerStatus | None,
        progress: Progress,
        manual: bool,
        report: dict[str, list[Any]],
    ) -> None:
        """One session's reconcile decision (its lock held, its record fresh)."""
        if session.status in (SessionStatus.CREATING, SessionStatus.DELETING):
            # Not locked, so no operation of this daemon: one a daemon that died left
            # (and startup could not finish: the engine was down). Finish it.
            await self._finish_interrupted(session)
            if session.status == SessionStatus.CREATING:
                report["rolled_back"].append(session.name)
            return
        if not Path(session.worktree).is_dir():
            # A failed session keeps the error that says what to do (an interrupted
            # delete that could not be finished has removed the worktree itself).
            if session.error != WORKTREE_MISSING and session.status != SessionStatus.FAILED:
                session.error = WORKTREE_MISSING
                self._save(session, "worktree_missing")
            report["missing_worktrees"].append(session.name)
            return
        if (
            found is not None
            and session.status == SessionStatus.RUNNING
            and found.state in (ContainerState.EXITED, ContainerState.DEAD, ContainerState.CREATED)
            and not session.print_mode
            and session.container == found.name
        ):  # the agent died unasked (`docker kill`, OOM): the engine will not restart it
            await self._recover(session, progress, manual, report, restart=True)
            return
        if found is not None and session.status in (
            SessionStatus.RUNNING,
            SessionStatus.STOPPED,
        ):
            if session.container != found.name or (
                session.status == SessionStatus.STOPPED and found.state == ContainerState.RUNNING
            ):  # its container lives on: take it back
                session.container = found.name
                if found.state == ContainerState.RUNNING:
                    session.status = SessionStatus.RUNNING
                self._save(session, "session_adopted")
                report["adopted"].append(session.name)
            return
        if session.status == SessionStatus.RUNNING and found is None:
            await self._recover(session, progress, manual, report)

    async def _recover(
        self,
        session: Session,
        progress: Progress,
        manual: bool,
        report: dict[str, list[Any]],
        restart: bool = False,
    ) -> None:
        """Recreate the missing container of a session that should run (or, with
        `restart`, start its dead one again), with the same backoff either way. The
        caller holds the session's lock."""
        now = utcnow()
        if not manual:
            if session.last_reconcile_at is None:
                session.last_reconcile_at = now  # first seen missing: the clock starts
                self._save(session)
                return
            if not reconcile_due(session.reconcile_attempts, session.last_reconcile_at, now):
                return
        try:
            if restart and session.container:
                await blocking(self._backend(session).start, session.container)
            else:
                await self._recreate(session, progress)
            session.reconcile_attempts, session.last_reconcile_at = 0, None
            session.error = None
            self._save(session, "session_restarted" if restart else "session_recreated")
            report["restarted" if restart else "recreated"].append(session.name)
        except ClauderonError as exc:
            session.reconcile_attempts += 1
            session.last_reconcile_at = now
            session.error = exc.message
            if session.reconcile_attempts >= len(RECONCILE_BACKOFF) and not manual:
                session.status = SessionStatus.FAILED
                session.error = (
                    f"gave up recreating its container after "
                    f"{session.reconcile_attempts} attempts: {exc.message}"
                )
                report["gave_up"].append(session.name)
            self._save(session, "session_recreate_failed", error=exc.message)
            report["failed"].append({"session": session.name, "error": exc.message})

    async def reconcile_forever(self, interval: float, stop: Callable[[], None]) -> None:
        """The daemon's own reconcile, every `interval` seconds, for as long as it runs."""
        while True:
            await asyncio.sleep(interval)
            if not self.paths.socket.exists():
                # The home (or the socket) was removed: no client can reach this daemon any
                # more, and a new one would start beside it. Leave.
                log.warning("%s is gone: stopping", self.paths.socket)
                stop()
                return
            try:
                report = await self.reconcile(False, lambda *_: None, manual=False)
                changed = {
                    k: v
                    for k, v in report.items()
                    if v and k not in ("orphan_containers", "orphan_worktrees")
                }
                if changed:
                    log.info("reconcile: %s", changed)
            except ClauderonError as exc:
                log.warning("reconcile skipped: %s", exc.message)
            except Exception:
                log.exception("reconcile failed")

    async def startup(self) -> None:
        """Finish what a previous daemon left half done (it died or was killed), and bring
        the proxy up for the sessions that run."""
        if self._sync_task is None:
            self._sync_task = asyncio.create_task(self.sync_forever(SYNC_INTERVAL))
        await self._remove_leftover_probes()
        for session in self.store.list_sessions():
            self.directory.register(session)
            if session.status in (SessionStatus.CREATING, SessionStatus.DELETING):
                await self._finish_interrupted(session)
        await self.ensure_proxy()
        for session in self.store.list_sessions():  # each session's socket, made again
            if session.proxy_token and session.status != SessionStatus.ARCHIVED:
                try:
                    await self._open_proxy_socket(session)
                except OSError as exc:  # that session cannot reach its proxy; say so
                    log.warning("no proxy socket for %s: %s", session.name, exc)
        await self._migrate_legacy_containers()

    async def _finish_interrupted(self, session: Session) -> None:
        """Roll back a creation, or finish a delete, that a daemon which died left half
        done. With the engine down it is left as it is: the periodic reconcile finishes
        it once the engine answers. One session's trouble never keeps the daemon down."""
        try:
            if session.status == SessionStatus.CREATING:
                log.info("rolling back unfinished creation of %s", session.name)
                await self._rollback_stale_creation(session)
            elif session.status == SessionStatus.DELETING:
                await self._finish_delete(session)
        except BackendUnavailable as exc:
            log.warning(
                "%s: left %s until the engine answers (%s)",
                session.name,
                session.status.value,
                exc.message,
            )
        except Exception as exc:
            log.exception("could not finish what was under way on %s", session.name)
            session.status = SessionStatus.FAILED
            session.error = (
                f"an interrupted operation could not be finished ({exc}); run "
                f"`clauderon delete --force {session.name}` again"
            )
            self._save(session, "session_failed", error=session.error)

    async def _remove_leftover_probes(self) -> None:
        """Image probes of a daemon that was killed mid-probe (the engine does not remove
        them by itself)."""
        try:
            probes = await self._inspect_everywhere({**self._labels(), "clauderon.role": "probe"})
            for name, (backend, _) in probes.items():
                await blocking(backend.remove, name)
        except ClauderonError as exc:  # the engine is down: the next start tries again
            log.info("leftover image probes not checked: %s", exc.message)

    async def _finish_delete(self, session: Session) -> None:
        """A delete the previous daemon did not finish. Its work was secured before it was
        marked deleting, but the agent may have committed since: stop it and save again."""
        log.info("finishing interrupted delete of %s", session.name)
        if not session.removing_files:  # else the work is saved and the removal began
            await blocking(self._backend(session).stop, self._container_name(session))
            await self._sync_locked(session, force=True)
            await blocking(self._secure_work, session, True)
        await self._teardown(session)

    async def _rollback_stale_creation(self, session: Session) -> None:
        """A creation a previous daemon did not finish (or reconcile found unlocked)."""
        await self._teardown(session, creating=True)

    async def _migrate_legacy_containers(self) -> None:
        """Containers made by clauderon before 0.2 sat on a per-home network with the proxy
        on its gateway, which is gone: recreate them with no network (a stopped one is
        removed and comes back from its record on `start`). Only Docker had those."""
        containers = await blocking(self.backend.inspect_all, self._labels())
        by_id = {c.labels.get("clauderon.session-id"): c for c in containers.values()}
        for snapshot in self.store.list_sessions():
            found = by_id.get(snapshot.id)
            if found is None or found.isolated:
                continue
            log.info("moving %s to a container with no network", snapshot.name)
            async with self._lock(snapshot.name):  # lock, read again, change, save
                session = self.store.get_session(snapshot.id)
                if session is None:
                    continue
                await blocking(self.backend.remove, found.name)
                if session.status == SessionStatus.RUNNING:
                    try:
                        await self._recreate(session, lambda *_: None)
                    except ClauderonError as exc:
                        session.error = exc.message
                        self._save(session, "session_recreate_failed", error=exc.message)
        await blocking(self.backend.remove_legacy_network)

    async def cache_report(self) -> list[dict[str, Any]]:
        names = list(cache_volumes(self.uid))
        volumes = [
            volume
            for backend in self._backends_in_use()
            for volume in await blocking(backend.cache_volumes, names)
        ]
        sessions_by_container = {
            self._container_name(s): s.name for s in self.store.list_sessions()
        }
        return [
            {
                "name": v.name,
                "exists": v.exists,
                "size": v.size,
                "sessions": [sessions_by_container.get(c, c) for c in v.used_by],
            }
            for v in volumes
        ]

    async def clean_cache(self) -> dict[str, Any]:
        """Remove every cache volume that no container uses; say which were kept and why."""
        removed: list[str] = []
        kept: list[dict[str, str]] = []
        names = list(cache_volumes(self.uid))
        for backend in self._backends_in_use():
            containers = await blocking(backend.inspect_all, {"clauderon.managed": "true"})
            volumes = await blocking(backend.cache_volumes, names)
            await blocking(self._clean_volumes, backend, containers, volumes, removed, kept)
        return {"removed": removed, "kept": kept}

    def _clean_volumes(
        self,
        backend: Backend,
        containers: dict[str, ContainerStatus],
        volumes: list[CacheVolume],
        removed: list[str],
        kept: list[dict[str, str]],
    ) -> None:
        """Blocking: one backend's part of `clean_cache`."""
        for volume in volumes:
            if not volume.exists:
                continue
            running = [
                c
                for c in volume.used_by
                if (found := containers.get(c)) and found.state == ContainerState.RUNNING
            ]
            if volume.used_by:
                why = (
                    "used by running session container(s) "
                    if running
                    else "used by stopped container(s) (archive or delete them first) "
                )
                kept.append({"name": volume.name, "reason": why + ", ".join(volume.used_by)})
                continue
            backend.remove_volume(volume.name)
            removed.append(volume.name)
