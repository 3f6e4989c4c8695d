"""What the proxy sees of a session at work — its agent's hook reports, its model calls
starting and ending, a model call's failure — recorded and published.

These arrive on the event loop, in the middle of the proxy's traffic (an agent reports
at every turn). The store is SQLite on disk, so they are recorded by one thread
(`SerialWorker`: in the order they came, never waited for by the loop) and published
back on the loop once recorded. Only the live fields are written (`update_live_fields`),
so a report never races with an operation saving the whole record.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from ..models import AgentStatus, Session, utcnow
from ..store import Store
from ..worker import SerialWorker
from .directory import ProxySessions
from .status import status_from_report

Publish = Callable[..., None]  # (type, session, **payload), on the loop
LIVE_BACKLOG = 10_000


class LiveReports:
    def __init__(self, store: Store, directory: ProxySessions, publish: Publish):
        self.store = store
        self.directory = directory
        self.publish = publish
        self._worker = SerialWorker("live-reports", LIVE_BACKLOG)
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self) -> None:
        """Receive the proxy's reports (the directory's callbacks)."""
        self.directory.on_report = self.report
        self.directory.on_model_calls = self.model_calls
        self.directory.on_model_result = self.model_result

    # --- on the loop ------------------------------------------------------------------

    def report(self, name: str, agent: str, event: str, payload: dict[str, Any]) -> None:
        status = status_from_report(agent, event, payload)
        if status is not None:
            self._submit(self._record_status, name, status)

    def model_result(self, name: str, error: str | None) -> None:
        """A model call's failure (the agent waits on nothing: the user must act), or a
        success, which clears the last failure."""
        self._submit(self._record_model_error, name, error)

    def model_calls(self, name: str) -> None:
        """A session's model calls started (the first one) or all ended."""
        working = self.directory.model_calls_in_flight(name) > 0
        self._submit(self._announce_calls, name, working)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every report so far is recorded (blocking)."""
        return self._worker.flush(timeout)

    def close(self) -> None:
        """Record what is queued, then stop (blocking; the daemon's stop)."""
        self._worker.close()

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # not from a loop (a test): record it here and now
            self._loop = None
            fn(*args)
            return
        self._worker.submit(fn, *args)

    # --- in the worker thread ---------------------------------------------------------

    def _publish(self, type_: str, session: Session, **payload: Any) -> None:
        call = functools.partial(self.publish, type_, session, **payload)
        loop = self._loop
        if loop is None:
            call()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(call)

    def _record_status(self, name: str, status: AgentStatus) -> None:
        session = self.store.get_session(name)
        if session is None:
            return
        previous = session.agent_status
        session.agent_status, session.agent_status_at = status, utcnow()
        self.store.update_live_fields(session)
        if status != previous:
            self.store.add_event(session, "agent_status", {"agent_status": status.value})
            self._publish(
                "agent_status", session, agent_status=status.value, previous=previous.value
            )

    def _record_model_error(self, name: str, error: str | None) -> None:
        session = self.store.get_session(name)
        if session is None or session.model_error == error:
            return
        session.model_error = error
        self.store.update_live_fields(session)
        self._publish("agent_status", session, model_error=error, source="proxy")

    def _announce_calls(self, name: str, working: bool) -> None:
        session = self.store.get_session(name)
        if session is None:
            return
        status = AgentStatus.WORKING if working else session.agent_status
        self._publish("agent_status", session, agent_status=status.value, source="proxy")
