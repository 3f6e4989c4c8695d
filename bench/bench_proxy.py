"""What clauderon's credential proxy adds to a model call: one request and one streamed
(SSE) response through the real proxy versus straight to the same local upstream.

    python bench/bench_proxy.py [--quick] [--diagnose] [--json raw.json]

Four processes, as in production (where the proxy lives in the daemon): the upstream (a
small asyncio HTTP/1.1 server, plain and TLS), the proxy (`CredentialProxy` from
`clauderon.proxy.server` with the real policy, credential store, addon and audit log,
serving one session's Unix socket), clauderon's forwarder (the static C program a session
container runs, here on the host's loopback: 127.0.0.1:<port> → the session socket) and
this process, the client (httpx, keep-alive, `trust_env=False`). Only 127.0.0.1 is used.
The `proxy-https:tcp` arm reaches the same proxy code over a plain TCP listener instead
(the path before sessions had no network), to show what the forwarder and socket add.

Arms (interleaved request by request, the order rotating every round):

- `direct`       POST http://127.0.0.1:<upstream>/v1/messages          (the floor)
- `direct-tls`   POST https://127.0.0.1:<upstream-tls>/v1/messages     (floor + client TLS)
- `proxy-https`  POST https://api.anthropic.com/v1/messages via the proxy (what an agent
                 does: CONNECT, TLS intercepted with clauderon's CA, the proxy injects
                 `x-api-key` and sends the request to the mapped plain-HTTP upstream)
- `proxy-http`   POST http://api.anthropic.com/v1/messages via the proxy

Measured: per-request latency on a warm keep-alive connection; time to the first byte of
an SSE stream (first event written at once, 4 more 10 ms apart); new connections (the
CONNECT + TLS handshake, with the leaf certificate cached or freshly minted); the very
first request through a fresh proxy; requests/second with 8 concurrent keep-alive
clients, with the proxy's CPU time per request. `--diagnose` adds two variants of the
proxy (clauderon's audit log off; clauderon's addon replaced by a 10-line one doing only
the redirect and the key, same mitmproxy options) and a cProfile of the real proxy.

Targets: <= 3 ms added per request at the median; the first streamed byte <= 5 ms later
than direct. Progress goes to stderr; the markdown tables to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import queue
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import common
from common import Stats, cpu_seconds, free_port, log

KEY = "sk-bench"
PLACEHOLDER = "clauderon-proxy-placeholder"  # clauderon.models.CREDENTIAL_PLACEHOLDER
TOKEN = "tok"
MODEL_HOST = "api.anthropic.com"
BENCH_DOMAIN = "bench.example"  # h<i>.bench.example: a new host, so a new leaf certificate
SSE_EVENTS = 5  # the first at once, then one every SSE_GAP
SSE_GAP = 0.010
MAX_LIFE = 1800.0  # children exit on their own after this long, whatever happens
PACE = 0.010  # idle time before each request of the "paced" latency run
TARGET_ADDED = 0.003
TARGET_TTFB = 0.005

REQUEST_BODY = json.dumps(
    {
        "model": "claude-bench",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
    }
).encode()
STREAM_BODY = json.dumps({**json.loads(REQUEST_BODY), "stream": True}).encode()


# ======================================================================================
# The upstream (its own process): a fast HTTP/1.1 server, keep-alive, plain and TLS.
# ======================================================================================

RESPONSE_JSON = json.dumps(
    {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": "claude-bench",
        "content": [{"type": "text", "text": "Hello! How can I help you today?"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 14, "output_tokens": 10},
    }
).encode()


def _sse_event(i: int) -> bytes:
    if i == 0:
        name, data = "message_start", {"type": "message_start", "message": {"id": "msg_bench"}}
    else:
        name = "content_block_delta"
        data = {"type": name, "index": 0, "delta": {"type": "text_delta", "text": f"word{i} "}}
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def upstream_role(args: argparse.Namespace) -> None:
    counts = {"connections": 0, "requests": 0, "with_key": 0, "without_key": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counts["connections"] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                _method, target, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                if "content-length" in headers:
                    await reader.readexactly(int(headers["content-length"]))
                elif headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                        await reader.readexactly(size + 2)
                        if size == 0:
                            break
                counts["requests"] += 1
                key_ok = headers.get("x-api-key") == KEY
                counts["with_key" if key_ok else "without_key"] += 1
                mark = b"ok" if key_ok else b"missing"
                if urlsplit(target).path.startswith("/sse"):
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                        b"cache-control: no-cache\r\nx-bench-key: " + mark + b"\r\n"
                        b"transfer-encoding: chunked\r\n\r\n" + _chunk(_sse_event(0))
                    )
                    await writer.drain()
                    for i in range(1, SSE_EVENTS):
                        await asyncio.sleep(SSE_GAP)
                        writer.write(_chunk(_sse_event(i)))
                        await writer.drain()
                    writer.write(b"0\r\n\r\n")
                else:
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"x-bench-key: " + mark + b"\r\n"
                        b"content-length: %d\r\n\r\n" % len(RESPONSE_JSON) + RESPONSE_JSON
                    )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.certfile, args.keyfile)
        plain = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=256)
        secure = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls, backlog=256)
        stop = asyncio.Event()

        def command(line: str) -> None:
            if line == "stats":
                print("STATS " + json.dumps(counts), flush=True)
            elif line == "quit":
                stop.set()

        _stdin_commands(loop, command, stop)
        ports = (plain.sockets[0].getsockname()[1], secure.sockets[0].getsockname()[1])
        print(f"READY {ports[0]} {ports[1]}", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), MAX_LIFE)
        plain.close()
        secure.close()

    asyncio.run(main())


def _stdin_commands(
    loop: asyncio.AbstractEventLoop, command: Callable[[str], None], stop: asyncio.Event
) -> None:
    """Run each line of stdin as a command on the loop; EOF (the parent died) stops."""

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(command, line.strip())
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=read, daemon=True).start()


# ======================================================================================
# The proxy (its own process): clauderon's CredentialProxy, as the daemon runs it.
# ======================================================================================


class BenchSessions:
    """The session directory: one session, token `tok`, its container at 127.0.0.1.
    Mirrors the daemon's `ProxySessions` (clauderon.daemon.directory): a token lookup, a
    cached peer address, model calls in flight counted per session. The daemon's
    callbacks behind it (the manager's `_on_model_calls`, `report`) are not included."""

    def __init__(self) -> None:
        from clauderon.models import AccessMode, Egress
        from clauderon.proxy.policy import SessionPolicy

        self.policy = SessionPolicy(
            name="bench",
            session_id="x",
            token=TOKEN,
            egress=Egress.ALLOWLIST,
            access_mode=AccessMode.READ_WRITE,
        )

        self._addresses: dict[str, str] = {}
        self._model_calls: dict[str, int] = {}
        self.on_model_calls: Callable[[str], None] = lambda _: None

    def by_token(self, token: str) -> Any:
        return self.policy if token == self.policy.token else None

    async def verify_peer(self, policy: Any, address: str) -> bool:
        from clauderon.proxy.server import session_peer

        # The session's socket (the daemon's rule); 127.0.0.1 for the `tcp` comparison.
        return address in (session_peer(policy.name), "127.0.0.1")

    def report(self, policy: Any, agent: str, event: str, payload: dict[str, Any]) -> None:
        pass

    def model_calls(self, policy: Any, delta: int) -> None:
        count = max(0, self._model_calls.get(policy.name, 0) + delta)
        self._model_calls[policy.name] = count
        if count == (1 if delta > 0 else 0):
            self.on_model_calls(policy.name)


class BareAddon:
    """Diagnostic variant: in place of clauderon's SessionProxy, only what any such proxy
    must do (redirect to the upstream, set the key, stream); no attribution, policy
    checks or audit log. Same mitmproxy master, options and built-in addons."""

    def __init__(self, policy: Any, *_: Any) -> None:
        self.policy = policy

    def requestheaders(self, flow: Any) -> None:
        request = flow.request
        if request.method == "CONNECT":
            return
        request.headers.pop("proxy-authorization", None)
        request.headers["x-api-key"] = KEY
        upstream = self.policy.upstream_for(request.host)
        if upstream:
            target = urlsplit(upstream)
            request.scheme, request.host, request.port = target.scheme, target.hostname, target.port
        request.stream = True

    def responseheaders(self, flow: Any) -> None:
        flow.response.stream = True


def proxy_role(args: argparse.Namespace) -> None:
    import cProfile

    from clauderon.config import ProxyConfig
    from clauderon.proxy import server as server_module
    from clauderon.proxy.audit import AuditLog
    from clauderon.proxy.ca import ensure_ca
    from clauderon.proxy.credentials import CredentialStore

    async def main() -> None:
        home = Path(args.home)
        _cert, confdir = ensure_ca(home)
        config = ProxyConfig(
            port=args.port,
            allow=[f"*.{BENCH_DOMAIN}"],
            upstreams={MODEL_HOST: args.upstream, f"*.{BENCH_DOMAIN}": args.upstream},
        )
        credentials = CredentialStore(home / "secrets", [], environ={"ANTHROPIC_API_KEY": KEY})
        audit = AuditLog(home / f"audit-{args.label}.jsonl")
        if args.variant == "noaudit":
            audit.write = lambda entry: None  # type: ignore[method-assign]
        elif args.variant == "bare":
            server_module.SessionProxy = BareAddon  # type: ignore[misc,assignment]
        proxy = server_module.CredentialProxy(config, confdir, credentials, BenchSessions(), audit)
        forwarder = None
        if args.variant == "tcp":
            await proxy.start("127.0.0.1")
        else:  # as in a session: forwarder on loopback → the session's socket → the proxy
            await proxy.start()
            sock = await proxy.open_session("bench", home / f"sock-{args.label}")
            forwarder = subprocess.Popen([args.forwarder, "-f", str(args.port), str(sock)])
            for _ in range(500):
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", args.port), timeout=1),
                ):
                    break
                await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        profiler = cProfile.Profile()

        def command(line: str) -> None:
            nonlocal profiler
            verb, _, arg = line.partition(" ")
            if verb == "prof-start":
                profiler = cProfile.Profile()  # a fresh one: each profile stands alone
                profiler.enable()  # in the loop's thread: the thread that does the work
            elif verb == "prof-stop":
                profiler.disable()
                profiler.dump_stats(arg)
            elif verb == "quit":
                stop.set()
                return
            print("OK", flush=True)

        _stdin_commands(loop, command, stop)
        print("READY", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), MAX_LIFE)
        if forwarder is not None:
            forwarder.terminate()
            forwarder.wait(5)
        await proxy.stop()

    asyncio.run(main())


