"""Which session a proxy connection belongs to: the proxy asks, the manager keeps it true.

A connection is a session's when it carries the session's proxy credential *and* comes
from that session's container address on the clauderon network. Addresses are learned
from the engine and re-checked whenever one does not match (containers restart).
"""

from __future__ import annotations

from ..backends import Backend
from ..container import container_name
from ..models import Session
from ..proxy.policy import SessionPolicy
from .blocking import blocking


class ProxySessions:
    def __init__(self, backend: Backend):
        self.backend = backend
        self._by_token: dict[str, SessionPolicy] = {}
        self._addresses: dict[str, str] = {}  # session name → container address

    def register(self, session: Session) -> None:
        if not session.proxy_token:
            return
        self._by_token[session.proxy_token] = SessionPolicy(
            name=session.name,
            session_id=session.id,
            token=session.proxy_token,
            egress=session.egress,
            access_mode=session.access_mode,
        )

    def unregister(self, session: Session) -> None:
        self._by_token.pop(session.proxy_token, None)
        self._addresses.pop(session.name, None)

    def update(self, session: Session) -> None:
        """Apply a changed policy (e.g. the access mode) to the next request."""
        policy = self._by_token.get(session.proxy_token)
        if policy is None:
            self.register(session)
            return
        policy.egress, policy.access_mode = session.egress, session.access_mode

    def forget_address(self, name: str) -> None:
        self._addresses.pop(name, None)

    def by_token(self, token: str) -> SessionPolicy | None:
        return self._by_token.get(token)

    async def verify_peer(self, policy: SessionPolicy, address: str) -> bool:
        if address and self._addresses.get(policy.name) == address:
            return True
        status = await blocking(self.backend.inspect, container_name(policy.name))
        if status is None or not status.ip:
            return False
        self._addresses[policy.name] = status.ip
        return status.ip == address
