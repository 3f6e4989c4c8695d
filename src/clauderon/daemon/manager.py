"""The SessionManager: the one place that changes sessions.

Every operation validates first and changes nothing until the input is known to be good.
A creation records an undo step for each resource it makes; on any failure, or when the
client cancels (Ctrl-C), the steps run in reverse so nothing is left half made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import git
from ..agents import Agent, get_agent, install_report_script
from ..agents.provision import ensure_agent
from ..backends import Backend, ContainerStatus, Progress
from ..config import GitHubConfig
from ..container import (
    RESERVED_ENV_PREFIX,
    GitMounts,
    ProvidedAgent,
    ProxyInputs,
    SpecInputs,
    build_container_spec,
    cache_volumes,
    container_name,
    prepare_mountpoints,
)
from ..errors import (
    Cancelled,
    ClauderonError,
    Conflict,
    DockerUnavailable,
    InvalidInput,
    WouldLoseWork,
    session_not_found,
)
from ..forwarder import ensure_forwarder
from ..gitsync import GitSync, SyncResult, SyncState, extra_alternates, unsaved_agent_branches
from ..limits import parse_cpu_limit, parse_memory_limit
from ..models import (
    CREDENTIAL_PLACEHOLDER,
    DEFAULT_IMAGE,
    AccessMode,
    AgentKind,
    AgentStatus,
    BackendKind,
    CreateSessionRequest,
    DeleteResult,
    Egress,
    PullPolicy,
    Session,
    SessionStatus,
    SessionView,
    utcnow,
)
from ..naming import generate_name, validate_name
from ..paths import Paths
from ..proxy.server import CredentialProxy
from ..store import Store
from .blocking import blocking, iterate_in_thread
from .console import Console, ConsoleManager
from .directory import ProxySessions
from .events import EventBus
from .landing import Landing
from .live import LiveReports
from .status import effective_status, status_reason, transcript_interrupted

log = logging.getLogger(__name__)

MAX_PROMPT_BYTES = 100_000  # an argv string is capped at 128 KiB by the kernel
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
CREATE_STEPS = 5
TRANSCRIPT_TIMEOUT = 2.0  # seconds for reading every transcript `list` needs
# How often the agent's commits are brought to the host (tests may slow it down).
SYNC_INTERVAL = float(os.environ.get("CLAUDERON_SYNC_INTERVAL", "1.0"))
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


class Rollback:
    """Undo steps recorded while a resource is made, run in reverse if it fails."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], Any]]] = []

    def add(self, what: str, undo: Callable[[], Any]) -> None:
        self._steps.append((what, undo))

    async def run(self) -> None:
        for what, undo in reversed(self._steps):
            try:
                await blocking(undo)
            except Exception:  # keep undoing the rest; say what could not be undone
                log.exception("rollback: could not undo %s", what)
        self._steps.clear()


