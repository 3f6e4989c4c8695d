import sqlite3

import pytest

from clauderon.errors import Conflict
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


def test_git_sync_state_round_trip_and_goes_with_the_session(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    one = session("one")
    store.insert_session(one)
    store.put_git_sync(one.id, "a" * 40, '{"agent": {}}')
    assert store.get_git_sync(one.id) == ("a" * 40, '{"agent": {}}')
    assert store.list_git_sync() == {one.id: ("a" * 40, '{"agent": {}}')}
    store.delete_session(one.id)
    assert store.get_git_sync(one.id) is None
