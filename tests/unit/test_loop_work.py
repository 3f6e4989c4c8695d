"""Blocking work handed off the event loop (the loop also carries the proxy's traffic):
the audit log's writes and reads, the store's writes of agent reports, API tokens.

"Blocks" is shown without timing: the disk or the store is made to wait for ever (a FIFO
nobody reads, a database another connection holds locked), and the call must return all
the same; a thread watches it so that the old behaviour fails the test instead of
hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clauderon.daemon.directory import ProxySessions
from clauderon.daemon.live import LiveReports
from clauderon.models import AgentStatus, Session, SessionStatus
from clauderon.proxy.audit import AuditLog
from clauderon.store import Store
from clauderon.worker import SerialWorker

NEVER = 30.0  # how long a watcher waits before it calls the call blocked


def returns(call: Callable[[], Any]) -> bool:
    """Whether `call` returns (in a watcher thread, which is left behind if it hangs)."""
    done = threading.Event()

    def run() -> None:
        call()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(NEVER)


# --- the worker -------------------------------------------------------------------------


def test_worker_keeps_order_and_drains_on_close():
    seen: list[int] = []
    worker = SerialWorker("t")
    for i in range(500):
        assert worker.submit(seen.append, i)
    worker.close()
    assert seen == list(range(500))
    assert not worker.submit(seen.append, 500)  # closed: refused, not lost silently


def test_worker_drops_when_full_and_says_how_many():
    gate, busy = threading.Event(), threading.Event()
    dropped: list[int] = []
    worker = SerialWorker("t", backlog=3, on_drop=dropped.append)
    seen: list[int] = []
    assert worker.submit(lambda: (busy.set(), gate.wait()))  # a stalled disk
    assert busy.wait(NEVER)
    accepted = [worker.submit(seen.append, i) for i in range(10)]
    assert accepted == [True] * 3 + [False] * 7
    gate.set()
    assert worker.flush(NEVER)
    worker.close()
    assert seen == sorted(seen) and len(seen) == accepted.count(True)
    assert sum(dropped) == accepted.count(False) == worker.dropped_total


# --- the audit log ----------------------------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """An audit path that blocks whoever opens it for writing, until someone reads."""
    path = tmp_path / "audit.jsonl"
    os.mkfifo(path)
    yield path
    # Let a writer still waiting on it go (the reader end opened then closed).
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.close(fd)


def test_audit_write_never_waits_for_the_disk(fifo: Path):
    log = AuditLog(fifo)
    assert returns(lambda: log.write({"session": "s", "host": "h"})), "write() blocked"


def test_audit_write_reaches_followers_at_once_and_the_file_in_order(tmp_path: Path):
    log = AuditLog(tmp_path / "audit.jsonl")

    async def scenario() -> list[dict[str, Any]]:
        queue = log.subscribe()
        for i in range(300):
            log.write({"session": "s", "n": i})
        return [queue.get_nowait() for _ in range(300)]

    followed = asyncio.run(scenario())
    assert [e["n"] for e in followed] == list(range(300))
    log.close()  # a daemon's normal stop: nothing queued is lost
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["n"] for line in lines] == list(range(300))


def test_audit_drops_beyond_its_backlog_and_says_how_many(tmp_path: Path):
    log = AuditLog(tmp_path / "audit.jsonl", backlog=5)
    with log._lock:  # the disk stalls: the writer waits for the file
        for i in range(20):
            log.write({"session": "s", "n": i})
    log.close()
    entries = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    written = [e["n"] for e in entries if "n" in e]
    assert written == sorted(written) and 5 <= len(written) < 20
    dropped = [e["dropped"] for e in entries if e.get("decision") == "audit-dropped"]
    assert sum(dropped) == 20 - len(written)


def test_audit_read_sees_what_was_written_and_reads_only_the_end(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    with open(path, "w") as out:  # a big log, mostly other sessions'
        for i in range(20000):
            out.write(json.dumps({"session": "other", "n": i}) + "\n")
        out.write("{not json\n")
    log = AuditLog(path)
    for i in range(5):
        log.write({"session": "s", "n": i})
    assert [e["n"] for e in log.read("s", limit=3)] == [2, 3, 4]  # no flush needed
    assert [e.get("n") for e in log.read(None, limit=2)] == [3, 4]
    assert [e["n"] for e in log.read("other", limit=2)] == [19998, 19999]
    assert log.read("nobody") == []
    log.close()


def test_audit_read_continues_into_rotated_files(tmp_path: Path):
    log = AuditLog(tmp_path / "audit.jsonl", max_bytes=1000, backups=2)
    for i in range(40):
        log.write({"session": "s", "n": i})
    assert log.flush()
    assert (tmp_path / "audit.jsonl.1").exists()
    entries = log.read("s", limit=25)
    assert [e["n"] for e in entries] == list(range(15, 40))
    log.close()


def test_audit_follow_gives_each_entry_once(tmp_path: Path):
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(3):
        log.write({"session": "s", "n": i})

    async def scenario() -> list[int]:
        stream = log.follow("s", limit=10)
        got = [(await anext(stream))["n"] for _ in range(3)]
        log.write({"session": "other", "n": 99})
        log.write({"session": "s", "n": 3})
        got.append((await anext(stream))["n"])
        await stream.aclose()
        return got

    assert asyncio.run(scenario()) == [0, 1, 2, 3]
    log.close()


# --- agent reports and the store --------------------------------------------------------


def make_session(store: Store, name: str = "s1") -> Session:
    session = Session(
        id=f"id-{name}",
        name=name,
        status=SessionStatus.RUNNING,
        prompt="p",
        repo="/r",
        worktree=f"/w/{name}",
        branch=name,
    )
    store.insert_session(session)
    return session


@contextlib.contextmanager
def locked(db: Path) -> Iterator[None]:
    """Another connection holds the database's write lock (as a stalled writer would)."""
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in its own thread (as the daemon's: the proxy calls in)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(NEVER)
    loop.close()


def on(loop: asyncio.AbstractEventLoop, call: Callable[[], Any]) -> Any:
    """Run `call` on the loop and return its result."""

    async def run() -> Any:
        return call()

    return asyncio.run_coroutine_threadsafe(run(), loop).result(NEVER)


def test_agent_reports_are_recorded_off_the_loop_in_order(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
):
    store = Store(tmp_path / "db.sqlite")
    make_session(store)
    directory = ProxySessions()
    published: list[tuple[str, dict[str, Any]]] = []
    live = LiveReports(store, directory, lambda t, s, **p: published.append((t, p)))
    live.attach()
    # The store is locked (a stalled writer): recording must wait, the loop must not
    # (before: the report waited there for the busy timeout, then failed).
    with locked(store.path):
        on(loop, lambda: directory.on_report("s1", "claude", "UserPromptSubmit", {}))
        on(loop, lambda: directory.on_report("s1", "claude", "Stop", {}))
    assert live.flush(NEVER)
    on(loop, lambda: None)  # the publications come back through the loop, before this
    live.close()
    assert store.get_session("s1").agent_status == AgentStatus.WAITING_INPUT
    statuses = [p["agent_status"] for t, p in published if "previous" in p]
    assert statuses == ["working", "waiting_input"]
    history = [e["payload"]["agent_status"] for e in store.events("id-s1")]
    assert history == ["working", "waiting_input"]
    store.close()


def test_token_checks_do_not_read_the_database(tmp_path: Path):
    """Every request over TCP checks its token, on the loop: from memory, not SQLite."""
    store = Store(tmp_path / "db.sqlite")
    store.add_token("t1", "a", "h1")
    assert store.token_ids_and_hashes() == [("t1", "h1")]
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)  # what the store sends to SQLite
    for _ in range(100):
        assert store.token_ids_and_hashes() == [("t1", "h1")]
    assert statements == []
    store._db.set_trace_callback(None)
    store.add_token("t2", "b", "h2")
    assert sorted(store.token_ids_and_hashes()) == [("t1", "h1"), ("t2", "h2")]
    store.delete_token("t1")
    assert store.token_ids_and_hashes() == [("t2", "h2")]  # revoked at once
    store.close()