class SessionManager(Landing):
    def __init__(
        self,
        paths: Paths,
        store: Store,
        backend: Backend,
        events: EventBus,
        proxy: CredentialProxy,
        directory: ProxySessions,
        ca_cert: Path,
        github: GitHubConfig | None = None,
    ):
        self.paths = paths
        self.store = store
        self.backend = backend
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
        self.consoles = ConsoleManager(backend)
        self.gitsync = GitSync(paths.sessions, store)
        self._sync_task: asyncio.Task[None] | None = None
        self._stats = {}  # session id → review.Stats (landing.py), read by `list`
        self.github_api_url = github.api_url if github else None
        # Agent reports and model calls: recorded off the loop, in order (live.py).
        self.live = LiveReports(store, directory, self._publish)
        self.live.attach()

    # --- helpers --------------------------------------------------------------------

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

    async def _interrupted(self, sessions: list[Session]) -> set[str]:
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

    def _worktree(self, session: Session) -> git.Worktree:
        return git.Worktree(
            root=Path(session.worktree),
            git_dir=Path(session.git_dir),
            common_dir=Path(session.git_common_dir),
            branch=session.branch,
            excludes_file=self.paths.home / "gitignore",
        )

    # --- the credential proxy ----------------------------------------------------------

    async def ensure_proxy(self) -> None:
        """Start the proxy (on no network: sessions reach it through their sockets)."""
        async with self._proxy_lock:
            if not self.proxy.running:
                await self.proxy.start()

    def _proxy_dir(self, session: Session) -> Path:
        """Holds the session's proxy socket; mounted read-only in its container only."""
        return self.paths.session_dir(session.name) / "proxy"

    async def _open_proxy_socket(self, session: Session) -> None:
        await self.ensure_proxy()
        self._proxy_dir(session).mkdir(parents=True, exist_ok=True)
        await self.proxy.open_session(session.name, self._proxy_dir(session))

    def _forwarder(self) -> Path:
        return ensure_forwarder(self.paths.home / "bin")

    async def _migrate_legacy_containers(self) -> None:
        """Containers made by clauderon before 0.2 sat on a per-home network with the proxy
        on its gateway, which is gone: recreate them with no network (a stopped one is
        removed and comes back from its record on `start`)."""
        containers = await blocking(self.backend.inspect_all, self._labels())
        by_id = {c.labels.get("clauderon.session-id"): c for c in containers.values()}
        for session in self.store.list_sessions():
            found = by_id.get(session.id)
            if found is None or found.isolated:
                continue
            log.info("moving %s to a container with no network", session.name)
            async with self._lock(session.name):
                await blocking(self.backend.remove, found.name)
                if session.status == SessionStatus.RUNNING:
                    try:
                        await self._recreate(session, lambda *_: None)
                    except ClauderonError as exc:
                        session.error = exc.message
                        self._save(session, "session_recreate_failed", error=exc.message)
        await blocking(self.backend.remove_legacy_network)

    def _credential_env_names(self) -> set[str]:
        return {env for rule in self.proxy.policy.rules for env in rule.env}

    def _placeholders(self) -> dict[str, str]:
        """Placeholder variables for the credentials the user has (one per host)."""
        env: dict[str, str] = {}
        hosts_done: set[str] = set()
        for rule in self.proxy.policy.rules:
            if rule.host in hosts_done or self.proxy.credentials.get(rule.credential) is None:
                continue
            hosts_done.add(rule.host)
            env.update(dict.fromkeys(rule.env, CREDENTIAL_PLACEHOLDER))
        return env

    def warnings_for(self, session: Session) -> list[str]:
        warnings = [self.missing_credential_warning(session)]
        return [w for w in warnings if w]

    def missing_credential_warning(self, session: Session) -> str | None:
        host = get_agent(session.agent).model_host
        rules = self.proxy.policy.rules_for(host)
        if any(self.proxy.credentials.get(rule.credential) for rule in rules):
            return None
        names = " or ".join(f"${e}" for rule in rules for e in rule.env[:1])
        return (
            f"no credential for {host} is set on the host, so the agent cannot call its "
            f"model: set {names} in the daemon's environment or use `clauderon config "
            f"set-credential {rules[0].credential}`"
        )

    def credentials(self) -> list[dict[str, Any]]:
        return self.proxy.credentials.describe()

    def set_credential(self, name: str, value: str) -> None:
        self.proxy.credentials.set(name, value)

    async def set_access_mode(self, name: str, mode: str) -> Session:
        try:
            access_mode = AccessMode(mode)
        except ValueError:
            raise InvalidInput(
                f"unknown access mode {mode!r}: use read-write or read-only"
            ) from None
        async with self._lock(name):
            session = self._get_to_change(name)
            session.access_mode = access_mode
            self.directory.update(session)  # applies to the next request
            return self._save(session, "access_mode_changed", access_mode=access_mode.value)

    def _remove_worktree(self, session: Session) -> None:
        git.remove_worktree(
            Path(session.repo),
            Path(session.worktree),
            Path(session.git_dir) if session.git_dir else None,
            Path(session.git_common_dir) if session.git_common_dir else None,
        )

    def _container_name(self, session: Session) -> str:
        """The session's container: the recorded one (older sessions keep their name), or
        the name this home gives it."""
        return session.container or container_name(session.name, self.paths.instance)

    def _labels(self) -> dict[str, str]:
        return {"clauderon.managed": "true", "clauderon.instance": self.paths.instance}

    # --- reading --------------------------------------------------------------------

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
            view.container_state = "unknown"
        elif session.container:
            view.container_state = status.state if status else "missing"
            view.exit_code = status.exit_code if status else None
        view.state = session.status.value
        if session.status == SessionStatus.RUNNING and containers is not None:
            view.state = status.state if status else "missing"
        elif session.status == SessionStatus.STOPPED and status and status.state == "running":
            view.state = "running"  # started behind clauderon's back
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
            session, {session.container: ContainerStatus(session.container, "running")}
        )

    async def _containers(self) -> dict[str, ContainerStatus] | None:
        try:
            return await blocking(self.backend.inspect_all, self._labels())
        except ClauderonError:
            return None  # the engine is down: still list what the store knows

    async def list(self, include_archived: bool = False) -> list[SessionView]:
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

    # --- create ---------------------------------------------------------------------

    def _validate(self, req: CreateSessionRequest) -> tuple[Session, git.RepoInfo, Agent]:
        """Everything that can be checked without changing anything."""
        try:
            BackendKind(req.backend)
        except ValueError:
            raise InvalidInput(
                f"unknown backend {req.backend!r}: the available backend is 'docker'"
            ) from None
        agent = get_agent(req.agent)
        try:
            pull_policy = PullPolicy(req.pull_policy)
        except ValueError:
            raise InvalidInput(
                f"unknown pull policy {req.pull_policy!r}: use always, if-not-present or never"
            ) from None
        if not req.prompt.strip():
            raise InvalidInput("the prompt is empty: say what the agent should do (--prompt)")
        if "\x00" in req.prompt:
            raise InvalidInput("the prompt contains a NUL byte")
        if len(req.prompt.encode()) > MAX_PROMPT_BYTES:
            raise InvalidInput(f"the prompt is longer than {MAX_PROMPT_BYTES} bytes")
        for key, value in req.env.items():
            if not _ENV_KEY_RE.fullmatch(key):
                raise InvalidInput(f"invalid --env name {key!r}: use letters, digits and _")
            if key.startswith(RESERVED_ENV_PREFIX):
                raise InvalidInput(f"--env {key} is reserved for clauderon")
            if "\x00" in value:
                raise InvalidInput(f"--env {key} contains a NUL byte")
            if key in self._credential_env_names():
                raise InvalidInput(
                    f"--env {key} would put a credential inside the container; the proxy "
                    "injects it instead: set it in the daemon's environment or with "
                    "`clauderon config set-credential`"
                )
        try:
            egress = Egress(req.egress)
        except ValueError:
            raise InvalidInput(
                f"unknown egress policy {req.egress!r}: use allowlist, open or off"
            ) from None
        try:
            access_mode = AccessMode(req.access_mode)
        except ValueError:
            raise InvalidInput(
                f"unknown access mode {req.access_mode!r}: use read-write or read-only"
            ) from None
        cpu = parse_cpu_limit(req.cpu_limit, os.cpu_count()) if req.cpu_limit else None
        memory = parse_memory_limit(req.memory_limit) if req.memory_limit else None
        image = self.backend.validate_image(req.image or DEFAULT_IMAGE)
        if req.model is not None and (not req.model.strip() or _CONTROL_RE.search(req.model)):
            raise InvalidInput(f"invalid --model {req.model!r}")
        version = req.agent_version or agent.default_version
        if not re.fullmatch(r"[0-9A-Za-z.+-]+", version):
            raise InvalidInput(f"invalid agent version {version!r}")

        if req.name is not None:
            name = validate_name(req.name)
            self._check_name_free(name, None)
        if not os.path.isabs(os.path.expanduser(req.repo)):
            # The daemon's working directory is not the caller's: a relative path would
            # silently name some other repository (the CLI sends absolute paths).
            raise InvalidInput(f"repository path {req.repo!r} must be absolute")
        repo = git.resolve_repo(req.repo)
        base_commit = git.resolve_commit(repo, req.base_branch) if req.base_branch else repo.head
        base_ref = git.base_ref(repo, req.base_branch)
        if req.name is None:
            name = self._free_name(req.prompt, repo.root)
        else:
            self._check_name_free(name, repo.root)
        session = Session(
            id=str(uuid.uuid4()),
            name=name,
            status=SessionStatus.CREATING,
            agent=agent.kind,
            agent_version=version,
            model=req.model,
            prompt=req.prompt,
            print_mode=req.print_mode,
            ask_permissions=req.ask_permissions,
            image=image,
            pull_policy=pull_policy,
            cpu_limit=cpu,
            memory_limit=memory,
            env=dict(req.env),
            egress=egress,
            access_mode=access_mode,
            proxy_token=secrets.token_urlsafe(24),
            hook_token=secrets.token_urlsafe(24),
            repo=str(repo.root),
            subdirectory=repo.subdirectory,
            worktree=str(self.paths.worktree(name)),
            branch=name,
            base_branch=req.base_branch,
            base_ref=base_ref,
            base_commit=base_commit,
            git_common_dir=str(repo.common_dir),
        )
        return session, repo, agent

    def _check_name_free(self, name: str, repo_root: Path | None) -> None:
        if self.store.get_session(name) is not None:
            raise Conflict(f"a session named {name!r} already exists")
        if self.paths.worktree(name).exists():
            raise Conflict(
                f"{self.paths.worktree(name)} already exists: remove it or choose another --name"
            )
        if repo_root is not None and git.branch_exists(repo_root, name):
            raise Conflict(f"branch {name!r} already exists in {repo_root}: choose another --name")

    def _free_name(self, prompt: str, repo_root: Path) -> str:
        for _ in range(20):
            name = generate_name(prompt)
            try:
                self._check_name_free(name, repo_root)
                return name
            except Conflict:
                continue
        raise Conflict("could not find a free session name; give one with --name")

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
        await blocking(self.backend.check)
        session, repo, agent = await blocking(self._validate, req)
        await self.ensure_proxy()
        await blocking(self._forwarder)  # built once; without a compiler: the fix, first
        progress = self._broadcasting(session.name, progress)
        undo = Rollback()
        step = 0

        def report(message: str) -> None:
            nonlocal step
            step += 1
            progress(message, step, CREATE_STEPS)

        try:
            async with self._lock(session.name):
                self.store.insert_session(session)  # reserves the name
                undo.add("store row", lambda: self.store.delete_session(session.id))
                self.directory.register(session)
                undo.add("proxy policy", lambda: self.directory.unregister(session))
                session_dir = self.paths.session_dir(session.name)
                undo.add("session files", lambda: git.remove_tree(session_dir))
                await self._open_proxy_socket(session)  # closed after the rollback below
                self._publish("session_created", session)

                report(f"Checking image {session.image}")
                await blocking(
                    self.backend.ensure_image, session.image, session.pull_policy, progress
                )
                provided = await self._provide_agent(session, agent, progress)

                report(f"Creating worktree on branch {session.branch}")
                worktree = Path(session.worktree)
                undo.add(
                    "branch",
                    lambda: git.delete_branch(
                        repo.root, session.branch, only_at=session.base_commit
                    ),
                )
                undo.add(
                    "worktree",
                    lambda: self._remove_worktree(session),
                )
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
                undo.add("uploads", lambda: git.remove_tree(uploads))
                session_dir.mkdir(parents=True, exist_ok=True)
                uploads.mkdir(parents=True, exist_ok=True)
                self._save(session)

                report(f"Starting container {self._container_name(session)}")
                session.container = self._container_name(session)
                undo.add("container", lambda: self.backend.remove(self._container_name(session)))
                # With the session's own git dir and mirror (removed with session_dir).
                await self._start_container(session, agent, provided, new=True)

                report("Session running")
                session.status = SessionStatus.RUNNING
                self._save(session, "session_running")
                return session
        except BaseException as exc:
            reason = "cancelled" if isinstance(exc, asyncio.CancelledError) else str(exc)
            log.info("create %s failed (%s): rolling back", session.name, reason)
            await asyncio.shield(undo.run())
            self.proxy.close_session(session.name)
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
        image_id = await blocking(self.backend.image_id, session.image)
        facts_json = self.store.get_image_facts(image_id)
        if facts_json is None:
            progress(f"Inspecting image {session.image} (once per image)", None, None)
            facts = await blocking(self.backend.image_facts, session.image)
            facts_json = {
                "commands": sorted(facts.commands),
                "musl": facts.musl,
                "path": facts.path,
            }
            self.store.put_image_facts(image_id, facts_json)
        if agent.command in facts_json["commands"]:
            return None
        version = session.agent_version or agent.default_version
        arch = await blocking(self.backend.architecture)
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
        agent_mounts, identity, lay = done
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
        await blocking(self.backend.create, spec)

    async def _recreate(
        self, session: Session, progress: Progress, pull: bool = False
    ) -> str | None:
        """Build a new container from the record (refresh, unarchive, start, reconcile)."""
        if not self.proxy.has_session(session.name):
            await self._open_proxy_socket(session)
        progress = self._broadcasting(session.name, progress)
        agent = get_agent(session.agent)
        warning = None
        if pull:
            warning = await blocking(self.backend.refresh_image, session.image, progress)
        else:
            await blocking(self.backend.ensure_image, session.image, session.pull_policy, progress)
        provided = await self._provide_agent(session, agent, progress)
        if not Path(session.worktree).is_dir():
            raise ClauderonError(
                f"the worktree {session.worktree} is gone; the session cannot run without it "
                f"(delete it with `clauderon delete {session.name}`)",
                code="worktree_missing",
                status=409,
            )
        self.consoles.forget(session.name)
        await blocking(self.backend.remove, self._container_name(session))
        session.container = container_name(session.name, self.paths.instance)
        await self._start_container(session, agent, provided)
        return warning

    # --- lifecycle ------------------------------------------------------------------

    def _require(self, session: Session, *allowed: SessionStatus) -> None:
        if session.status not in allowed:
            raise Conflict(f"session {session.name!r} is {session.status.value}")

    async def stop(self, name: str) -> Session:
        async with self._lock(name):
            session = self._get_to_change(name)
            self._require(session, SessionStatus.RUNNING, SessionStatus.STOPPED)
            if session.container:
                await blocking(self.backend.stop, session.container)
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
                await blocking(self.backend.inspect, session.container)
                if session.container
                else None
            )
            if status is None:
                await self._recreate(session, progress)
            elif status.state != "running":
                await blocking(self.backend.start, session.container)
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
                await blocking(self.backend.remove, session.container)
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
                await blocking(self.backend.remove, self._container_name(session))
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
            if not force:  # refuse before touching the agent
                await self._sync_locked(session, force=True)
                await blocking(self._secure_work, session, False)
            # Stop the agent before the last sync, check and save: a commit it made after
            # them would be lost with its git dir and worktree.
            was_running = False
            if session.container:
                status = await blocking(self.backend.inspect, session.container)
                was_running = status is not None and status.state == "running"
                await blocking(self.backend.stop, session.container)
            await self._sync_locked(session, force=True)  # the agent's last commits first
            try:
                saved_ref, kept = await blocking(self._secure_work, session, force)
            except WouldLoseWork:  # the agent made work in between: leave it running
                if was_running and session.container:
                    await blocking(self.backend.start, session.container)
                raise
            session.status = SessionStatus.DELETING
            self._save(session, "session_deleting")
            self.consoles.forget(name)
            try:
                await blocking(self.backend.remove, self._container_name(session))
                late_ref, late_kept = await self._save_late_work(session)
                saved_ref, kept = saved_ref or late_ref, sorted({*kept, *late_kept})
                await blocking(self._remove_files, session)
            except Exception as exc:
                session.status, session.error = SessionStatus.FAILED, f"delete failed: {exc}"
                self._save(session, "session_failed", error=session.error)
                raise
            self.store.delete_session(session.id)
            self.gitsync.forget(session.id)
            self.directory.unregister(session)
            self.proxy.close_session(session.name)
            self.store.add_event(session, "session_deleted", {"saved_ref": saved_ref})
            self.events.publish({"type": "session_deleted", "session": session.name})
            hint = None
            if saved_ref:
                hint = f"git -C {session.repo} branch {session.name}-restored {saved_ref}"
            return DeleteResult(
                name=session.name, saved_ref=saved_ref, restore_hint=hint, agent_branches=kept
            )

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

    def _remove_files(self, session: Session) -> None:
        repo = Path(session.repo)
        if repo.is_dir():
            self._remove_worktree(session)
            git.delete_branch(repo, session.branch)
        else:
            git.remove_tree(Path(session.worktree))
        git.remove_tree(self.paths.session_dir(session.name))
        git.remove_tree(self.paths.uploads / session.id)

    # --- consoles -------------------------------------------------------------------

    async def console(self, name: str) -> Console:
        """The agent's terminal, shared by every viewer (attached on first use)."""
        session = self._get(name)
        if session.status != SessionStatus.RUNNING or not session.container:
            raise Conflict(
                f"session {name!r} is {session.status.value}: `clauderon start {name}` first"
            )
        status = await blocking(self.backend.inspect, session.container)
        if status is None or status.state != "running":
            raise Conflict(
                f"the agent of {name!r} is not running (its container is "
                f"{status.state if status else 'missing'})"
            )
        return await self.consoles.open(name, session.container)

    async def send(self, name: str, text: str) -> None:
        if not text.strip():
            raise InvalidInput("the message is empty")
        if "\x00" in text:
            raise InvalidInput("the message contains a NUL byte")
        console = await self.console(name)
        await console.send_message(text)
        self.store.add_event(self._get(name), "message_sent", {"length": len(text)})

    # --- attach and logs ------------------------------------------------------------

    async def attach_info(self, name: str) -> dict[str, Any]:
        session = self._get(name)
        if session.status == SessionStatus.ARCHIVED:
            raise Conflict(f"session {name!r} is archived: `clauderon unarchive {name}` first")
        if not session.container:
            raise Conflict(f"session {name!r} has no container")
        status = await blocking(self.backend.inspect, session.container)
        if status is None:
            raise Conflict(f"the container of {name!r} is missing: run `clauderon start {name}`")
        if status.state != "running":
            if session.print_mode:
                raise Conflict(
                    f"session {name!r} ran once in print mode and has exited: see "
                    f"`clauderon logs {name}`"
                )
            await blocking(self.backend.start, session.container)
        return {
            "command": self.backend.attach_command(session.container),
            "detach_keys": self.backend.detach_keys,
            "container": session.container,
        }

    async def logs(self, name: str, follow: bool, tail: int | None) -> AsyncIterator[bytes]:
        session = self._get(name)
        if not session.container:
            raise Conflict(f"session {name!r} has no container (it is {session.status.value})")
        if await blocking(self.backend.inspect, session.container) is None:
            raise Conflict(f"the container of {name!r} is missing")
        iterator = await blocking(self.backend.logs, session.container, follow, tail)
        async for chunk in iterate_in_thread(iterator):
            yield chunk

    # --- caches and reconcile ---------------------------------------------------------

    async def cache_report(self) -> list[dict[str, Any]]:
        volumes = await blocking(self.backend.cache_volumes, list(cache_volumes(self.uid)))
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
        removed, kept = [], []
        containers = await blocking(self.backend.inspect_all, {"clauderon.managed": "true"})
        names = list(cache_volumes(self.uid))
        for volume in await blocking(self.backend.cache_volumes, names):
            if not volume.exists:
                continue
            running = [
                c
                for c in volume.used_by
                if containers.get(c, None) and containers[c].state == "running"
            ]
            if volume.used_by:
                why = (
                    "used by running session container(s) "
                    if running
                    else "used by stopped container(s) (archive or delete them first) "
                )
                kept.append({"name": volume.name, "reason": why + ", ".join(volume.used_by)})
                continue
            await blocking(self.backend.remove_volume, volume.name)
            removed.append(volume.name)
        return {"removed": removed, "kept": kept}

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
        containers = await blocking(self.backend.inspect_all, self._labels())
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
                    await blocking(self.backend.remove, name)
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
            if session.error != WORKTREE_MISSING:
                session.error = WORKTREE_MISSING
                self._save(session, "worktree_missing")
            report["missing_worktrees"].append(session.name)
            return
        if (
            found is not None
            and session.status == SessionStatus.RUNNING
            and found.state in ("exited", "dead", "created")
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
                session.status == SessionStatus.STOPPED and found.state == "running"
            ):  # its container lives on: take it back
                session.container = found.name
                if found.state == "running":
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
                await blocking(self.backend.start, session.container)
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

    # --- git sync (gitsync.py) ---------------------------------------------------------

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
                sessions = [
                    s
                    for s in self.store.list_sessions()
                    if s.container
                    and s.status not in (SessionStatus.CREATING, SessionStatus.DELETING)
                ]
                await asyncio.gather(*(self._sync_if_free(s) for s in sessions))
                live = [
                    s
                    for s in self.store.list_sessions()
                    if s.status not in (SessionStatus.CREATING, SessionStatus.DELETING)
                ]
                await blocking(self.stats_round, live)  # what `list` shows (landing.py)
            except Exception:
                log.exception("git sync round failed")

    async def _sync_if_free(self, session: Session) -> None:
        if self._lock.busy(session.name):
            return
        async with self._lock(session.name):
            fresh = self.store.get_session(session.name)
            if fresh is not None and fresh.id == session.id and fresh.container:
                await self._sync_locked(fresh)

    def _sync_views(self) -> dict[str, SyncState]:
        return {sid: SyncState.from_row(*row) for sid, row in self.store.list_git_sync().items()}

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
        except DockerUnavailable as exc:
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
            probes = await blocking(
                self.backend.inspect_all, {**self._labels(), "clauderon.role": "probe"}
            )
            for name in probes:
                await blocking(self.backend.remove, name)
        except ClauderonError as exc:  # the engine is down: the next start tries again
            log.info("leftover image probes not checked: %s", exc.message)

    async def _finish_delete(self, session: Session) -> None:
        """A delete the previous daemon did not finish. Its work was secured before it was
        marked deleting, but the agent may have committed since: stop it and save again."""
        log.info("finishing interrupted delete of %s", session.name)
        name = self._container_name(session)
        await blocking(self.backend.stop, name)
        await self._sync_locked(session, force=True)
        await blocking(self._secure_work, session, True)
        await blocking(self.backend.remove, name)
        await self._save_late_work(session)
        await blocking(self._remove_files, session)
        self.store.delete_session(session.id)

    async def _rollback_stale_creation(self, session: Session) -> None:
        await blocking(self.backend.remove, self._container_name(session))
        repo = Path(session.repo)
        if repo.is_dir():
            await blocking(self._remove_worktree, session)
            await blocking(git.delete_branch, repo, session.branch, session.base_commit)
        git.remove_tree(self.paths.session_dir(session.name))
        git.remove_tree(self.paths.uploads / session.id)
        self.store.delete_session(session.id)
        self.directory.unregister(session)


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
