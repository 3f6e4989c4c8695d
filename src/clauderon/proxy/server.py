"""The credential proxy inside the daemon: mitmproxy as a library, on the daemon's loop.

Sessions reach it through one Unix socket each (`sessions/<name>/proxy/p.sock`, mounted
read-only into the container, where a small forwarder joins it to 127.0.0.1). Every
connection accepted on a session's socket is handed to mitmproxy's regular-mode server
with a peer address that names that session: which socket a connection came in on is
what the engine and the kernel decide, so a container cannot claim another's. mitmproxy
listens on no network at all (tests and benchmarks may add a loopback TCP listener).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
from pathlib import Path
from typing import Any

import httpx
from mitmproxy import options
from mitmproxy.addons import core, next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master
from mitmproxy.proxy import mode_servers

from ..config import ProxyConfig, check_allow_entry
from ..errors import ClauderonError, InvalidInput
from ..models import Session
from .addon import SessionDirectory, SessionProxy
from .allow import LiveAllowList, change
from .audit import AuditLog
from .credentials import CredentialStore
from .policy import DEFAULT_ALLOWLIST, Policy

log = logging.getLogger(__name__)
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SOCKET_NAME = "p.sock"  # inside the session's proxy directory
SESSION_PEER_PREFIX = "session:"  # the peer "host" of a connection from a session socket
MAX_HOST_LENGTH = 260  # a DNS name (253), `*.`, `:port`
MAX_ALLOW_ENTRIES = 1000  # `clauderon allow|disallow` entries: the file stays small


def session_peer(name: str) -> str:
    """The peer address the proxy gives connections from session `name`'s socket (never a
    network address, so nothing that arrives over TCP can carry it)."""
    return f"{SESSION_PEER_PREFIX}{name}"


class _SessionWriter:
    """An asyncio StreamWriter whose peer is the session (mitmproxy reads it once)."""

    def __init__(self, writer: asyncio.StreamWriter, peer: tuple[str, int]):
        self._writer = writer
        self._peer = peer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peer
        if name == "sockname":
            return ("127.0.0.1", 0)
        return self._writer.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


def bind_unix(directory: Path) -> socket.socket:
    """A listening Unix socket `directory/p.sock`, bound through the directory's file
    descriptor so the path length (108 bytes for sun_path) never depends on the home."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SOCKET_NAME
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(f"/proc/self/fd/{fd}/{SOCKET_NAME}")
        # The container runs as the user (or root without capabilities): only they connect.
        os.chmod(path, 0o600)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    finally:
        os.close(fd)
    sock.setblocking(False)
    return sock


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
        allow_file: Path | None = None,
    ):
        self.config = config
        self.port = config.port
        self.confdir = confdir
        self.policy = Policy.from_config(config)
        # `clauderon allow|disallow`: next to config.toml, in the clauderon home
        self.live = LiveAllowList(allow_file or confdir.parent / "proxy-allow.json")
        self.policy.live = self.live
        self.credentials = credentials
        self.directory = directory
        self.audit = audit
        self._master: Master | None = None
        self._task: asyncio.Task[None] | None = None
        self.listen_host: str | None = None
        self._instance: mode_servers.ServerInstance[Any] | None = None
        self._sockets: dict[str, tuple[asyncio.AbstractServer, Path]] = {}
        self._ids = itertools.count(1)

    async def start(self, listen_host: str | None = None) -> None:
        """Start mitmproxy on the daemon's loop; with `listen_host` (tests, benchmarks)
        it also listens on TCP there, at the configured port."""
        if listen_host is not None:
            check_port_free(listen_host, self.port)
        for name in ("mitmproxy", "mitmproxy.proxy.server"):
            logging.getLogger(name).setLevel(logging.WARNING)
        opts = options.Options(
            mode=[f"regular@{listen_host}:{self.port}"] if listen_host else [],
            confdir=str(self.confdir),
        )
        master = Master(opts)
        addon = SessionProxy(
            self.policy, self.credentials, self.directory, self.audit, self._post_json
        )
        master.addons.add(  # type: ignore[no-untyped-call]  # mitmproxy's API is untyped
            core.Core(),
            proxyserver.Proxyserver(),  # type: ignore[no-untyped-call]
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
        master.options.update(**updates)  # type: ignore[no-untyped-call]
        self._master = master
        self._task = asyncio.create_task(master.run(), name="credential-proxy")
        server = master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
        # The server every session socket's connections go to (it listens nowhere itself).
        self._instance = mode_servers.ServerInstance.make("regular", server)
        expected = 1 if listen_host else 0
        for _ in range(200):
            instances = list(server.servers)
            ready = len(instances) >= expected and all(i.is_running for i in instances)
            if ready and server.is_running:
                break
            if self._task.done():
                break
            await asyncio.sleep(0.01)
        failed = [i.last_exception for i in server.servers if i.last_exception]
        if self._task.done() or failed or len(list(server.servers)) < expected:
            await self.stop()
            reason = failed[0] if failed else "it stopped at once"
            raise ProxyError(f"the credential proxy could not start: {reason}")
        self.listen_host = listen_host
        if listen_host:
            log.info("credential proxy also listening on %s:%s", listen_host, self.port)

    async def open_session(self, name: str, directory: Path) -> Path:
        """Listen on the session's socket (`directory/p.sock`), replacing any old one."""
        self.close_session(name)
        sock = bind_unix(directory)
        peer = session_peer(name)

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            instance = self._instance
            if instance is None:
                writer.close()
                return
            # A distinct port per connection keeps mitmproxy's per-client bookkeeping apart.
            wrapped = _SessionWriter(writer, (peer, next(self._ids) % 65536))
            try:
                await instance.handle_stream(reader, wrapped)  # type: ignore[arg-type]
            finally:
                writer.close()

        server = await asyncio.start_unix_server(accept, sock=sock)
        path = directory / SOCKET_NAME
        self._sockets[name] = (server, path)
        return path

    def close_session(self, name: str) -> None:
        """Stop listening on the session's socket and remove it (idempotent)."""
        entry = self._sockets.pop(name, None)
        if entry is None:
            return
        server, path = entry
        server.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def has_session(self, name: str) -> bool:
        return name in self._sockets

    async def stop(self) -> None:
        for name in list(self._sockets):
            self.close_session(name)
        self._instance = None
        if self._master is not None:
            # mitmproxy closes its listeners only when its modes change, not on shutdown:
            # without this the address stays taken for as long as the daemon runs.
            server = self._master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await server.servers.update([])
            self._master.shutdown()  # type: ignore[no-untyped-call]
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
            data = response.json()
        if not isinstance(data, dict):
            raise ValueError(f"{url} answered {type(data).__name__}, not a JSON object")
        return data

    # --- `clauderon allow|disallow` ---------------------------------------------------

    def change_allow(self, host: str, allow: bool, session: Session | None) -> dict[str, Any]:
        """Allow or refuse a host for one session or all, from the next request; saved
        and audited. Blocking (it writes files): run it in a worker thread."""
        if len(host) > MAX_HOST_LENGTH:
            raise InvalidInput(f"a host name is at most {MAX_HOST_LENGTH} characters")
        try:
            entry = check_allow_entry(host)
        except ValueError as exc:
            raise InvalidInput(f"{exc} (e.g. example.com, *.example.com, host:8443)") from None
        sid, name = (session.id, session.name) if session else ("", "")
        full = len(self.live.entries()) >= MAX_ALLOW_ENTRIES
        if full and self.live.get(entry, sid) is None:
            raise InvalidInput(
                f"{MAX_ALLOW_ENTRIES} hosts are allowed or refused already: `clauderon "
                "disallow` some, or list them under allow = [...] in config.toml"
            )
        rule = change(
            self.policy, self.live, entry, allow, sid, name, session.egress if session else None
        )
        scope = f"session {name}" if session else "all sessions"
        verb = "allowed" if allow else "refused"
        self.audit.write(
            {
                "session": name or None,
                "host": entry,
                "method": "ALLOW" if allow else "DISALLOW",
                "path": "",
                "status": 200,
                "credential": None,
                "decision": f"rule:{rule or 'none'}",
                "scope": scope,
            }
        )
        note = "" if rule else " (no entry needed)"
        return {
            "host": entry,
            "session": name or None,
            "rule": rule,
            "message": f"{entry}: {verb} for {scope} from the next request{note}.",
        }

    def allowed_hosts(self, sessions: dict[str, str]) -> list[dict[str, Any]]:
        """Every entry that decides egress: the live ones (of the sessions in `sessions`,
        id → name; those of deleted sessions are dropped), config.toml's, the defaults."""
        self.live.forget_sessions(set(sessions))
        rows: list[dict[str, Any]] = [
            {
                "host": e.host,
                "rule": e.rule,
                "session": sessions.get(e.session_id) if e.session_id else None,
                "source": "live",
                "added": e.added,
            }
            for e in self.live.entries()
        ]
        configured = self.config.allowlist
        base = [(h, "default") for h in DEFAULT_ALLOWLIST] if configured is None else []
        base += [(h, "config") for h in (configured or [])]
        base += [(h, "config") for h in self.config.allow]
        rows += [
            {"host": h, "rule": "allow", "session": None, "source": src, "added": None}
            for h, src in base
        ]
        return rows
