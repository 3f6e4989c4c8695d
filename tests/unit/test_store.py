import json
import os
import sqlite3
import subprocess
import sys

import pytest

from clauderon.errors import Conflict, StoreUnwritable
from clauderon.models import Session, SessionStatus
from clauderon.store import MIGRATIONS, Store


def session(name: str, id_: str = "") -> Session:
    return Session(
        id=id_ or f"id-{name}",
        name=name,
        status=SessionStatus.CREATING,
        prompt="p",
        repo="/r",
        worktree=f"/w/{name}",
        branch=name,
    )


def test_schema_is_migrated_and_in_wal_mode(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    assert store.schema_version == len(MIGRATIONS)
    mode = sqlite3.connect(tmp_path / "db.sqlite").execute("PRAGMA journal_mode").fetchone()
    assert mode[0] == "wal"
    store.close()
    # Opening again does not re-run migrations.
    Store(tmp_path / "db.sqlite").close()


def test_a_newer_schema_is_refused(tmp_path):
    Store(tmp_path / "db.sqlite").close()
    db = sqlite3.connect(tmp_path / "db.sqlite")
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="upgrade clauderon"):
        Store(tmp_path / "db.sqlite")


def test_names_are_unique(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    store.insert_session(session("a"))
    with pytest.raises(Conflict):
        store.insert_session(session("a", "other-id"))


def test_round_trip(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    s = session("a")
    s.env = {"K": "v\nw"}
    store.insert_session(s)
    s.status = SessionStatus.RUNNING
    store.save_session(s)
    loaded = store.get_session("a")
    assert loaded is not None and loaded.status == SessionStatus.RUNNING
    assert loaded.env == {"K": "v\nw"}
    assert store.get_session("id-a") == loaded
    assert [x.name for x in store.list_sessions()] == ["a"]
    store.add_event(s, "x", {"k": 1})
    assert store.events("id-a")[0]["payload"] == {"k": 1}
    store.delete_session("id-a")
    assert store.get_session("a") is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_store_is_refused_at_open_and_fine_once_fixed(tmp_path):
    path = tmp_path / "db.sqlite"
    store = Store(path)
    store.insert_session(session("a"))
    store.close()
    files = sorted(tmp_path.glob("db.sqlite*"))
    for f in files:
        f.chmod(0o444)
    with pytest.raises(StoreUnwritable, match=r"chmod u\+w"):
        Store(path)
    for f in tmp_path.glob("db.sqlite*"):  # as the error says: chmod u+w db.sqlite*
        f.chmod(0o644)
    # The next daemon (a new process: SQLite keeps read-only handles per process) works.
    code = (
        "import sys; from clauderon.store import Store; s = Store(sys.argv[1]); "
        "s.check_writable(); print(len(s.list_sessions()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "1"


def test_check_writable_changes_nothing(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    version = store.schema_version
    store.check_writable()
    assert store.schema_version == version
    assert not store._db.in_transaction


def test_saving_a_record_read_before_a_hook_report_keeps_the_report(tmp_path):
    from clauderon.models import AgentStatus, utcnow

    store = Store(tmp_path / "db.sqlite")
    store.insert_session(session("a"))
    stale = store.get_session("a")  # an operation read the record…
    report = store.get_session("a")
    report.agent_status, report.agent_status_at = AgentStatus.WAITING_INPUT, utcnow()
    store.update_live_fields(report)  # …a hook reported meanwhile…
    stale.status = SessionStatus.RUNNING
    store.save_session(stale)  # …and the operation saved its change
    saved = store.get_session("a")
    assert saved.status == SessionStatus.RUNNING
    assert saved.agent_status == AgentStatus.WAITING_INPUT
    assert stale.agent_status == AgentStatus.WAITING_INPUT  # the caller sees it too


def test_the_event_history_is_bounded(tmp_path, monkeypatch):
    import clauderon.store as store_module

    monkeypatch.setattr(store_module, "EVENTS_KEPT", 100)
    monkeypatch.setattr(store_module, "EVENTS_PRUNE_EVERY", 10)
    store = Store(tmp_path / "db.sqlite")
    store.insert_session(session("a"))
    for i in range(1000):
        store.add_event(store.get_session("a"), "tick", {"i": i})
    count = store._db.execute("SELECT count(*) FROM events").fetchone()[0]
    assert 100 <= count <= 110
    newest = store._db.execute("SELECT payload FROM events ORDER BY id DESC").fetchone()[0]
    assert json.loads(newest) == {"i": 999}
