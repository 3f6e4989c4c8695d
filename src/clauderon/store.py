"""The SQLite store: sessions, their event history, and cached image facts.

WAL mode, a schema version and forward-only migrations. A session row is the
pydantic record as JSON plus the columns that need indexes or constraints (the name is
UNIQUE, which is how concurrent creations reserve a name).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import Conflict, StoreUnwritable
from .models import Session, utcnow

# Each entry moves the schema from version i to i+1. Never edit a released entry.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT,
        session_name TEXT,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        ts TEXT NOT NULL
    );
    CREATE INDEX events_session ON events(session_id);
    CREATE TABLE image_facts (
        image_id TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        probed_at TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    """,
    # Per-session git sync: the branch tip both sides last agreed on (gitsync.py).
    """
    CREATE TABLE git_sync (
        session_id TEXT PRIMARY KEY,
        tip TEXT NOT NULL,
        data TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
]


# The event history is for reading recent changes, not an archive.
EVENTS_KEPT = 10_000
EVENTS_PRUNE_EVERY = 500

# Fields written by reports that arrive at any moment (agent hooks, the proxy's view of
# model calls), never by a whole record save.
LIVE_FIELDS = ("agent_status", "agent_status_at", "model_error")


class Store:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.RLock()
        self._token_cache: list[tuple[str, str]] | None = None
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self.migrate()
        self.check_writable()

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        with self._lock:
            version = self.schema_version
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this clauderon "
                    f"({len(MIGRATIONS)}): upgrade clauderon"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                with self._transaction():
                    for statement in script.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {number}")

    def check_writable(self) -> None:
        """Raise StoreUnwritable unless a write would succeed now (nothing is changed).

        Called before any change to a session acts on its container or files, so that an
        operation never happens without being recorded. A store read-only when the daemon
        started stays so for that process (SQLite keeps the read-only handles), so the
        daemon does not start then; the next command starts it once the store is fixed."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                version = self.schema_version
                self._db.execute(f"PRAGMA user_version = {version}")
            except sqlite3.Error as exc:
                raise StoreUnwritable(
                    f"the store {self.path} cannot be written ({exc}): make it writable "
                    f"(chmod u+w {self.path}*) or free disk space, then run the command again"
                ) from None
            finally:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- sessions -------------------------------------------------------------------

    def insert_session(self, session: Session) -> None:
        """Add a new session; fails with Conflict if the name is taken."""
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO sessions (id, name, status, data, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        session.id,
                        session.name,
                        session.status.value,
                        session.model_dump_json(),
                        session.created_at.isoformat(),
                        session.updated_at.isoformat(),
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"a session named {session.name!r} already exists") from exc

    def save_session(self, session: Session) -> Session:
        """Save the record, except its live fields (LIVE_FIELDS), which only
        `update_live_fields` writes: a record read before an agent's hook report must not
        undo that report when it is saved."""
        session.updated_at = utcnow()
        with self._transaction() as db:
            row = db.execute("SELECT data FROM sessions WHERE id = ?", (session.id,)).fetchone()
            if row is not None:
                stored = Session.model_validate_json(row["data"])
                for field in LIVE_FIELDS:
                    setattr(session, field, getattr(stored, field))
            db.execute(
                "UPDATE sessions SET name = ?, status = ?, data = ?, updated_at = ? WHERE id = ?",
                (
                    session.name,
                    session.status.value,
                    session.model_dump_json(),
                    session.updated_at.isoformat(),
                    session.id,
                ),
            )
        return session

    def update_live_fields(self, session: Session) -> None:
        """Write only the live fields of `session` (reports that arrive at any time)."""
        values = session.model_dump(mode="json", include=set(LIVE_FIELDS))
        with self._transaction() as db:
            row = db.execute("SELECT data FROM sessions WHERE id = ?", (session.id,)).fetchone()
            if row is None:
                return
            data = {**json.loads(row["data"]), **values}
            db.execute("UPDATE sessions SET data = ? WHERE id = ?", (json.dumps(data), session.id))

    def delete_session(self, session_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            db.execute("DELETE FROM git_sync WHERE session_id = ?", (session_id,))

    def get_session(self, name_or_id: str) -> Session | None:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM sessions WHERE name = ? OR id = ?", (name_or_id, name_or_id)
            ).fetchone()
        return Session.model_validate_json(row["data"]) if row else None

    def list_sessions(self) -> list[Session]:
        with self._lock:
            rows = self._db.execute("SELECT data FROM sessions ORDER BY created_at").fetchall()
        return [Session.model_validate_json(row["data"]) for row in rows]

    # --- git sync state (gitsync.py) ------------------------------------------------------

    def get_git_sync(self, session_id: str) -> tuple[str, str] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT tip, data FROM git_sync WHERE session_id = ?", (session_id,)
            ).fetchone()
        return (row["tip"], row["data"]) if row else None

    def put_git_sync(self, session_id: str, tip: str, data: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO git_sync (session_id, tip, data, updated_at) "
                "VALUES (?, ?, ?, ?)",
                (session_id, tip, data, utcnow().isoformat()),
            )

    def delete_git_sync(self, session_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM git_sync WHERE session_id = ?", (session_id,))

    def list_git_sync(self) -> dict[str, tuple[str, str]]:
        with self._lock:
            rows = self._db.execute("SELECT session_id, tip, data FROM git_sync").fetchall()
        return {r["session_id"]: (r["tip"], r["data"]) for r in rows}

    # --- events ---------------------------------------------------------------------

    def add_event(self, session: Session | None, type_: str, payload: dict[str, Any]) -> None:
        """Record an event; the table keeps the newest EVENTS_KEPT (pruned now and then)."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO events (session_id, session_name, type, payload, ts) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    session.id if session else None,
                    session.name if session else None,
                    type_,
                    json.dumps(payload),
                    utcnow().isoformat(),
                ),
            )
            if cursor.lastrowid and cursor.lastrowid % EVENTS_PRUNE_EVERY == 0:
                db.execute("DELETE FROM events WHERE id <= ?", (cursor.lastrowid - EVENTS_KEPT,))

    def events(self, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT type, payload, ts FROM events WHERE session_id = ? ORDER BY id",
                (session_id,),
            ).fetchall()
        return [
            {"type": r["type"], "payload": json.loads(r["payload"]), "ts": r["ts"]} for r in rows
        ]

    # --- API tokens (only their hashes are kept) -----------------------------------------

    def add_token(self, token_id: str, name: str, token_hash: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO api_tokens (id, name, hash, created_at) VALUES (?, ?, ?, ?)",
                (token_id, name, token_hash, utcnow().isoformat()),
            )
            self._token_cache = None

    def token_hashes(self) -> list[str]:
        return [known for _, known in self.token_ids_and_hashes()]

    def token_ids_and_hashes(self) -> list[tuple[str, str]]:
        """Checked on every request over TCP, on the event loop: read from the database
        once, then kept (tokens change only through this store, which drops the copy)."""
        cached = self._token_cache
        if cached is not None:
            return list(cached)
        with self._lock:
            rows = self._db.execute("SELECT id, hash FROM api_tokens")
            tokens = [(r["id"], r["hash"]) for r in rows]
            self._token_cache = tokens
            return list(tokens)

    def list_tokens(self) -> list[dict[str, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, name, created_at FROM api_tokens ORDER BY created_at"
            )
            return [dict(r) for r in rows]

    def delete_token(self, token_id: str) -> bool:
        with self._transaction() as db:
            self._token_cache = None
            return db.execute("DELETE FROM api_tokens WHERE id = ?", (token_id,)).rowcount > 0

    # --- image facts ------------------------------------------------------------------

    def get_image_facts(self, image_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM image_facts WHERE image_id = ?", (image_id,)
            ).fetchone()
        return json.loads(row["data"]) if row else None

    def put_image_facts(self, image_id: str, facts: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO image_facts (image_id, data, probed_at) VALUES (?, ?, ?)",
                (image_id, json.dumps(facts), utcnow().isoformat()),
            )
