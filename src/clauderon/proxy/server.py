"""The credential proxy inside the daemon: mitmproxy as a library, on the daemon's loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path
from typing import Any

import httpx
from mitmproxy import options
from mitmproxy.addons import core, next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master

from ..config import ProxyConfig
from ..errors import ClauderonError
from .addon import SessionDirectory, SessionProxy
from .audit import AuditLog
from .credentials import CredentialStore
from .policy import Policy

log = logging.getLogger(__name__)
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class ProxyError(ClauderonError):
    code = "proxy_unavailable"
    status = 503


def check_port_free(host: str, port: int) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As the server will: connections of a previous proxy still in TIME_WAIT do not count.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
    except OSError as exc:
        raise ProxyError(
            f"the proxy port {host}:{port} is in use ({exc.strerror}): stop what uses it or "
            "set another port under [proxy] in ~/.clauderon/config.toml"
        ) from None
    finally:
        probe.close()


class CredentialProxy:
    def __init__(
        self,
        config: ProxyConfig,
        confdir: Path,
        credentials: CredentialStore,
        directory: SessionDirectory,
        audit: AuditLog,
    ):
        self.config = config
        self.port = config.port
        self.confdir = confdir
        self.policy = Policy.from_config(config)
        self.credentials = credentials
        self.directory = directory
        self.audit = audit
        self._master: Master | None = None
        self._task: asyncio.Task[None] | None = None
        self.listen_host: str | None = None

    async def start(self, listen_host: str) -> None:
        check_port_free(listen_host, self.port)
        for name in ("mitmproxy", "mitmproxy.proxy.server"):
            logging.getLogger(name).setLevel(logging.WARNING)
        opts = options.Options(
            mode=[f"regular@{listen_host}:{self.port}"],
            confdir=str(self.confdir),
        )
        master = Master(opts)
        addon = SessionProxy(
            self.policy, self.credentials, self.directory, self.audit, self._post_json
        )
        master.addons.add(
            core.Core(),
            proxyserver.Proxyserver(),
            next_layer.NextLayer(),
            tlsconfig.TlsConfig(),
            addon,
        )
        updates: dict[str, Any] = {
            # The client's TLS handshake completes before any upstream is tried.
            "connection_strategy": "lazy",
        }
        if SYSTEM_CA_BUNDLE.exists():  # trust what the host trusts (corporate CAs too)
            updates["ssl_verify_upstream_trusted_ca"] = str(SYSTEM_CA_BUNDLE)
        master.options.update(**updates)
        self._master = master
        self._task = asyncio.create_task(master.run(), name="credential-proxy")
        server = master.addons.get("proxyserver")
        for _ in range(200):
            instances = list(server.servers)
            if instances and all(i.is_running for i in instances):
                break
            if self._task.done():
                break
            await asyncio.sleep(0.01)
        failed = [i.last_exception for i in server.servers if i.last_exception]
        if self._task.done() or failed or not list(server.servers):
            await self.stop()
            reason = failed[0] if failed else "it stopped at once"
            raise ProxyError(
                f"the credential proxy could not start on {listen_host}:{self.port}: {reason}"
            )
        self.listen_host = listen_host
        log.info("credential proxy listening on %s:%s", listen_host, self.port)

    async def stop(self) -> None:
        if self._master is not None:
            # mitmproxy closes its listeners only when its modes change, not on shutdown:
            # without this the address stays taken for as long as the daemon runs.
            server = self._master.addons.get("proxyserver")
            with contextlib.suppress(Exception):
                await server.servers.update([])
            self._master.shutdown()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5)
        self._master = self._task = None
        self.listen_host = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _post_json(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST for OAuth refreshes, sent where [proxy.upstreams] says."""
        parts = httpx.URL(url)
        upstream = self.policy.upstream_for(parts.host)
        if upstream:
            base = httpx.URL(upstream)
            url = str(base.copy_with(path=base.path.rstrip("/") + parts.path))
        verify: Any = str(SYSTEM_CA_BUNDLE) if SYSTEM_CA_BUNDLE.exists() else True
        async with httpx.AsyncClient(timeout=30, verify=verify) as client:
            response = await client.post(url, json=body)
            response.raise_for_status()
            return response.json()
