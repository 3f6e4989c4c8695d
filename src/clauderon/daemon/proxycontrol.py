"""The manager's control of the credential proxy: starting it, each session's socket,
the credentials and their placeholders, access modes, hosts allowed live."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..agents import get_agent
from ..errors import InvalidInput
from ..forwarder import ensure_forwarder
from ..models import CREDENTIAL_PLACEHOLDER, AccessMode, Session
from .blocking import blocking
from .core import ManagerCore

log = logging.getLogger(__name__)


class ProxyControl(ManagerCore):
    """Part of SessionManager: the credential proxy and credentials."""

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

    async def change_allow(self, host: str, allow: bool, session: str | None) -> dict[str, Any]:
        """`clauderon allow|disallow HOST [--session NAME]` (proxy/allow.py), live."""
        target = self._get(session) if session else None
        return await blocking(self.proxy.change_allow, host, allow, target)

    async def allowed_hosts(self, session: str | None = None) -> list[dict[str, Any]]:
        """Every entry that decides egress; with `session`, those that apply to it."""
        if session is not None:
            self._get(session)  # an unknown name is an error, not an empty answer
        sessions = {s.id: s.name for s in await blocking(self.store.list_sessions)}
        rows = await blocking(self.proxy.allowed_hosts, sessions)
        return [r for r in rows if session is None or r["session"] in (None, session)]

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

    # --- the audit log (what the proxy saw) ------------------------------------------------

    def audit_entries(self, session: str | None, limit: int) -> list[dict[str, Any]]:
        """The last `limit` audit entries (of one session), oldest first. Blocking: it
        reads the log file."""
        return self.proxy.audit.read(session, limit)

    def audit_subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """New audit entries as they are written; `audit_unsubscribe` when done."""
        return self.proxy.audit.subscribe()

    def audit_unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.proxy.audit.unsubscribe(queue)

    def audit_follow(self, session: str | None, limit: int) -> AsyncIterator[dict[str, Any]]:
        """The last `limit` entries (read in a thread), then each new one, each once."""
        return self.proxy.audit.follow(session, limit)