# ======================================================================================
# The client side (this process).
# ======================================================================================


class Child:
    """A role of this script in its own process, talked to by lines on stdin/stdout."""

    def __init__(self, name: str, role_args: list[str], workdir: Path):
        self.name = name
        self.stderr_path = workdir / f"{name}.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(Path(__file__).resolve()), *role_args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(left, 0.001))
            except queue.Empty:
                raise TimeoutError(f"{self.name}: no {prefix!r} within {timeout:.0f} s") from None
            if line is None:
                raise RuntimeError(f"{self.name} exited: {self.stderr_tail()}")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    def send(self, line: str, expect: str | None = "OK", timeout: float = 30.0) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.expect(expect, timeout) if expect else ""

    def stderr_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.send("quit", expect=None)
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._stderr.close()


def make_upstream_cert(workdir: Path) -> tuple[Path, Path]:
    """A self-signed RSA-2048 certificate for 127.0.0.1 (the same key type as mitmproxy's
    leaf certificates), so the `direct-tls` floor does the TLS work the proxied arm does."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench upstream")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = workdir / "upstream.pem", workdir / "upstream-key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


def ms(seconds: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1e3:.{digits}f}"


class Setup:
    """The running upstream and proxies, and how to reach them (the arms)."""

    def __init__(self, workdir: Path, quick: bool):
        import httpx

        self.httpx = httpx
        self.workdir = workdir
        self.quick = quick
        self.home = workdir / "home"
        from clauderon.proxy.ca import ensure_ca

        self.ca_cert, _ = ensure_ca(self.home)
        certfile, keyfile = make_upstream_cert(workdir)
        self.proxy_tls = ssl.create_default_context(cafile=str(self.ca_cert))
        self.direct_tls = ssl.create_default_context(cafile=str(certfile))
        self.children: list[Child] = []
        self.upstream = self._child(
            "upstream",
            ["--role", "upstream", "--certfile", str(certfile), "--keyfile", str(keyfile)],
        )
        try:
            port, tls_port = map(int, self.upstream.expect("READY", 30).split())
        except BaseException:
            self.close()
            raise
        self.upstream_url = f"http://127.0.0.1:{port}"
        self.upstream_tls_url = f"https://127.0.0.1:{tls_port}"
        self.proxies: dict[str, tuple[Child, int, float]] = {}
        from clauderon.forwarder import ensure_forwarder

        self.forwarder = ensure_forwarder(workdir / "bin")
        self.sent: dict[str, int] = {}  # requests sent, by proxy URL (httpx event hooks)

    def _child(self, name: str, role_args: list[str]) -> Child:
        child = Child(name, role_args, self.workdir)
        self.children.append(child)
        return child

    def start_proxy(self, variant: str, label: str | None = None) -> float:
        """Start a proxy process; return the seconds until it listened. `label` names it
        (and its audit log: audit-<label>.jsonl); it defaults to the variant."""
        label = label or variant
        port = free_port()
        child = self._child(
            f"proxy-{label}",
            [
                "--role",
                "proxy",
                "--home",
                str(self.home),
                "--port",
                str(port),
                "--upstream",
                self.upstream_url,
                "--variant",
                variant,
                "--label",
                label,
                "--forwarder",
                str(self.forwarder),
            ],
        )
        child.expect("READY", 60)
        elapsed = time.perf_counter() - child.started
        self.proxies[label] = (child, port, elapsed)
        return elapsed

    def stop_proxy(self, label: str) -> list[str]:
        """Stop a proxy; return the problems its stderr shows (addon errors...)."""
        child = self.proxies.pop(label)[0]
        child.close()
        self.children.remove(child)
        return proxy_problems(child)

    def proxy_url(self, variant: str = "full") -> str:
        return f"http://clauderon:{TOKEN}@127.0.0.1:{self.proxies[variant][1]}"

    # An arm: (url, headers, client keyword arguments).
    def arm(self, name: str, path: str = "/v1/messages", host: str = MODEL_HOST) -> tuple:
        direct_headers = {"x-api-key": KEY, "content-type": "application/json"}
        proxied_headers = {"x-api-key": PLACEHOLDER, "content-type": "application/json"}
        if name == "direct":
            return self.upstream_url + path, direct_headers, {}
        if name == "direct-tls":
            return self.upstream_tls_url + path, direct_headers, {"verify": self.direct_tls}
        name, _, variant = name.partition(":")  # proxy-https:bare, proxy-http:noaudit ...
        scheme = {"proxy-https": "https", "proxy-http": "http"}[name]
        return (
            f"{scheme}://{host}{path}",
            proxied_headers,
            {"proxy": self.proxy_url(variant or "full"), "verify": self.proxy_tls},
        )

    def _count(self, kwargs: dict[str, Any]) -> None:
        proxy = kwargs.get("proxy")
        if proxy:
            self.sent[proxy] = self.sent.get(proxy, 0) + 1

    def client(self, kwargs: dict[str, Any]) -> Any:
        hooks = {"request": [lambda _request: self._count(kwargs)]}
        return self.httpx.Client(timeout=10, trust_env=False, event_hooks=hooks, **kwargs)

    def async_client(self, kwargs: dict[str, Any]) -> Any:
        async def count(_request: Any) -> None:
            self._count(kwargs)

        limits = self.httpx.Limits(max_connections=1, max_keepalive_connections=1)
        return self.httpx.AsyncClient(
            timeout=10, trust_env=False, limits=limits, event_hooks={"request": [count]}, **kwargs
        )

    def check_proxy(self, label: str, audited: bool = True) -> list[str]:
        """Problems of a running proxy: errors on its stderr; an audit log that does not
        have one line per request sent through it."""
        problems = proxy_problems(self.proxies[label][0])
        if not audited:
            return problems
        sent = self.sent.get(self.proxy_url(label), 0)
        audit = self.home / f"audit-{label}.jsonl"
        deadline = time.monotonic() + 3  # the entry is written after the response went out
        while True:
            lines = len(audit.read_text().splitlines()) if audit.exists() else 0
            if lines == sent or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if lines != sent:
            problems.append(f"proxy {label}: {sent} requests sent, {lines} audit lines")
        return problems

    def upstream_counts(self) -> dict[str, int]:
        return json.loads(self.upstream.send("stats", expect="STATS"))

    def close(self) -> None:
        for child in reversed(self.children):
            with contextlib.suppress(Exception):
                child.close()


def proxy_problems(child: Child) -> list[str]:
    try:
        text = child.stderr_path.read_text(errors="replace")
    except OSError:
        return []
    bad = [
        line
        for line in text.splitlines()
        if "Traceback" in line or "error" in line.lower() or "exception" in line.lower()
    ]
    if not bad:
        return []
    return [f"{child.name}: {len(bad)} error lines on stderr, e.g. {bad[0][:200]!r}"]


def timed_post(client: Any, url: str, headers: dict[str, str], key: str = "ok") -> float:
    """One request; checks the answer and that the upstream got the key (`key`)."""
    start = time.perf_counter()
    response = client.post(url, content=REQUEST_BODY, headers=headers)
    elapsed = time.perf_counter() - start
    if response.status_code != 200 or response.headers.get("x-bench-key") != key:
        raise RuntimeError(
            f"{url}: {response.status_code} key={response.headers.get('x-bench-key')} "
            f"{response.text[:200]!r}"
        )
    return elapsed


def timed_stream(client: Any, url: str, headers: dict[str, str]) -> tuple[float, float, float]:
    """(time to the response headers, to the first body byte, to the end of the stream)."""
    start = time.perf_counter()
    with client.stream("POST", url, content=STREAM_BODY, headers=headers) as response:
        t_headers = time.perf_counter() - start
        chunks = response.iter_raw()
        first = next(chunks, b"")
        t_first = time.perf_counter() - start
        received = len(first) + sum(len(c) for c in chunks)
        t_end = time.perf_counter() - start
    if response.status_code != 200 or response.headers.get("x-bench-key") != "ok":
        raise RuntimeError(f"{url}: stream answered {response.status_code}")
    if not first.startswith(b"event: message_start") or received < SSE_EVENTS * 50:
        raise RuntimeError(f"{url}: unexpected stream ({received} bytes, first {first[:40]!r})")
    return t_headers, t_first, t_end


def rotated(arms: Sequence[str], round_: int) -> list[str]:
    k = round_ % len(arms)
    return [*arms[k:], *arms[:k]]


def measure_latency(
    setup: Setup, arms: Sequence[str], rounds: int, warmup: int = 20, pause: float = 0.0
) -> dict[str, list[float]]:
    """Sequential requests, each arm on its own warm keep-alive connection, interleaved;
    with `pause`, every process sits idle that long before each request (as between an
    agent's calls), so each request also pays the wake-ups of idle processes."""
    clients, samples = {}, {a: [] for a in arms}
    try:
        for name in arms:
            url, headers, kwargs = setup.arm(name)
            clients[name] = (setup.client(kwargs), url, headers)
            for _ in range(warmup):
                timed_post(*clients[name])
        for r in range(rounds):
            for name in rotated(arms, r):
                if pause:
                    time.sleep(pause)
                samples[name].append(timed_post(*clients[name]))
    finally:
        for client, _, _ in clients.values():
            client.close()
    return samples


def with_proxy_cpu(setup: Setup, run: Callable[[], Any]) -> tuple[Any, float]:
    """run(); and the real proxy's CPU seconds per request it handled meanwhile."""
    pid, url = setup.proxies["full"][0].pid, setup.proxy_url("full")
    cpu0, sent0 = cpu_seconds(pid), setup.sent.get(url, 0)
    result = run()
    cpu1, sent1 = cpu_seconds(pid), setup.sent.get(url, 0)
    return result, (cpu1 - cpu0) / max(sent1 - sent0, 1)


def measure_streams(
    setup: Setup, arms: Sequence[str], rounds: int, warmup: int = 3
) -> dict[str, dict[str, list[float]]]:
    clients, samples = {}, {a: {"headers": [], "first": [], "end": []} for a in arms}
    try:
        for name in arms:
            url, headers, kwargs = setup.arm(name, path="/sse")
            clients[name] = (setup.client(kwargs), url, headers)
            for _ in range(warmup):
                timed_stream(*clients[name])
        for r in range(rounds):
            for name in rotated(arms, r):
                t_headers, t_first, t_end = timed_stream(*clients[name])
                samples[name]["headers"].append(t_headers)
                samples[name]["first"].append(t_first)
                samples[name]["end"].append(t_end)
    finally:
        for client, _, _ in clients.values():
            client.close()
    return samples


def measure_new_connections(setup: Setup, rounds: int) -> dict[str, list[float]]:
    """One request on a brand-new connection (client built outside the timing).
    `proxy-https-new-host` goes to h<i>.bench.example, a host the proxy has not seen,
    so mitmproxy mints a leaf certificate for it; `proxy-https` reuses api.anthropic.com's."""
    arms = ["direct", "direct-tls", "proxy-https", "proxy-https-new-host"]
    samples: dict[str, list[float]] = {a: [] for a in arms}
    counter = 0
    for r in range(rounds):
        for name in rotated(arms, r):
            key = "ok"
            if name == "proxy-https-new-host":
                counter += 1
                url, headers, kwargs = setup.arm("proxy-https", host=f"h{counter}.{BENCH_DOMAIN}")
                key = "missing"  # clauderon has no credential rule for these hosts
            else:
                url, headers, kwargs = setup.arm(name)
            with setup.client(kwargs) as client:
                samples[name].append(timed_post(client, url, headers, key))
    return samples


def measure_throughput(
    setup: Setup, arms: Sequence[str], rounds: int, seconds: float, concurrency: int
) -> dict[str, list[dict[str, float]]]:
    """`concurrency` keep-alive clients, each sending requests back to back for
    `seconds`; per window: requests/s, latency median, CPU seconds per request of the
    proxy, the upstream and this client process."""
    upstream_pid = setup.upstream.pid

    async def window(name: str) -> dict[str, float]:
        url, headers, kwargs = setup.arm(name)
        clients = [setup.async_client(kwargs) for _ in range(concurrency)]
        latencies: list[float] = []
        errors = 0

        async def worker(client: Any, deadline: float) -> int:
            nonlocal errors
            done = 0
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    response = await client.post(url, content=REQUEST_BODY, headers=headers)
                    ok = response.status_code == 200
                except Exception:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - start)
                    done += 1
                else:
                    errors += 1
            return done

        try:
            for client in clients:  # open the connections first: steady state only
                await client.post(url, content=REQUEST_BODY, headers=headers)
            proxy_pid = setup.proxies[name.partition(":")[2] or "full"][0].pid
            cpu0 = (cpu_seconds(proxy_pid), cpu_seconds(upstream_pid), time.process_time())
            start = time.perf_counter()
            deadline = start + seconds
            done = await asyncio.gather(*(worker(c, deadline) for c in clients))
            wall = time.perf_counter() - start
            cpu1 = (cpu_seconds(proxy_pid), cpu_seconds(upstream_pid), time.process_time())
        finally:
            for client in clients:
                await client.aclose()
        total = sum(done)
        return {
            "rps": total / wall,
            "requests": total,
            "errors": errors,
            "latency_median": statistics.median(latencies) if latencies else float("nan"),
            "proxy_cpu_per_req": (cpu1[0] - cpu0[0]) / max(total, 1),
            "upstream_cpu_per_req": (cpu1[1] - cpu0[1]) / max(total, 1),
            "client_cpu_per_req": (cpu1[2] - cpu0[2]) / max(total, 1),
        }

    results: dict[str, list[dict[str, float]]] = {a: [] for a in arms}
    for r in range(rounds):
        for name in rotated(arms, r):
            results[name].append(asyncio.run(window(name)))
            last = results[name][-1]
            log(f"  throughput {name:12s} {last['rps']:7.0f} req/s (errors {last['errors']:.0f})")
    return results


