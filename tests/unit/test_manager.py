"""The SessionManager's decisions, fast: a `FakeBackend` instead of Docker, and everything
else real — git repositories in temporary directories, the SQLite store, the session
files, the credential proxy (mitmproxy on the test's loop, listening on no network)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from clauderon.backends import Backend, Backends, ContainerState
from clauderon.backends.docker import DockerBackend
from clauderon.config import load_config
from clauderon.container import container_name
from clauderon.daemon.directory import ProxySessions
from clauderon.daemon.events import EventBus
from clauderon.daemon.manager import RECONCILE_BACKOFF, SessionManager
from clauderon.errors import (
    BackendUnavailable,
    Cancelled,
    ClauderonError,
    InvalidInput,
    WouldLoseWork,
)
from clauderon.forwarder import ensure_forwarder
from clauderon.models import DEFAULT_IMAGE, AgentStatus, CreateSessionRequest, SessionStatus, utcnow
from clauderon.paths import Paths
from clauderon.proxy.audit import AuditLog
from clauderon.proxy.ca import ensure_ca
from clauderon.proxy.credentials import CredentialStore
from clauderon.proxy.policy import Policy
from clauderon.proxy.server import CredentialProxy
from clauderon.store import Store

from .conftest import git
from .fake_backend import FakeBackend, FakeEngine

T = TypeVar("T")
QUIET: Callable[[str, int | None, int | None], None] = lambda *_: None  # noqa: E731


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# --- the harness ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What every home may copy instead of making again: the CA and the forwarder."""
    home = tmp_path_factory.mktemp("shared")
    ensure_ca(home)
    ensure_forwarder(home / "bin")
    return home


@dataclass
class Harness:
    manager: SessionManager
    backend: FakeBackend
    paths: Paths
    store: Store
    proxy: CredentialProxy
    repo: Path

    def request(self, name: str | None = "s1", **kw: Any) -> CreateSessionRequest:
        fields: dict[str, Any] = {
            "repo": str(self.repo),
            "prompt": "fix it",
            "backend": "fake",
            "name": name,
        }
        return CreateSessionRequest(**(fields | kw))

    async def create(self, name: str | None = "s1", **kw: Any) -> Any:
        return await self.manager.create(self.request(name, **kw), QUIET)

    def branches(self) -> set[str]:
        out = git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=self.repo)
        return set(out.split())

    def worktrees(self) -> list[str]:
        out = git("worktree", "list", "--porcelain", cwd=self.repo)
        return [line[9:] for line in out.splitlines() if line.startswith("worktree ")]

    def assert_nothing_left(self, name: str) -> None:
        """No row, worktree, branch, container, session files, uploads or proxy socket."""
        assert self.store.get_session(name) is None
        assert not self.paths.worktree(name).exists()
        assert name not in self.branches()
        assert str(self.paths.worktree(name)) not in self.worktrees()
        assert container_name(name, self.paths.instance) not in self.backend.ours()
        assert not self.paths.session_dir(name).exists()
        live = {s.id for s in self.store.list_sessions()}
        if self.paths.uploads.exists():
            assert {p.name for p in self.paths.uploads.iterdir()} <= live
        assert not self.proxy.has_session(name)


@contextlib.asynccontextmanager
async def harness(
    home: Path, repo: Path, shared: Path, engine: FakeEngine | None = None
) -> AsyncIterator[Harness]:
    """A manager over `home` (made or reused: a second harness on the same home is the
    daemon after a restart)."""
    paths = Paths(home)
    paths.ensure()
    for name in ("proxy-ca.pem", "proxy-ca-key.pem"):
        if not (home / name).exists():
            shutil.copy2(shared / name, home / name)
    (home / "bin").mkdir(exist_ok=True)
    for binary in (shared / "bin").iterdir():
        if not (home / "bin" / binary.name).exists() and not binary.name.startswith("."):
            shutil.copy2(binary, home / "bin" / binary.name)
    config = load_config(paths.config)
    ca_cert, confdir = ensure_ca(home)
    store = Store(paths.db)
    directory = ProxySessions()
    policy = Policy.from_config(config.proxy)
    credentials = CredentialStore(paths.secrets, policy.credential_names())
    proxy = CredentialProxy(
        config.proxy, confdir, credentials, directory, AuditLog(paths.audit_log)
    )
    if engine is None:
        engine = FakeEngine(images={DEFAULT_IMAGE})
    backend = FakeBackend(paths.instance, engine)
    manager = SessionManager(
        paths, store, Backends.of(backend), EventBus(), proxy, directory, ca_cert
    )
    try:
        yield Harness(manager, backend, paths, store, proxy, repo)
    finally:
        if manager._sync_task is not None:
            manager._sync_task.cancel()
            with contextlib.suppress(BaseException):
                await manager._sync_task
        manager.consoles.close_all()
        await proxy.stop()
        store.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


