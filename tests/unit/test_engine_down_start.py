"""The daemon starting while the container engine is down (issue 10): the credential
proxy still comes up with every session's socket, and a row left `creating` or
`deleting` by a daemon that died does not keep the sessions after it from being served.

The engine is the in-memory fake backend's, switched down and up, so the shared engine
is never stopped; the real engine-restart test is tests/integration/test_zz_engine_restart.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from clauderon.backends import Backends
from clauderon.config import ProxyConfig
from clauderon.daemon.directory import ProxySessions
from clauderon.daemon.events import EventBus
from clauderon.daemon.manager import SessionManager
from clauderon.errors import ClauderonError
from clauderon.models import Session, SessionStatus
from clauderon.paths import Paths
from clauderon.proxy.audit import AuditLog
from clauderon.proxy.ca import ensure_ca
from clauderon.proxy.credentials import CredentialStore
from clauderon.proxy.server import CredentialProxy
from clauderon.store import Store

from .fake_backend import FakeBackend, FakeEngine


@pytest.fixture
def home() -> Iterator[Path]:
    # Short: a session's proxy socket path must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="cl-down-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def session(name: str, status: SessionStatus) -> Session:
    return Session(
        id=f"id-{name}",
        name=name,
        status=status,
        prompt="p",
        repo=f"/nonexistent/{name}",
        worktree=f"/nonexistent/{name}/wt",
        branch=name,
        container=f"c-{name}",
        proxy_token=f"pt-{name}",
        hook_token=f"ht-{name}",
        backend="fake",
    )


def test_proxy_and_every_session_served_with_the_engine_down(home: Path):
    paths = Paths(home)
    paths.ensure()
    store = Store(paths.db)
    rows = [
        session("halfmade", SessionStatus.CREATING),  # first: before the others
        session("alpha", SessionStatus.RUNNING),
        session("going", SessionStatus.DELETING),
        session("beta", SessionStatus.STOPPED),
        session("gamma", SessionStatus.RUNNING),
    ]
    for row in rows:
        store.insert_session(row)
    ca_cert, confdir = ensure_ca(paths.home)
    directory = ProxySessions()
    proxy = CredentialProxy(
        ProxyConfig(),
        confdir,
        CredentialStore(paths.secrets, []),
        directory,
        AuditLog(paths.audit_log),
    )
    # Down: every call fails as it does with the engine stopped. Up: an engine with no
    # container of this home (what a restarted engine may well show).
    engine = FakeEngine(down=True)
    backend = FakeBackend(paths.instance, engine)
    manager = SessionManager(
        paths, store, Backends.of(backend), EventBus(), proxy, directory, ca_cert
    )

    async def scenario() -> None:
        try:
            with contextlib.suppress(ClauderonError):  # the daemon serves on regardless
                await manager.startup()
            assert proxy.running
            for name in ("alpha", "beta", "gamma"):
                assert proxy.has_session(name), f"no proxy socket for {name}"
                assert (paths.session_dir(name) / "proxy" / "p.sock").exists()
                assert directory.by_token(f"pt-{name}") is not None
            # What was under way is left for later, not failed for an engine that is down.
            left = {s.name: s.status for s in store.list_sessions()}
            assert left["halfmade"] == SessionStatus.CREATING
            assert left["going"] == SessionStatus.DELETING
            engine.down = False  # the engine is back: the periodic reconcile finishes them
            report = await manager.reconcile(False, lambda *_: None, manual=False)
            assert report["rolled_back"] == ["halfmade"]
            left = {s.name: s.status for s in store.list_sessions()}
            assert "halfmade" not in left and "going" not in left
            assert proxy.has_session("alpha") and proxy.has_session("gamma")
        finally:
            if manager._sync_task is not None:
                manager._sync_task.cancel()
            await proxy.stop()

    asyncio.run(scenario())
    store.close()