def first_request(setup: Setup, label: str = "full") -> float:
    """The very first request through a fresh proxy: CONNECT, TLS handshake with a leaf
    certificate minted for api.anthropic.com, attribution, the upstream connection."""
    url, headers, kwargs = setup.arm(f"proxy-https:{label}")
    with setup.client(kwargs) as client:
        return timed_post(client, url, headers)


def profile_first_request(setup: Setup, label: str) -> list[dict[str, Any]]:
    """cProfile a fresh proxy's first request: the functions with most cumulative time."""
    import pstats

    child = setup.proxies[label][0]
    path = setup.workdir / f"{label}.prof"
    child.send("prof-start")
    elapsed = first_request(setup, label)
    child.send(f"prof-stop {path}")
    stats = pstats.Stats(str(path))
    rows = []
    # The work itself, not the event loop and mitmproxy's layer dispatch around it.
    wanted = ("mitmproxy/addons/", "clauderon/", "mitmproxy/certs", "OpenSSL/", "cryptography/")
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in sorted(
        stats.stats.items(),  # type: ignore[attr-defined]
        key=lambda kv: kv[1][3],
        reverse=True,
    ):
        if not any(w in filename for w in wanted) or len(rows) >= 25:
            continue
        short = filename.split("site-packages/")[-1].split("src/")[-1].split("python3.11/")[-1]
        rows.append(
            {"function": f"{short}:{line}({func})", "calls": nc, "tottime": tt, "cumtime": ct}
        )
    return [{"wall": elapsed}, *rows]