# --- the contract -------------------------------------------------------------------------


def _members(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize("implementation", [DockerBackend, FakeBackend])
def test_backends_implement_every_call_of_the_contract(implementation: type) -> None:
    contract = _members(Backend)
    assert contract, "the protocol names its calls"
    mine = _members(implementation)
    for name, signature in contract.items():
        assert name in mine, f"{implementation.__name__} lacks {name}"
        assert list(mine[name].parameters) == list(signature.parameters), name
    assert isinstance(implementation.kind, str)


def test_the_contract_has_nothing_docker_only() -> None:
    names = set(_members(Backend))
    assert not {"attach_command", "ensure_volumes", "legacy_network_name"} & names
    assert "detach_keys" not in Backend.__annotations__


# --- create, and its rollback ---------------------------------------------------------------


def test_create_then_delete_leaves_nothing(home: Path, repo: Path, shared: Path) -> None:
    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            session = await h.create()
            assert session.status == SessionStatus.RUNNING and session.backend == "fake"
            container = h.backend.ours()[session.container]
            assert container.labels["clauderon.session-id"] == session.id
            assert container.state == ContainerState.RUNNING
            assert Path(session.worktree).is_dir() and "s1" in h.branches()
            assert h.proxy.has_session("s1")
            view = await h.manager.get("s1")
            assert view.state == "running" and view.container_state == "running"
            result = await h.manager.delete("s1", force=False)
            assert result.saved_ref is None
            h.assert_nothing_left("s1")

    run(scenario())


def test_an_unknown_backend_is_refused_before_anything_is_made(
    home: Path, repo: Path, shared: Path
) -> None:
    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            with pytest.raises(InvalidInput, match=r"unknown backend 'docker'.*'fake'"):
                await h.create(backend="docker")
            assert h.backend.calls == []
            h.assert_nothing_left("s1")

    run(scenario())


class OtherFake(FakeBackend):
    kind = "other"


def test_the_sessions_backend_field_picks_its_implementation(
    home: Path, repo: Path, shared: Path
) -> None:
    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            other = OtherFake(h.paths.instance, FakeEngine(images={DEFAULT_IMAGE}))
            h.manager.backends = Backends.of(h.backend, other)
            a = await h.create("a")
            b = await h.create("b", backend="other")
            assert set(h.backend.ours()) == {a.container}
            assert set(other.ours()) == {b.container}
            await h.manager.stop("b")
            assert other.ours()[b.container].state == ContainerState.EXITED
            assert h.backend.ours()[a.container].state == ContainerState.RUNNING
            views = {v.name: v for v in await h.manager.list()}
            assert views["a"].state == "running" and views["b"].state == "stopped"
            await h.manager.delete("b", force=False)
            assert not other.ours()

    run(scenario())


# Each step of a creation that can fail, as a fault of the backend's call at that step.
FAULTS = ["check", "ensure_image", "image_id", "image_facts", "create"]


@pytest.mark.parametrize("step", FAULTS)
def test_every_failed_create_step_leaves_nothing(
    home: Path, repo: Path, shared: Path, step: str
) -> None:
    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            h.backend.fail(step)
            with pytest.raises(ClauderonError, match=f"injected failure of {step}"):
                await h.create()
            h.assert_nothing_left("s1")
            session = await h.create()  # and the name is free again
            assert session.status == SessionStatus.RUNNING

    run(scenario())


def test_a_failure_after_the_worktree_leaves_nothing(home: Path, repo: Path, shared: Path) -> None:
    """`--repo <dir>` that the base branch does not have: found once the worktree exists."""
    (repo / "later").mkdir()
    (repo / "later" / "f").write_text("x\n")
    git("add", ".", cwd=repo)
    git("commit", "-qm", "later", cwd=repo)

    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            req = h.request(base_branch="HEAD~1", repo=str(repo / "later"))
            with pytest.raises(InvalidInput, match="does not exist"):
                await h.manager.create(req, QUIET)
            h.assert_nothing_left("s1")

    run(scenario())


def test_a_cancelled_create_leaves_nothing(home: Path, repo: Path, shared: Path) -> None:
    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            reached, release = threading.Event(), threading.Event()

            def hold(*_: Any) -> None:
                reached.set()
                release.wait(10)

            h.backend.before("create", hold)
            task = asyncio.create_task(h.manager.create(h.request(request_id="r1"), QUIET))
            await asyncio.to_thread(reached.wait, 10)
            cancelling = asyncio.create_task(h.manager.cancel_create("r1"))
            await asyncio.sleep(0.05)
            release.set()
            assert await cancelling
            with pytest.raises(Cancelled):
                await task
            h.assert_nothing_left("s1")

    run(scenario())


# --- delete: one teardown ------------------------------------------------------------------


def test_delete_force_saves_what_the_agent_commits_while_it_is_stopped(
    home: Path, repo: Path, shared: Path
) -> None:
    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            session = await h.create()
            worktree = Path(session.worktree)

            def agent_commits_last(*_: Any) -> None:  # the agent's last act, as it stops
                (worktree / "late.txt").write_text("late\n")
                git("add", "late.txt", cwd=worktree)
                git("commit", "-qm", "late", cwd=worktree)

            h.backend.before("stop", agent_commits_last)
            with pytest.raises(WouldLoseWork):  # without --force: refused, still running
                await h.manager.delete("s1", force=False)
            assert h.backend.ours()[session.container].state == ContainerState.RUNNING
            h.backend.before("stop", None)
            result = await h.manager.delete("s1", force=True)
            assert result.saved_ref is not None
            assert git("show", f"{result.saved_ref}:late.txt", cwd=repo) == "late"
            h.assert_nothing_left("s1")

    run(scenario())


def test_delete_removes_read_only_trees(home: Path, repo: Path, shared: Path) -> None:
    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            session = await h.create()
            cache = Path(session.worktree) / "go" / "pkg" / "mod"
            cache.mkdir(parents=True)
            (cache / "f").write_text("x")
            for p in (cache / "f", cache, cache.parent):
                p.chmod(0o500 if p.is_dir() else 0o400)
            await h.manager.delete("s1", force=True)
            h.assert_nothing_left("s1")

    run(scenario())


# --- lock, read again, change, save -----------------------------------------------------------


def _hold_backend(backend: FakeBackend, method: str) -> tuple[threading.Event, threading.Event]:
    """The next `method` call waits for `release` (after setting `reached`)."""
    reached, release = threading.Event(), threading.Event()

    def hold(*_: Any) -> None:
        if not reached.is_set():
            reached.set()
            release.wait(10)

    backend.before(method, hold)
    return reached, release


@pytest.mark.parametrize("change", ["archive", "delete"])
def test_a_session_changed_while_reconcile_waits_does_not_come_back(
    home: Path, repo: Path, shared: Path, change: str
) -> None:
    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            a, b = await h.create("a"), await h.create("b")
            h.backend.vanish(a.container)
            h.backend.vanish(b.container)  # both would be recreated
            reached, release = _hold_backend(h.backend, "create")
            reconcile = asyncio.create_task(h.manager.reconcile(False, QUIET, manual=True))
            await asyncio.to_thread(reached.wait, 10)  # busy recreating a; b is next
            if change == "archive":
                await h.manager.archive("b")
            else:
                await h.manager.delete("b", force=True)
            release.set()
            report = await reconcile
            assert report["recreated"] == ["a"]
            assert [c for c in h.backend.ours() if "-b-" in c] == []
            b_now = h.store.get_session("b")
            if change == "archive":
                assert b_now is not None and b_now.status == SessionStatus.ARCHIVED
            else:
                assert b_now is None

    run(scenario())


def test_a_hook_report_during_an_operation_survives_its_save(
    home: Path, repo: Path, shared: Path
) -> None:
    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            await h.create()
            loop = asyncio.get_running_loop()
            reported = threading.Event()

            def report() -> None:
                h.manager.live.report("s1", "claude", "Stop", {})
                h.manager.live.flush()  # recorded (off the loop) before the stop's save
                reported.set()

            def hook_meanwhile(*_: Any) -> None:
                loop.call_soon_threadsafe(report)
                reported.wait(10)

            h.backend.before("stop", hook_meanwhile)
            await h.manager.stop("s1")  # saves the whole record after the report
            session = h.store.get_session("s1")
            assert session is not None and session.status == SessionStatus.STOPPED
            assert session.agent_status == AgentStatus.WAITING_INPUT

    run(scenario())


# --- reconcile and recovery --------------------------------------------------------------


def test_reconcile_recreates_a_missing_container(home: Path, repo: Path, shared: Path) -> None:
    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            session = await h.create()
            h.backend.vanish(session.container)
            assert (await h.manager.get("s1")).state == "missing"
            report = await h.manager.reconcile(False, QUIET, manual=True)
            assert report["recreated"] == ["s1"]
            assert h.backend.ours()[session.container].state == ContainerState.RUNNING
            again = await h.manager.reconcile(False, QUIET, manual=True)
            assert not any(again[k] for k in ("recreated", "restarted", "failed", "adopted"))

    run(scenario())


def test_reconcile_restarts_a_killed_agent(home: Path, repo: Path, shared: Path) -> None:
    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            session = await h.create()
            h.backend.kill(session.container)
            view = await h.manager.get("s1")
            assert view.state == "exited" and view.exit_code == 137
            report = await h.manager.reconcile(False, QUIET, manual=True)
            assert report["restarted"] == ["s1"]
            container = h.backend.ours()[session.container]
            assert container.state == ContainerState.RUNNING and container.starts == 2

    run(scenario())


def _age_last_attempt(h: Harness, name: str) -> None:
    """As if the backoff's delay had passed (no sleeping in tests)."""
    session = h.store.get_session(name)
    assert session is not None and session.last_reconcile_at is not None
    session.last_reconcile_at = utcnow() - timedelta(hours=1)
    h.store.save_session(session)


@pytest.mark.parametrize("fault", ["vanish", "kill"])
def test_periodic_reconcile_backs_off_then_gives_up_visibly(
    home: Path, repo: Path, shared: Path, fault: str
) -> None:
    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            session = await h.create()
            if fault == "vanish":
                h.backend.vanish(session.container)
                step = "create"
            else:
                h.backend.kill(session.container)
                step = "start"
            h.backend.fail(step, times=len(RECONCILE_BACKOFF) + 5)
            first = await h.manager.reconcile(False, QUIET, manual=False)
            assert not first["failed"]  # first seen: the clock starts, nothing is tried
            second = await h.manager.reconcile(False, QUIET, manual=False)
            assert not second["failed"]  # not due yet
            for attempt in range(1, len(RECONCILE_BACKOFF) + 1):
                _age_last_attempt(h, "s1")
                report = await h.manager.reconcile(False, QUIET, manual=False)
                assert [f["session"] for f in report["failed"]] == ["s1"]
                gave_up = attempt == len(RECONCILE_BACKOFF)
                assert report["gave_up"] == (["s1"] if gave_up else [])
            now = h.store.get_session("s1")
            assert now is not None and now.status == SessionStatus.FAILED
            assert now.error is not None and "gave up" in now.error
            tries = sum(1 for name, _ in h.backend.calls if name == step)
            _age_last_attempt(h, "s1")
            await h.manager.reconcile(False, QUIET, manual=False)
            assert sum(1 for name, _ in h.backend.calls if name == step) == tries
            view = await h.manager.get("s1")
            assert view.state == "failed" and "gave up" in (view.error or "")

    run(scenario())


def test_reconcile_takes_back_a_running_container(home: Path, repo: Path, shared: Path) -> None:
    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            session = await h.create()
            await h.manager.stop("s1")
            h.backend.start(session.container)  # started behind clauderon's back
            report = await h.manager.reconcile(False, QUIET, manual=True)
            assert report["adopted"] == ["s1"]
            now = h.store.get_session("s1")
            assert now is not None and now.status == SessionStatus.RUNNING

    run(scenario())


def test_reconcile_leaves_other_homes_alone(home: Path, repo: Path, shared: Path) -> None:
    engine = FakeEngine(images={DEFAULT_IMAGE})

    async def scenario() -> None:
        async with (
            harness(home, repo, shared, engine) as mine,
            harness(home.parent / "other", repo, shared, engine) as theirs,
        ):
            ours = await mine.create("x1")
            their = await theirs.create("x2")
            report = await mine.manager.reconcile(True, QUIET, manual=True)
            assert report["removed_orphans"] == []
            assert their.container in engine.containers and ours.container in engine.containers
            mine.backend.remove(their.container)  # by name: refused, theirs stays
            assert their.container in engine.containers

    run(scenario())


def test_startup_rolls_back_an_unfinished_creation(home: Path, repo: Path, shared: Path) -> None:
    async def scenario() -> None:
        engine = FakeEngine(images={DEFAULT_IMAGE})
        async with harness(home, repo, shared, engine) as h:
            await h.create()
            session = h.store.get_session("s1")
            assert session is not None
            session.status = SessionStatus.CREATING  # the daemon died before `running`
            h.store.save_session(session)
        async with harness(home, repo, shared, engine) as h:  # the next daemon
            await h.manager.startup()
            h.assert_nothing_left("s1")

    run(scenario())


def test_startup_finishes_an_interrupted_delete_and_saves_late_work(
    home: Path, repo: Path, shared: Path
) -> None:
    async def scenario() -> None:
        engine = FakeEngine(images={DEFAULT_IMAGE})
        async with harness(home, repo, shared, engine) as h:
            session = await h.create()
            session.status = SessionStatus.DELETING  # marked; then the daemon died
            h.store.save_session(session)
            worktree = Path(session.worktree)
            (worktree / "after.txt").write_text("after the mark\n")  # the agent went on
        async with harness(home, repo, shared, engine) as h:
            await h.manager.startup()
            h.assert_nothing_left("s1")
            saved = git("for-each-ref", "--format=%(refname)", "refs/clauderon/s1", cwd=repo)
            assert saved, "the work was saved"
            ref = saved.split()[0]
            assert git("show", f"{ref}:after.txt", cwd=repo) == "after the mark"

    run(scenario())


def test_one_sessions_failed_recovery_does_not_stop_the_others(
    home: Path, repo: Path, shared: Path
) -> None:
    async def scenario() -> None:
        engine = FakeEngine(images={DEFAULT_IMAGE})
        async with harness(home, repo, shared, engine) as h:
            for name in ("a", "b"):
                session = await h.create(name)
                session.status = SessionStatus.DELETING
                h.store.save_session(session)
        async with harness(home, repo, shared, engine) as h:
            h.backend.fail("stop")  # the first one's recovery fails
            await h.manager.startup()
            statuses = {s.name: s.status for s in h.store.list_sessions()}
            assert statuses == {"a": SessionStatus.FAILED}
            a = h.store.get_session("a")
            assert a is not None and "clauderon delete --force a" in (a.error or "")
            assert h.proxy.running  # and the daemon serves
            await h.manager.delete("a", force=True)  # the advice works
            h.assert_nothing_left("a")

    run(scenario())


# --- races ----------------------------------------------------------------------------


def test_parallel_creates_and_deletes_on_one_repository(
    home: Path, repo: Path, shared: Path
) -> None:
    names = [f"p{i}" for i in range(6)]

    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            created = await asyncio.gather(*(h.create(n) for n in names))
            assert {s.name for s in created} == set(names)
            for s in created:  # each with work to save
                (Path(s.worktree) / "w.txt").write_text(s.name)
            results = await asyncio.gather(*(h.manager.delete(n, force=True) for n in names))
            assert all(r.saved_ref for r in results)
            for n in names:
                h.assert_nothing_left(n)
            fsck = subprocess.run(["git", "fsck", "--no-progress"], cwd=repo, check=False)
            assert fsck.returncode == 0

    run(scenario())


def test_with_the_engine_down_create_fails_whole_and_list_still_answers(
    home: Path, repo: Path, shared: Path
) -> None:
    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            await h.create("up")
            h.backend.engine.down = True
            with pytest.raises(BackendUnavailable):
                await h.create()
            h.assert_nothing_left("s1")
            [view] = await h.manager.list()
            assert view.name == "up" and view.container_state == "unknown"
            assert view.state == "running"  # what the store knows
            h.backend.engine.down = False
            assert (await h.manager.get("up")).container_state == "running"

    run(scenario())


def test_two_creates_of_one_name_one_wins_and_the_loser_removes_nothing(
    home: Path, repo: Path, shared: Path
) -> None:
    async def scenario() -> None:
        async with harness(home, repo, shared) as h:
            outcomes = await asyncio.gather(
                h.create("same"), h.create("same"), return_exceptions=True
            )
            won = [o for o in outcomes if not isinstance(o, BaseException)]
            lost = [o for o in outcomes if isinstance(o, BaseException)]
            assert len(won) == 1 and len(lost) == 1
            assert isinstance(lost[0], ClauderonError) and "already exists" in str(lost[0])
            session = won[0]
            assert h.store.get_session("same") is not None
            assert Path(session.worktree).is_dir() and "same" in h.branches()
            assert h.backend.ours()[session.container].state == ContainerState.RUNNING
            assert h.proxy.has_session("same")

    run(scenario())


class Killed(BaseException):
    """The daemon dies here (nothing catches it, as nothing outlives kill -9)."""


@pytest.mark.parametrize("fault", ["killed", "failed"])
def test_a_delete_cut_off_while_removing_files_is_finished_without_a_broken_save(
    home: Path, repo: Path, shared: Path, fault: str
) -> None:
    """Finishing a delete saves again what it finds (the agent may have worked since),
    unless the work was saved and the removal had begun: a snapshot of a half-removed
    worktree is no one's work. Killed: the next daemon finishes it; failed: `delete
    --force` again does."""

    async def scenario() -> None:
        engine = FakeEngine(images={DEFAULT_IMAGE})
        async with harness(home, repo, shared, engine) as h:
            session = await h.create()
            worktree = Path(session.worktree)
            (worktree / "unsaved.txt").write_text("keep me\n")

            def dies_midway(session: Any, only_at: str | None = None) -> None:
                (worktree / "unsaved.txt").unlink()
                (worktree / "README").unlink()
                raise Killed if fault == "killed" else PermissionError("read-only")

            h.manager._remove_files = dies_midway  # type: ignore[method-assign]
            with pytest.raises((Killed, PermissionError)):
                await h.manager.delete("s1", force=True)
        async with harness(home, repo, shared, engine) as h:
            await h.manager.startup()
            if fault == "failed":
                failed = h.store.get_session("s1")
                assert failed is not None and failed.status == SessionStatus.FAILED
                await h.manager.delete("s1", force=True)
            h.assert_nothing_left("s1")
            refs = git("for-each-ref", "--format=%(refname)", "refs/clauderon/s1/", cwd=repo)
            saved = [r for r in refs.split() if "/branches/" not in r]
            assert saved
            for ref in saved:
                assert git("show", f"{ref}:unsaved.txt", cwd=repo) == "keep me"

    run(scenario())
