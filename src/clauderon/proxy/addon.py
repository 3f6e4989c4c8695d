"""The mitmproxy addon: attribute, decide, inject, audit.

Every connection is attributed to a session by its proxy credential (`Proxy-Authorization`,
from the proxy URL the container was given) *and* the session's own Unix socket it came in
on (its peer address, set by proxy/server.py); anything else is refused. Credentials are
chosen by the real destination of the connection, never by a header the agent writes.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import itertools
import json
import logging
import re
import socket
import time
from typing import Any, Protocol
from urllib.parse import urlsplit

from mitmproxy import connection, http
from mitmproxy.proxy import server_hooks

from .audit import AuditLog
from .credentials import CredentialStore, PostJSON
from .githubscope import MAX_BODY as GITHUB_MAX_BODY
from .githubscope import is_github_api, needs_body
from .githubscope import message as github_message
from .githubscope import refusal as github_refusal
from .policy import (
    CREDENTIAL_HEADERS,
    WEB_PORTS,
    Policy,
    SecretScrubber,
    SessionPolicy,
    access_allows,
    address_forbidden,
    authority_matches,
    carries_placeholder,
    denial_text,
    is_model_call,
    normalise_path,
    secret_forms,
)
from .pushscope import (
    RESULT_TYPE,
    PushCommands,
    PushGate,
    is_receive_pack,
    refusals,
    report,
)

log = logging.getLogger(__name__)
PROXY_USER = "clauderon"
META = "clauderon"


HOOK_HOST = "clauderon.internal"  # agents report their status here; never forwarded
HOOK_PATH = re.compile(r"/v1/agent-events/([a-z]+)/([A-Za-z_-]+)")
HOOK_BODY_LIMIT = 1024 * 1024  # a report is a hook's JSON; anything larger is not one
HOOK_FLOWS_PER_SESSION = 4  # reports buffered at once per session: memory stays bounded
LOCAL_ADDRESSES_TTL = 2.0


def read_local_addresses() -> frozenset[str]:
    """This machine's own addresses (every interface, the Docker gateways included), from
    the kernel's tables: the proxy never connects to them for a session."""
    found: set[str] = set()
    try:
        lines = open("/proc/net/fib_trie").read().splitlines()  # noqa: SIM115 - procfs
    except OSError:
        lines = []
    for previous, line in itertools.pairwise(lines):
        if line.strip().endswith("host LOCAL"):
            found.add(previous.strip().removeprefix("|-- ").strip())
    try:
        with open("/proc/net/if_inet6") as handle:
            for row in handle:
                raw = row.split()[0]
                found.add(str(ipaddress.IPv6Address(int(raw, 16))))
    except (OSError, ValueError, IndexError):
        pass
    return frozenset(found)


class SessionDirectory(Protocol):
    """How the proxy learns which session a connection belongs to (the manager)."""

    def by_token(self, token: str) -> SessionPolicy | None: ...

    async def verify_peer(self, policy: SessionPolicy, address: str) -> bool: ...

    def report(
        self, policy: SessionPolicy, agent: str, event: str, payload: dict[str, Any]
    ) -> None: ...

    def model_calls(self, policy: SessionPolicy, delta: int) -> None: ...

    def model_result(self, policy: SessionPolicy, error: str | None) -> None:
        """A model call's outcome: why it failed, or None once one succeeds."""


def proxy_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except ValueError:
        return None
    return password if user == PROXY_USER and password else None


def _deny(status: int, reason: str, text: str, **headers: str) -> http.Response:
    return http.Response.make(
        status,
        text.encode(),
        {"content-type": "text/plain; charset=utf-8", "x-clauderon-denied": reason, **headers},
    )