def profile_proxy(setup: Setup, requests: int) -> dict[str, Any]:
    """cProfile the real proxy while one keep-alive client sends `requests` sequential
    requests over HTTPS; return the per-request breakdown."""
    import pstats

    child = setup.proxies["full"][0]
    path = setup.workdir / "proxy.prof"
    url, headers, kwargs = setup.arm("proxy-https")
    with setup.client(kwargs) as client:
        for _ in range(20):
            timed_post(client, url, headers)
        child.send("prof-start")
        start = time.perf_counter()
        for _ in range(requests):
            timed_post(client, url, headers)
        wall_requests = time.perf_counter() - start
        child.send(f"prof-stop {path}")
    stats = pstats.Stats(str(path))
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    idle = sum(
        v[2]
        for k, v in stats.stats.items()  # type: ignore[attr-defined]
        if k[0] == "~" and "poll" in k[2]
    )

    def bucket(filename: str, func: str) -> str:
        if "clauderon/proxy/audit" in filename:
            return "clauderon audit log (json + file append)"
        if "clauderon/" in filename:
            return "clauderon (addon, policy, credentials)"
        if "/mitmproxy/proxy/layers/http" in filename:
            return "mitmproxy HTTP layer (h11-like parsing, events)"
        if "/mitmproxy/proxy/layers/tls" in filename or "/OpenSSL/" in filename:
            return "TLS (mitmproxy tls layer + pyOpenSSL)"
        if "/mitmproxy/proxy/" in filename:
            return "mitmproxy proxy core (server, layers, commands)"
        if "/mitmproxy/addonmanager" in filename or "/mitmproxy/hooks" in filename:
            return "mitmproxy addon dispatch"
        if "/mitmproxy/" in filename:
            return "mitmproxy other (flow, http model, addons)"
        if "/asyncio/" in filename or "selectors" in filename:
            return "asyncio event loop"
        if filename == "~":
            if "ssl" in func.lower() or "SSL" in func or "_lib" in func:
                return "TLS (mitmproxy tls layer + pyOpenSSL)"
            if "poll" in func:
                return "(idle: waiting in epoll)"
            if any(w in func for w in ("recv", "send")):
                return "socket send/recv"
            return "builtins (other)"
        if "/json/" in filename:
            return "clauderon audit log (json + file append)"
        return "other Python (stdlib, dataclasses, logging, ...)"

    buckets: dict[str, float] = {}
    for (filename, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        key = bucket(filename, func)
        buckets[key] = buckets.get(key, 0.0) + tt
    top = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in sorted(
        stats.stats.items(),  # type: ignore[attr-defined]
        key=lambda kv: kv[1][2],
        reverse=True,
    )[:25]:
        short = filename.split("site-packages/")[-1].split("src/")[-1]
        top.append(
            {"function": f"{short}:{line}({func})", "calls": nc, "tottime": tt, "cumtime": ct}
        )
    hooks = {}
    for (filename, _line, func), (_cc, nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "clauderon/" in filename:
            hooks[f"{filename.split('clauderon/')[-1]}:{func}"] = (nc, ct)
    text_path = setup.workdir / "proxy-profile.txt"
    with text_path.open("w") as out:
        ps = pstats.Stats(str(path), stream=out)
        ps.sort_stats("cumulative").print_stats(60)
        ps.sort_stats("tottime").print_stats(40)
    keep = Path(tempfile.gettempdir()) / "bench_proxy_profile.txt"
    shutil.copy(text_path, keep)
    shutil.copy(path, keep.with_suffix(".prof"))  # for pstats: callers, callees
    return {
        "requests": requests,
        "wall_per_request": wall_requests / requests,
        "profiled_busy_per_request": (total - idle) / requests,
        "buckets": {k: v / requests for k, v in sorted(buckets.items(), key=lambda kv: -kv[1])},
        "top": top,
        "clauderon_functions": {
            k: {"calls": nc, "cum_per_request": ct / requests}
            for k, (nc, ct) in sorted(hooks.items(), key=lambda kv: -kv[1][1])[:15]
        },
        "text": f"{keep} and {keep.with_suffix('.prof')}",
    }


# ======================================================================================
# main
# ======================================================================================


def machine() -> dict[str, str]:
    """The machine facts every benchmark reports, and the proxy's own versions and load."""
    from importlib.metadata import version

    facts = common.machine_facts()
    facts.update(
        mitmproxy=version("mitmproxy"),
        httpx=version("httpx"),
        loadavg=" ".join(Path("/proc/loadavg").read_text().split()[:3]),
    )
    return facts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (~20 s)")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="also measure proxy variants (no audit log; a bare addon) and cProfile the proxy",
    )
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--concurrency", type=int, default=8)
    # The roles of the child processes (internal).
    parser.add_argument("--role", choices=["upstream", "proxy"], help=argparse.SUPPRESS)
    parser.add_argument("--certfile", help=argparse.SUPPRESS)
    parser.add_argument("--keyfile", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="full", help=argparse.SUPPRESS)
    parser.add_argument("--label", default="full", help=argparse.SUPPRESS)
    parser.add_argument("--forwarder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "upstream":
        upstream_role(args)
        return 0
    if args.role == "proxy":
        proxy_role(args)
        return 0

    quick = args.quick
    plan = {
        "latency_rounds": 150 if quick else 1000,
        "paced_rounds": 30 if quick else 250,
        "stream_rounds": 15 if quick else 80,
        "newconn_rounds": 8 if quick else 40,
        "tput_rounds": 1 if quick else 4,
        "tput_seconds": 1.5 if quick else 5.0,
        "variant_rounds": 150 if quick else 800,
        "profile_requests": 200 if quick else 1000,
        "fresh": 2 if quick else 6,
    }
    facts = machine()
    log(
        f"machine: {facts['cpus']} CPUs ({facts['cpu_model']}), load {facts['loadavg']}, "
        f"Python {facts['python']}, mitmproxy {facts['mitmproxy']}, httpx {facts['httpx']}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="crbench-proxy-"))
    setup: Setup | None = None
    results: dict[str, Any] = {"machine": facts, "plan": plan}
    problems: list[str] = []
    try:
        setup = Setup(workdir, quick)
        log(f"upstream {setup.upstream_url} / {setup.upstream_tls_url}; starting the proxy")
        results["proxy_start_s"] = [setup.start_proxy("full")]
        setup.start_proxy("tcp")
        results["first_request"] = [first_request(setup)]
        log(f"first request through the fresh proxy: {results['first_request'][0] * 1e3:.1f} ms")

        arms = ["direct", "direct-tls", "proxy-https", "proxy-http", "proxy-https:tcp"]
        log(f"latency: {plan['latency_rounds']} rounds x {arms}")
        results["latency"], results["latency_proxy_cpu"] = with_proxy_cpu(
            setup, lambda: measure_latency(setup, arms, plan["latency_rounds"])
        )
        log(f"paced latency: {plan['paced_rounds']} rounds, {PACE * 1e3:.0f} ms idle before each")
        results["paced"], results["paced_proxy_cpu"] = with_proxy_cpu(
            setup, lambda: measure_latency(setup, arms, plan["paced_rounds"], pause=PACE)
        )
        log(f"streams: {plan['stream_rounds']} rounds")
        results["streams"] = measure_streams(setup, arms, plan["stream_rounds"])
        log(f"new connections: {plan['newconn_rounds']} rounds")
        results["new_connections"] = measure_new_connections(setup, plan["newconn_rounds"])
        log(
            f"throughput: {plan['tput_rounds']} rounds x {plan['tput_seconds']} s, "
            f"{args.concurrency} clients"
        )
        results["throughput"] = measure_throughput(
            setup, arms, plan["tput_rounds"], plan["tput_seconds"], args.concurrency
        )
        log(f"first requests through {plan['fresh']} more fresh proxies")
        for i in range(plan["fresh"]):
            label = f"fresh{i}"
            results["proxy_start_s"].append(setup.start_proxy("full", label))
            results["first_request"].append(first_request(setup, label))
            problems += setup.check_proxy(label)
            problems += setup.stop_proxy(label)
        if args.diagnose:
            setup.start_proxy("full", "fresh-profiled")
            results["first_request_profile"] = profile_first_request(setup, "fresh-profiled")
            problems += setup.check_proxy("fresh-profiled")
            problems += setup.stop_proxy("fresh-profiled")
            for variant in ("noaudit", "bare"):
                setup.start_proxy(variant)
            varms = ["direct", "proxy-https", "proxy-https:noaudit", "proxy-https:bare"]
            log(f"variants: {plan['variant_rounds']} rounds x {varms}")
            results["variants"] = measure_latency(setup, varms, plan["variant_rounds"])
            varms_http = ["direct", "proxy-http", "proxy-http:noaudit", "proxy-http:bare"]
            results["variants_http"] = measure_latency(setup, varms_http, plan["variant_rounds"])
            log(f"profiling the proxy over {plan['profile_requests']} requests")
            results["profile"] = profile_proxy(setup, plan["profile_requests"])
        results["upstream_counts"] = setup.upstream_counts()
        problems += setup.check_proxy("full")
        for variant in ("noaudit", "bare", "tcp"):
            if variant in setup.proxies:
                problems += setup.check_proxy(variant, audited=False)
        audit_path = setup.home / "audit-full.jsonl"
        results["audit_lines"] = len(audit_path.read_text().splitlines())
        results["audit_sample"] = audit_path.read_text().splitlines()[-1]
    finally:
        if setup is not None:
            setup.close()
        shutil.rmtree(workdir, ignore_errors=True)
    results["machine"]["loadavg_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    results["problems"] = problems
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    print(report(results, args.concurrency))
    for problem in problems:
        log(f"CHECK FAILED: {problem}")
    return 1 if problems else 0


def report(results: dict[str, Any], concurrency: int) -> str:
    lines: list[str] = []
    add = lines.append
    lat = {k: Stats.of(v) for k, v in results["latency"].items()}
    direct = lat["direct"].median
    paired = {
        k: statistics.median(p - d for p, d in zip(v, results["latency"]["direct"], strict=True))
        for k, v in results["latency"].items()
    }
    add(
        "### Per request (POST /v1/messages, warm keep-alive connection, sequential, back to "
        f"back; the proxy's CPU: {ms(results['latency_proxy_cpu'])} ms per request)"
    )
    add("")
    add(
        "| arm | median ms | p90 ms | min ms | n | added vs `direct` (median) ms | "
        "paired median diff ms |"
    )
    add("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, s in lat.items():
        add(
            f"| `{name}` | {ms(s.median)} | {ms(s.p90)} | {ms(s.min)} | {s.n} | "
            f"{ms(s.median - direct) if name != 'direct' else '—'} | "
            f"{ms(paired[name]) if name != 'direct' else '—'} |"
        )
    add("")
    paced = {k: Stats.of(v) for k, v in results["paced"].items()}
    add(
        f"### Per request, paced ({PACE * 1e3:.0f} ms idle before each request, as between "
        "an agent's calls: every process is woken from idle; the proxy's CPU: "
        f"{ms(results['paced_proxy_cpu'])} ms per request)"
    )
    add("")
    add("| arm | median ms | p90 ms | n | added vs `direct` (median) ms |")
    add("| --- | ---: | ---: | ---: | ---: |")
    for name, s in paced.items():
        added_ms = ms(s.median - paced["direct"].median) if name != "direct" else "—"
        add(f"| `{name}` | {ms(s.median)} | {ms(s.p90)} | {s.n} | {added_ms} |")
    add("")
    streams = results["streams"]
    ttfb = {k: Stats.of(v["first"]) for k, v in streams.items()}
    add(
        f"### Streamed response (POST /sse: {SSE_EVENTS} SSE events, the first at once, "
        f"then one every {SSE_GAP * 1e3:.0f} ms)"
    )
    add("")
    add(
        "| arm | headers median ms | first byte median ms | first byte p90 ms | "
        "added to first byte ms | whole stream median ms | n |"
    )
    add("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, v in streams.items():
        h, f, e = Stats.of(v["headers"]), ttfb[name], Stats.of(v["end"])
        added = ms(f.median - ttfb["direct"].median) if name != "direct" else "—"
        add(
            f"| `{name}` | {ms(h.median)} | {ms(f.median)} | {ms(f.p90)} | {added} | "
            f"{ms(e.median)} | {f.n} |"
        )
    add("")
    add("### New connections (one request on a fresh connection; client set-up not timed)")
    add("")
    add("| arm | median ms | p90 ms | max ms | n |")
    add("| --- | ---: | ---: | ---: | ---: |")
    first = Stats.of(results["first_request"])
    add(
        f"| very first request through a fresh proxy (CONNECT + TLS + leaf minted + upstream "
        f"connect; one per proxy start) | {ms(first.median)} | {ms(first.p90)} | "
        f"{ms(first.max)} | {first.n} |"
    )
    labels = {
        "direct": "`direct` (TCP connect)",
        "direct-tls": "`direct-tls` (TCP + TLS handshake, RSA-2048)",
        "proxy-https": "`proxy-https`, leaf cached (CONNECT + TLS + upstream connect)",
        "proxy-https-new-host": "`proxy-https`, new host: leaf certificate minted",
    }
    for name, v in results["new_connections"].items():
        s = Stats.of(v)
        add(f"| {labels[name]} | {ms(s.median)} | {ms(s.p90)} | {ms(s.max)} | {s.n} |")
    add("")
    add(
        f"### Throughput ({concurrency} concurrent keep-alive clients, "
        f"{results['plan']['tput_seconds']:.0f} s windows, {results['plan']['tput_rounds']} "
        "interleaved rounds; all three processes share the 2 cores)"
    )
    add("")
    add(
        "| arm | req/s (median of rounds) | req/s best round | rounds | latency median ms | "
        "proxy CPU ms/req | upstream CPU ms/req | client CPU ms/req | errors |"
    )
    add("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, windows in results["throughput"].items():

        def med(key: str, windows: list[dict[str, float]] = windows) -> float:
            return statistics.median(w[key] for w in windows)

        rounds = ", ".join(f"{w['rps']:.0f}" for w in windows)
        proxy_cpu = ms(med("proxy_cpu_per_req")) if name.startswith("proxy") else "—"
        add(
            f"| `{name}` | {med('rps'):.0f} | {max(w['rps'] for w in windows):.0f} | {rounds} | "
            f"{ms(med('latency_median'))} | "
            f"{proxy_cpu} | {ms(med('upstream_cpu_per_req'))} | {ms(med('client_cpu_per_req'))} | "
            f"{sum(w['errors'] for w in windows):.0f} |"
        )
    add("")
    added = lat["proxy-https"].median - direct
    ttfb_added = ttfb["proxy-https"].median - ttfb["direct"].median
    add("### Targets (the agent's path, `proxy-https`, against `direct`)")
    add("")
    add("| target | measured | met? |")
    add("| --- | --- | --- |")
    add(
        f"| ≤ {TARGET_ADDED * 1e3:.0f} ms added per request (median) | {ms(added)} ms "
        f"(paired {ms(paired['proxy-https'])} ms; paced "
        f"{ms(paced['proxy-https'].median - paced['direct'].median)} ms; plain-http through "
        f"the proxy {ms(lat['proxy-http'].median - direct)} ms) | "
        f"{'**yes**' if added <= TARGET_ADDED else '**no**'} |"
    )
    add(
        f"| first streamed byte ≤ {TARGET_TTFB * 1e3:.0f} ms later than direct | "
        f"{ms(ttfb_added)} ms | {'**yes**' if ttfb_added <= TARGET_TTFB else '**no**'} |"
    )
    for key, title in (("variants", "HTTPS"), ("variants_http", "plain HTTP")):
        if key not in results:
            continue
        var = {k: Stats.of(v) for k, v in results[key].items()}
        vd = var["direct"].median
        add("")
        add(f"### Diagnosis: proxy variants, {title} (interleaved, warm keep-alive)")
        add("")
        add("| arm | median ms | p90 ms | added vs direct ms | n |")
        add("| --- | ---: | ---: | ---: | ---: |")
        for name, s in var.items():
            add(
                f"| `{name}` | {ms(s.median)} | {ms(s.p90)} | "
                f"{ms(s.median - vd) if name != 'direct' else '—'} | {s.n} |"
            )
    if "profile" in results:
        prof = results["profile"]
        add("")
        add(
            f"### Diagnosis: cProfile of the proxy process, {prof['requests']} sequential "
            f"HTTPS requests (wall {ms(prof['wall_per_request'])} ms/request under the "
            f"profiler, of which the proxy was busy {ms(prof['profiled_busy_per_request'])} ms)"
        )
        add("")
        add("| where (own time) | µs per request | share |")
        add("| --- | ---: | ---: |")
        busy = sum(v for k, v in prof["buckets"].items() if not k.startswith("(idle"))
        for name, value in prof["buckets"].items():
            share = "—" if name.startswith("(idle") else f"{value / busy:.0%}"
            add(f"| {name} | {value * 1e6:.0f} | {share} |")
        add("")
        add("| clauderon function (cumulative) | calls | µs per request |")
        add("| --- | ---: | ---: |")
        for name, value in prof["clauderon_functions"].items():
            add(f"| `{name}` | {value['calls']} | {value['cum_per_request'] * 1e6:.0f} |")
        add("")
        add("| top functions by own time | calls | own µs/request | cumulative µs/request |")
        add("| --- | ---: | ---: | ---: |")
        for row in prof["top"][:15]:
            add(
                f"| `{row['function']}` | {row['calls']} | "
                f"{row['tottime'] / prof['requests'] * 1e6:.0f} | "
                f"{row['cumtime'] / prof['requests'] * 1e6:.0f} |"
            )
        add("")
        add(f"(full profile text: {prof['text']})")
    counts = results["upstream_counts"]
    add("")
    facts = results["machine"]
    add(
        f"Checks: the upstream saw {counts['requests']} requests on {counts['connections']} "
        f"connections, {counts['with_key']} with the injected key, {counts['without_key']} "
        f"without; the real proxy's audit log has {results['audit_lines']} lines "
        f"(last: `{results['audit_sample']}`). Proxy start-up: "
        f"{statistics.median(results['proxy_start_s']):.2f} s (median). Load average "
        f"{facts['loadavg']} at the start, "
        f"{facts['loadavg_end']} at the end; {facts['date']}, nproc {facts['cpus']}, "
        f"Python {facts['python']}, mitmproxy {facts['mitmproxy']}, httpx {facts['httpx']}."
    )
    if "first_request_profile" in results:
        wall, *rows = results["first_request_profile"]
        add("")
        add(
            f"### Diagnosis: cProfile of a fresh proxy's first request "
            f"({ms(wall['wall'])} ms wall under the profiler): the addons' and TLS work"
        )
        add("")
        add("| function (by cumulative time) | calls | cumulative ms | own ms |")
        add("| --- | ---: | ---: | ---: |")
        for row in rows[:25]:
            add(
                f"| `{row['function']}` | {row['calls']} | {ms(row['cumtime'])} | "
                f"{ms(row['tottime'])} |"
            )
    for problem in results["problems"]:
        add(f"\n**CHECK FAILED**: {problem}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
