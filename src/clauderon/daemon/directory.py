"""Which session a proxy connection belongs to: the proxy asks, the manager keeps it true.

A connection is a session's when it carries the session's proxy credential *and* came in
on that session's own Unix socket (the proxy gives such connections the peer address
`session:<name>`; see proxy/server.py). The socket is mounted into that session's
container only, so the credential alone — which the agent can read — is never enough.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..models import Session
from ..proxy.policy import SessionPolicy
from ..proxy.server import session_peer


class ProxySessions:
    def __init__(self) -> None:
        self._by_token: dict[str, SessionPolicy] = {}
        self._model_calls: dict[str, int] = {}  # session name → model requests in flight
        # Set by the manager: (session name, agent, event, payload) from an agent's hook,
        # and (session name) when a session's model calls start or stop.
        self.on_report: Callable[[str, str, str, dict[str, Any]], None] = lambda *_: None
        self.on_model_calls: Callable[[str], None] = lambda _: None
        self.on_model_result: Callable[[str, str | None], None] = lambda _name, _error: None

    def register(self, session: Session) -> None:
        if not session.proxy_token:
            return
        self._by_token[session.proxy_token] = SessionPolicy(
            name=session.name,
            session_id=session.id,
            token=session.proxy_token,
            egress=session.egress,
            access_mode=session.access_mode,
            hook_token=session.hook_token,
            branch=session.branch,
        )

    def unregister(self, session: Session) -> None:
        self._by_token.pop(session.proxy_token, None)
        self._model_calls.pop(session.name, None)

    def update(self, session: Session) -> None:
        """Apply a changed policy (e.g. the access mode) to the next request."""
        policy = self._by_token.get(session.proxy_token)
        if policy is None:
            self.register(session)
            return
        policy.egress, policy.access_mode = session.egress, session.access_mode

    def report(
        self, policy: SessionPolicy, agent: str, event: str, payload: dict[str, Any]
    ) -> None:
        self.on_report(policy.name, agent, event, payload)

    def model_calls(self, policy: SessionPolicy, delta: int) -> None:
        count = max(0, self._model_calls.get(policy.name, 0) + delta)
        self._model_calls[policy.name] = count
        if count == (1 if delta > 0 else 0):  # started, or all finished
            self.on_model_calls(policy.name)

    def model_result(self, policy: SessionPolicy, error: str | None) -> None:
        self.on_model_result(policy.name, error)

    def model_calls_in_flight(self, name: str) -> int:
        return self._model_calls.get(name, 0)

    def by_token(self, token: str) -> SessionPolicy | None:
        return self._by_token.get(token)

    async def verify_peer(self, policy: SessionPolicy, address: str) -> bool:
        return address == session_peer(policy.name)