class SessionProxy:
    def __init__(
        self,
        policy: Policy,
        credentials: CredentialStore,
        directory: SessionDirectory,
        audit: AuditLog,
        post: PostJSON,
    ):
        self.policy = policy
        self.credentials = credentials
        self.directory = directory
        self.audit = audit
        self.post = post
        self._attributed: dict[str, SessionPolicy] = {}
        self._hook_flows: dict[str, int] = {}
        self._local: tuple[float, frozenset[str]] = (0.0, frozenset())
        self._restore_address: dict[str, tuple[str, int]] = {}
        self._forms: tuple[tuple[str, ...], list[bytes]] = ((), [])
        self._upstream_targets = policy.upstream_targets()
        # CONNECT targets by client connection: a refused one is accepted all the same
        # (its requests are answered inside TLS) but never connected upstream.
        self._connect_targets: dict[str, tuple[str, int]] = {}

    # --- attribution ----------------------------------------------------------------

    async def _attribute(self, flow: http.HTTPFlow) -> SessionPolicy | None:
        conn = flow.client_conn
        known = self._attributed.get(conn.id)
        if known is not None:
            return known
        token = proxy_token(flow.request.headers.get("proxy-authorization"))
        policy = self.directory.by_token(token) if token else None
        address = conn.peername[0] if conn.peername else ""
        if policy is None:
            self._refuse(
                flow,
                None,
                407,
                "unattributed",
                "clauderon: this proxy serves clauderon sessions only; the request "
                "carries no valid session credential.\n",
                **{"proxy-authenticate": f'Basic realm="{PROXY_USER}"'},
            )
            return None
        if not await self.directory.verify_peer(policy, address):
            self._refuse(
                flow,
                policy,
                403,
                "unattributed",
                f"clauderon: this connection ({address}) is not from the container "
                f"of session {policy.name}.\n",
            )
            return None
        self._attributed[conn.id] = policy
        return policy

    def client_disconnected(self, client: connection.Client) -> None:
        self._attributed.pop(client.id, None)
        self._connect_targets.pop(client.id, None)

    # --- hooks ----------------------------------------------------------------------

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        policy = await self._attribute(flow)
        if policy is None:
            return
        host, port = flow.request.host, flow.request.port
        self._connect_targets[flow.client_conn.id] = (host, port)
        refusal = self._connect_refusal(policy, host, port)
        if refusal is not None:
            # Accepted all the same: a refused CONNECT's body is never shown (curl says
            # "CONNECT tunnel failed, response 403"), so each request inside the tunnel is
            # answered 403 with the explanation, over TLS with the CA the container trusts.
            # Nothing is connected upstream (server_connect).
            flow.metadata[META] = {
                "session": policy.name,
                "host": host,
                "port": port,
                "start": time.monotonic(),
                "credential": None,
                "path": "",
            }
            self._audit(flow, 403, f"denied:{refusal}")

    def _connect_refusal(self, policy: SessionPolicy, host: str, port: int) -> str | None:
        if not self.policy.egress_allows(host, policy.egress, port, policy.session_id):
            return "egress"
        if self._local_target(host, port):
            return "host"
        return None

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.request.method == "CONNECT" or flow.response is not None:
            return
        policy = await self._attribute(flow)
        if policy is None:
            return
        request = flow.request
        request.headers.pop("proxy-authorization", None)
        host, port = request.host, request.port  # where the connection really goes
        flow.metadata[META] = {
            "session": policy.name,
            "host": host,
            "port": port,
            "scheme": request.scheme,
            "start": time.monotonic(),
            "credential": None,
            "path": request.path.split("?", 1)[0],
        }
        if host == HOOK_HOST:
            self._hook_headers(flow, policy)
            return
        # Domain fronting: the name the upstream sees (Host/:authority, and the SNI the
        # agent sent) must be the destination the policy decides on.
        sni = flow.client_conn.sni if request.scheme == "https" else None
        if not authority_matches(host, port, request.host_header) or (
            sni and not authority_matches(host, port, sni)
        ):
            named = request.host_header if sni is None else f"{request.host_header} (SNI {sni})"
            self._refuse(
                flow,
                policy,
                403,
                "fronting",
                f"clauderon: the request is for {named} but goes to "
                f"{_hostport(host, port)}; a request must name the host it is sent to.\n",
            )
            return
        if not self.policy.egress_allows(host, policy.egress, port, policy.session_id):
            text = denial_text(_allow_entry(host, port), policy.name, policy.egress)
            self._refuse(flow, policy, 403, "egress", text)
            if is_model_call(host, request.method, flow.metadata[META]["path"]):
                self.directory.model_result(
                    policy, f"egress ({policy.egress}) denies its model host {host}"
                )
            return
        if not access_allows(policy.access_mode, request.method, host, request.path):
            self._refuse(
                flow,
                policy,
                403,
                "read-only",
                f"clauderon: session {policy.name} is read-only: {request.method} to "
                f"{host} is refused. `clauderon set-access-mode {policy.name} "
                "read-write` allows it.\n",
            )
            return
        gate = None
        if is_receive_pack(request.method, request.path, request.headers.get("content-type")):
            gate = self._push_gate(flow, policy)
            if gate is None:
                return
        buffered = False
        if is_github_api(host):
            decided = self._github_headers(flow, policy)
            if decided is None:
                return
            buffered = decided
        if not await self._inject(flow, policy, host):
            return
        if self._local_target(host, port):
            self._refuse(flow, policy, 403, "host", _host_text(host, port))
            return
        upstream = self.policy.upstream_for(host)
        if upstream:
            self._redirect(flow, upstream)
        # A GitHub API request decided on its body is read whole first (bounded above).
        request.stream = False if buffered else gate or True
        if is_model_call(host, request.method, flow.metadata[META]["path"]):
            flow.metadata[META]["model_call"] = policy
            self.directory.model_calls(policy, +1)

    def _push_gate(self, flow: http.HTTPFlow, policy: SessionPolicy) -> PushGate | None:
        """A `git push`: its body is held back until its ref updates are read
        (pushscope.PushGate); only refs/heads/<branch> may change. The upstream gets the
        body chunked, so a refused push can be ended there as an empty one."""
        request = flow.request
        push: dict[str, Any] = {
            "refs": None,
            "refused": None,
            "commands": None,
            "session": policy.name,
            "branch": policy.branch,
        }
        flow.metadata[META]["push"] = push
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            push["refused"] = f"a {encoding}-encoded push cannot be checked"
            self._refuse(flow, policy, 403, "push-ref", _push_text(policy, push["refused"]))
            return None

        def decide(commands: PushCommands | None, error: str | None) -> bool:
            if commands is not None:
                push["commands"] = commands
                push["refs"] = [update.ref for update in commands.updates]
                reasons = refusals(commands, policy.branch, policy.name)
                push["refused"] = reasons or None
            else:
                push["refused"] = error or "the push cannot be read"
            return not push["refused"]

        request.headers.pop("content-length", None)
        request.headers["transfer-encoding"] = "chunked"
        return PushGate(decide)

    def _github_headers(self, flow: http.HTTPFlow, policy: SessionPolicy) -> bool | None:
        """api.github.com: with the injected token a session may change only its own
        branch (githubscope.py). Decided now when the headers are enough (True: the body
        is needed, decided in `request` once read whole), None when refused."""
        request = flow.request
        path, _, query = request.path.partition("?")
        names = [name.lower() for name in request.headers]
        if not needs_body(request.method, path):
            reason = github_refusal(request.method, path, query, None, policy.branch, names)
            if reason is not None:
                self._refuse_github(flow, policy, reason)
                return None
            return False
        headers = request.headers
        encoding = headers.get("content-encoding", "identity").strip().lower()
        length = headers.get("content-length")
        empty = request.http_version.startswith("HTTP/1") and "transfer-encoding" not in headers
        if length is not None and length.isdigit() and int(length) > GITHUB_MAX_BODY:
            # Answering would mean reading the body first: close the connection instead.
            self._audit(flow, 413, "denied:github-api", reason="the body is over 1 MiB")
            flow.kill()  # type: ignore[no-untyped-call]  # mitmproxy's API is untyped
            return None
        if encoding not in ("", "identity"):
            self._refuse_github(flow, policy, f"a {encoding}-encoded body cannot be checked")
            return None
        if (length is None and not empty) or (length is not None and not length.isdigit()):
            self._refuse_github(flow, policy, "a write must give its Content-Length")
            return None
        flow.metadata[META]["github"] = {
            "policy": policy,
            "path": path,
            "query": query,
            "headers": names,
        }
        return True

    def _github_body(self, flow: http.HTTPFlow) -> None:
        github = flow.metadata[META].pop("github")
        policy = github["policy"]
        body = flow.request.raw_content or b""
        reason = github_refusal(
            flow.request.method,
            github["path"],
            github["query"],
            body,
            policy.branch,
            github["headers"],
        )
        if reason is not None:
            self._refuse_github(flow, policy, reason)

    def _refuse_github(self, flow: http.HTTPFlow, policy: SessionPolicy, reason: str) -> None:
        """403 in GitHub's error shape, so `gh` and agents print the reason."""
        path = flow.metadata[META]["path"]
        flow.response = http.Response.make(
            403,
            github_message(policy.name, policy.branch, flow.request.method, path, reason),
            {"content-type": "application/json; charset=utf-8", "x-clauderon-denied": "github-api"},
        )
        self._audit(flow, 403, "denied:github-api", reason=reason)

    def _push_answer(self, flow: http.HTTPFlow, push: dict[str, Any]) -> None:
        """Answer a refused push as receive-pack declines one (git prints each ref's
        reason), or 403 when the client asked for no report."""
        refused, session, branch = push["refused"], push["session"], push["branch"]
        commands = push.get("commands")
        if isinstance(refused, dict) and commands is not None:
            message = (
                f"clauderon: session {session} may push only refs/heads/{branch} "
                "(no other branch, no tag, no deletion); push other refs from the host.\n"
            )
            body = report(commands, refused, message)
            if body is not None:
                flow.response = http.Response.make(
                    200,
                    body,
                    {
                        "content-type": RESULT_TYPE,
                        "cache-control": "no-cache",
                        "x-clauderon-denied": "push-ref",
                    },
                )
                return
        reason = "; ".join(refused.values()) if isinstance(refused, dict) else str(refused)
        flow.response = _deny(403, "push-ref", f"clauderon: push refused: {reason}\n")

    def _hook_headers(self, flow: http.HTTPFlow, policy: SessionPolicy) -> None:
        """An agent report: the token is checked on the headers and the body is bounded
        before any of it is read (mitmproxy reads a body only after this hook)."""
        request = flow.request
        authorization = request.headers.get("authorization", "")
        length = request.headers.get("content-length", "0" if request.method == "GET" else "")
        size = int(length) if length.isdigit() else None
        if size is None or size > HOOK_BODY_LIMIT or "transfer-encoding" in request.headers:
            # Answering would mean reading the body first: close the connection instead.
            self._audit(flow, 413, "denied:hook-size")
            flow.kill()  # type: ignore[no-untyped-call]  # mitmproxy's API is untyped
            return
        if self._hook_flows.get(policy.name, 0) >= HOOK_FLOWS_PER_SESSION:
            self._audit(flow, 429, "denied:hook-busy")
            flow.kill()  # type: ignore[no-untyped-call]
            return
        self._hook_flows[policy.name] = self._hook_flows.get(policy.name, 0) + 1
        flow.metadata[META]["hook"] = policy  # answered in `request`, once the body is in
        if not policy.hook_token or authorization != f"Bearer {policy.hook_token}":
            self._refuse(
                flow,
                policy,
                403,
                "hook-token",
                "clauderon: an agent report without the session's token is refused\n",
            )

    def _hook_done(self, flow: http.HTTPFlow) -> None:
        policy = (flow.metadata.get(META) or {}).pop("hook", None)
        if policy is not None:
            left = self._hook_flows.get(policy.name, 1) - 1
            if left > 0:
                self._hook_flows[policy.name] = left
            else:
                self._hook_flows.pop(policy.name, None)

    def request(self, flow: http.HTTPFlow) -> None:
        meta = flow.metadata.get(META) or {}
        if "github" in meta and flow.response is None:
            self._github_body(flow)
            return
        policy = meta.get("hook")
        if policy is None:
            return
        self._hook_done(flow)
        if flow.response is not None:
            return
        match = HOOK_PATH.fullmatch(meta["path"])
        if flow.request.method != "POST" or match is None:
            self._refuse(flow, policy, 404, "hook", "clauderon: no such report endpoint\n")
            return
        try:
            payload = json.loads(flow.request.content or b"{}")
        except ValueError:
            payload = {}
        self.directory.report(
            policy, match.group(1), match.group(2), payload if isinstance(payload, dict) else {}
        )
        flow.response = http.Response.make(
            200, b'{"status":"ok"}\n', {"content-type": "application/json"}
        )

    async def _inject(self, flow: http.HTTPFlow, policy: SessionPolicy, host: str) -> bool:
        rules = self.policy.rules_for(host)
        if not rules:
            return True
        request = flow.request
        # Over plain HTTP only to an upstream the user named (its scheme is theirs).
        if request.scheme != "https" and not self.policy.upstream_for(host):
            self._refuse(
                flow,
                policy,
                403,
                "cleartext",
                f"clauderon: credentials for {host} go over TLS only: use "
                f"https://{host}{normalise_path(request.path) or '/'}\n",
            )
            return False
        ports = {rule.port for rule in rules} if request.scheme == "https" else {80}
        if request.port not in ports:
            self._refuse(
                flow,
                policy,
                403,
                "port",
                f"clauderon: credentials for {host} go to port {min(ports)} only, "
                f"not {request.port}.\n",
            )
            return False
        headers = request.headers
        for name in CREDENTIAL_HEADERS:
            value = headers.get(name)
            if value and not carries_placeholder(value):
                self._refuse(
                    flow,
                    policy,
                    403,
                    "credential",
                    f"clauderon: the request to {host} carries a credential that "
                    "clauderon did not give this session; it is refused.\n",
                )
                return False
            headers.pop(name, None)
        for rule in rules:
            try:
                secret = await self.credentials.value(rule.credential, self.post)
            except Exception as exc:  # a failed refresh: say so instead of a silent 401
                log.warning("credential %s unavailable: %s", rule.credential, exc)
                self._refuse(
                    flow,
                    policy,
                    502,
                    "credential",
                    f"clauderon: could not refresh the {rule.credential} credential: "
                    f"{type(exc).__name__}\n",
                )
                return False
            if secret:
                headers[rule.header] = rule.render(secret)
                flow.metadata[META]["credential"] = rule.credential
                # An echo of the key must come back readable, to be replaced.
                headers["accept-encoding"] = "identity"
                break
        return True

    def _redirect(self, flow: http.HTTPFlow, upstream: str) -> None:
        target = urlsplit(upstream)
        request = flow.request
        request.scheme = target.scheme
        request.host = target.hostname or request.host
        request.port = target.port or (443 if target.scheme == "https" else 80)
        request.path = target.path.rstrip("/") + request.path
        flow.metadata[META]["upstream"] = upstream

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        meta = flow.metadata.get(META)
        if meta and (meta.get("push") or {}).get("refused"):
            return  # the upstream's answer to an empty push: replaced in `response`
        code = flow.response.status_code
        if meta and meta.get("credential") and code == 401:
            self.credentials.mark_rejected(meta["credential"])
        if meta and meta.get("model_call") is not None:
            if code in (401, 403):
                credential = meta.get("credential") or "none was injected"
                self.directory.model_result(
                    meta["model_call"],
                    f"the model API {meta['host']} answered {code} (credential: "
                    f"{credential}): check it with `clauderon config credentials`",
                )
            elif 200 <= code < 300:
                self.directory.model_result(meta["model_call"], None)
        # Whatever an upstream echoes (an error body, a WWW-Authenticate value), the
        # session gets placeholders, never a real secret: headers now, the body as it
        # streams through (server-sent events still arrive as they come).
        scrubber = SecretScrubber(self._secret_forms())
        headers = flow.response.headers
        for name, value in list(headers.items(multi=True)):  # type: ignore[no-untyped-call]
            clean = scrubber.scrub(value.encode("utf-8", "surrogateescape"))
            if clean != value.encode("utf-8", "surrogateescape"):
                values = [
                    scrubber.scrub(v.encode("utf-8", "surrogateescape")).decode(
                        "utf-8", "surrogateescape"
                    )
                    for v in headers.get_all(name)
                ]
                headers.set_all(name, values)
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if meta and meta.get("credential") and encoding not in ("", "identity"):
            # Asked for identity, got an encoding: the body cannot be checked; drop it.
            self._audit(flow, 502, "denied:encoding")
            flow.kill()  # type: ignore[no-untyped-call]
            return
        flow.response.stream = scrubber if scrubber.forms else True

    def response(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        self._model_call_done(flow)
        push = (flow.metadata.get(META) or {}).get("push")
        if push and push["refused"] and not flow.response.headers.get("x-clauderon-denied"):
            self._push_answer(flow, push)
            self._audit(flow, flow.response.status_code, "denied:push-ref", refs=push["refs"])
            return
        extra = {"refs": push["refs"]} if push else {}
        self._audit(flow, flow.response.status_code, "allowed", **extra)

    def error(self, flow: http.HTTPFlow) -> None:
        self._model_call_done(flow)
        self._hook_done(flow)
        error = str(flow.error) if flow.error else "error"
        decision = "denied:host" if "resolves to this machine" in error else "allowed"
        push = (flow.metadata.get(META) or {}).get("push")
        if push and push["refused"]:
            decision = "denied:push-ref"
        self._audit(flow, 502, decision, error=error)

    def _model_call_done(self, flow: http.HTTPFlow) -> None:
        meta = flow.metadata.get(META) or {}
        policy = meta.pop("model_call", None)
        if policy is not None:
            self.directory.model_calls(policy, -1)

    def _secret_forms(self) -> list[bytes]:
        values = tuple(self.credentials.secret_values())
        if self._forms[0] != values:  # a refresh changed a token: recompute once
            self._forms = (values, secret_forms(values, self.policy.rules))
        return self._forms[1]

    # --- where the proxy connects -----------------------------------------------------

    def _local_addresses(self) -> frozenset[str]:
        stamp, addresses = self._local
        if time.monotonic() - stamp > LOCAL_ADDRESSES_TTL:
            addresses = read_local_addresses()
            self._local = (time.monotonic(), addresses)
        return addresses

    def _local_target(self, host: str, port: int) -> bool:
        """A destination that names this machine outright (an address or `localhost`)."""
        if (host.lower(), port) in self._upstream_targets:
            return False
        name = host.lower().rstrip(".")
        if name == "localhost" or name.endswith(".localhost"):
            return True
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return address_forbidden(host.strip("[]"), self._local_addresses())

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Every upstream connection, whatever opened it: resolve the name here, refuse
        this machine's addresses, and connect to the address that was checked (a second
        DNS answer cannot switch it). The upstream TLS name is the destination's own,
        never an SNI the agent chose. An upstream the user named is connected as given."""
        server = data.server
        if server.address is None or server.via is not None:
            return
        target = self._connect_targets.get(data.client.id)
        policy = self._attributed.get(data.client.id)
        if target is not None and (policy is None or self._connect_refusal(policy, *target)):
            server.error = f"clauderon: {_hostport(*target)} is refused for this session"
            return
        host, port = server.address
        if server.sni is None or server.sni != host:
            server.sni = host
        if (host.lower(), port) in self._upstream_targets:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            server.error = f"cannot resolve {host}: {exc}"
            return
        addresses = [info[4][0] for info in infos]
        local = self._local_addresses()
        if not addresses or any(address_forbidden(a, local) for a in addresses):
            server.error = f"clauderon: {host} resolves to this machine; refused"
            return
        self._restore_address[server.id] = (host, port)
        server.address = (addresses[0], port)

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        # Give the connection its name back, so requests to the same host reuse it.
        original = self._restore_address.pop(data.server.id, None)
        if original is not None:
            object.__setattr__(data.server, "address", original)

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._restore_address.pop(data.server.id, None)

    # --- decisions and the audit log ------------------------------------------------

    def _refuse(
        self,
        flow: http.HTTPFlow,
        policy: SessionPolicy | None,
        status: int,
        reason: str,
        text: str,
        **headers: str,
    ) -> None:
        flow.response = _deny(status, reason, text, **headers)
        flow.metadata.setdefault(
            META, {"start": time.monotonic(), "credential": None, "host": flow.request.host}
        )
        flow.metadata[META]["session"] = policy.name if policy else None
        self._audit(flow, status, f"denied:{reason}")

    def _audit(self, flow: http.HTTPFlow, status: int, decision: str, **extra: Any) -> None:
        meta = flow.metadata.get(META)
        if meta is None or meta.get("audited"):
            return
        meta["audited"] = True
        entry = {
            "session": meta.get("session"),
            "host": meta.get("host"),
            "method": flow.request.method,
            "path": meta.get("path", ""),
            "status": status,
            "credential": meta.get("credential"),
            "decision": decision,
            "duration_ms": round((time.monotonic() - meta["start"]) * 1000, 1),
        }
        if meta.get("port") is not None:
            entry["port"] = meta["port"]
            entry["scheme"] = meta.get("scheme")
        if meta.get("upstream"):
            entry["upstream"] = meta["upstream"]
        server = flow.server_conn
        if server is not None and server.peername:
            # What was really contacted: the checked address and the TLS name sent there.
            entry["contacted"] = _hostport(*server.peername[:2])
            if server.tls and server.sni:
                entry["sni"] = server.sni
        entry.update(extra)
        self.audit.write(entry)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _allow_entry(host: str, port: int) -> str:
    """What the user would add to `allow = [...]` for this destination."""
    return host if port in WEB_PORTS else f"{host}:{port}"


def _host_text(host: str, port: int) -> str:
    return (
        f"clauderon: {_hostport(host, port)} is this machine; sessions never reach the "
        "host through the proxy (name a service under [proxy.upstreams] to allow one).\n"
    )


def _push_text(policy: SessionPolicy, reason: str) -> str:
    return (
        f"clauderon: push refused: {reason}; session {policy.name} may push only "
        f"refs/heads/{policy.branch}.\n"
    )
