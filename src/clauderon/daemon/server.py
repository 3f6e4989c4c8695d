"""Running the daemon: one per home (a held flock says so), serving on a 0600 Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import logging.handlers
import os
import socket
from pathlib import Path
from typing import IO

import uvicorn

from ..backends import Backends
from ..config import load_config
from ..errors import ClauderonError
from ..paths import Paths
from ..proxy.audit import AuditLog
from ..proxy.ca import ensure_ca
from ..proxy.credentials import CredentialStore
from ..proxy.policy import Policy
from ..proxy.server import CredentialProxy
from ..store import Store
from .api import create_app
from .auth import BearerToken, OpenConnections, RedactTokens, TokenGate, WebSessions
from .directory import ProxySessions
from .events import EventBus
from .listeners import Listeners
from .manager import SessionManager
from .web import add_web_routes

log = logging.getLogger("clauderon.daemon")
RECONCILE_INTERVAL = float(os.environ.get("CLAUDERON_RECONCILE_INTERVAL", "30"))
# Diagnosis: log every event-loop step slower than this many seconds (asyncio's debug
# mode; slows the daemon down). The loop carries the proxy: nothing may block it.
LOOP_SLOW = os.environ.get("CLAUDERON_LOOP_SLOW")


def acquire_daemon_lock(paths: Paths) -> IO[str] | None:
    """Take the lock that marks the running daemon; None if another daemon holds it."""
    handle = open(paths.daemon_lock, "a+")  # noqa: SIM115 - held for the daemon's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def daemon_pid(paths: Paths) -> int | None:
    """The pid of the daemon holding the lock, if one does."""
    try:
        with open(paths.daemon_lock) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return None  # nobody holds it
            except BlockingIOError:
                text = Path(paths.daemon_lock).read_text().strip()
                return int(text) if text.isdigit() else None
    except FileNotFoundError:
        return None


def setup_logging(paths: Paths) -> None:
    handler = logging.handlers.RotatingFileHandler(
        paths.logs / "daemon.log", maxBytes=10 * 1024 * 1024, backupCount=3
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactTokens())  # uvicorn logs WebSocket paths, `?token=` included
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("CLAUDERON_LOG_LEVEL", "INFO").upper())


def bind_private_socket(path: Path) -> socket.socket:
    """A Unix socket only the user can connect to (mode 0600 from the start)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a stale socket from a daemon that died
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    return sock


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClauderonError(
            f"invalid --listen {text!r}: use HOST:PORT, e.g. 127.0.0.1:3030",
            code="invalid_input",
            status=400,
        )
    return host, int(port)


def bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ClauderonError(
            f"cannot listen on {host}:{port}: {exc.strerror}", code="listen_failed", status=500
        ) from None
    return sock


def run_daemon(paths: Paths, listen: str | None = None) -> int:
    tcp = parse_listen(listen) if listen else None
    paths.ensure()
    lock = acquire_daemon_lock(paths)
    if lock is None:
        raise ClauderonError(
            f"a clauderon daemon is already running for {paths.home} (pid {daemon_pid(paths)})",
            code="daemon_running",
            status=409,
        )
    setup_logging(paths)
    try:
        return asyncio.run(_serve(paths, tcp))
    finally:
        with contextlib.suppress(FileNotFoundError):
            paths.socket.unlink()
        lock.close()


async def _serve(paths: Paths, tcp: tuple[str, int] | None) -> int:
    if LOOP_SLOW:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = float(LOOP_SLOW)
        logging.getLogger("asyncio").setLevel(logging.WARNING)
    config = load_config(paths.config)
    ca_cert, confdir = ensure_ca(paths.home)
    store = Store(paths.db)
    backends = Backends.for_home(paths.instance)
    directory = ProxySessions()
    policy = Policy.from_config(config.proxy)
    credentials = CredentialStore(paths.secrets, policy.credential_names())
    audit = AuditLog(paths.audit_log)
    proxy = CredentialProxy(config.proxy, confdir, credentials, directory, audit)
    manager = SessionManager(
        paths, store, backends, EventBus(), proxy, directory, ca_cert, github=config.github
    )
    server: uvicorn.Server | None = None

    def shutdown() -> None:
        if server is not None:
            server.should_exit = True

    connections = OpenConnections()
    api = create_app(manager, shutdown, connections)
    # TCP listeners (`--listen`, or added by `clauderon web`) each have their own gate.
    web_sessions = WebSessions(connections=connections)  # logout/expiry close its sockets
    listeners = Listeners(api, store, connections, [BearerToken(store), web_sessions], bind_tcp)
    add_web_routes(api, web_sessions, listeners.listen)
    app = TokenGate(api, store, connections)  # over the Unix socket: the user's own
    server_config = uvicorn.Config(
        app, log_config=None, access_log=False, timeout_graceful_shutdown=5, lifespan="off"
    )
    server = uvicorn.Server(server_config)
    sockets = [bind_private_socket(paths.socket)]
    if tcp is not None:
        await listeners.listen(*tcp)
    log.info("daemon %s serving on %s", os.getpid(), paths.socket)
    try:
        await manager.startup()
        # Reconcile at start, not only 30 s later: running containers are taken back
        # before the first command is answered.
        await manager.reconcile(False, lambda *_: None, manual=False)
    except ClauderonError as exc:  # e.g. Docker down: serve anyway, commands will say so
        log.warning("startup reconcile skipped: %s", exc.message)
    except Exception:  # a reconcile bug must not keep the daemon down
        log.exception("startup reconcile failed")
    reconciler = asyncio.create_task(manager.reconcile_forever(RECONCILE_INTERVAL, shutdown))
    expiring = asyncio.create_task(web_sessions.expire_forever())
    await server.serve(sockets=sockets)  # uvicorn turns SIGTERM/SIGINT into a graceful stop
    await listeners.close()
    reconciler.cancel()
    expiring.cancel()
    manager.consoles.close_all()
    await proxy.stop()
    # Written off the loop by their own threads: what is queued is written before the end.
    await asyncio.to_thread(audit.close)
    await asyncio.to_thread(manager.live.close)
    store.close()
    log.info("daemon stopped")
    return 0
