"""The mitmproxy addon: attribute, decide, inject, audit.

Every connection is attributed to a session by its proxy credential (`Proxy-Authorization`,
from the proxy URL the container was given) *and* the session's own Unix socket it came in
on (its peer address, set by proxy/server.py); anything else is refused. Credentials are
chosen by the real destination of the connection, never by a header the agent writes.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from typing import Any, Protocol
from urllib.parse import urlsplit

from mitmproxy import connection, http

from .audit import AuditLog
from .credentials import CredentialStore, PostJSON
from .policy import (
    CREDENTIAL_HEADERS,
    Policy,
    SessionPolicy,
    access_allows,
    carries_placeholder,
    denial_text,
    is_model_call,
)

log = logging.getLogger(__name__)
PROXY_USER = "clauderon"
META = "clauderon"


HOOK_HOST = "clauderon.internal"  # agents report their status here; never forwarded
HOOK_PATH = re.compile(r"/v1/agent-events/([a-z]+)/([A-Za-z_-]+)")


class SessionDirectory(Protocol):
    """How the proxy learns which session a connection belongs to (the manager)."""

    def by_token(self, token: str) -> SessionPolicy | None: ...

    async def verify_peer(self, policy: SessionPolicy, address: str) -> bool: ...

    def report(
        self, policy: SessionPolicy, agent: str, event: str, payload: dict[str, Any]
    ) -> None: ...

    def model_calls(self, policy: SessionPolicy, delta: int) -> None: ...


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

    # --- hooks ----------------------------------------------------------------------

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        policy = await self._attribute(flow)
        if policy is None:
            return
        host = flow.request.host
        if not self.policy.egress_allows(host, policy.egress):
            self._refuse(flow, policy, 403, "egress", denial_text(host, policy.name, policy.egress))

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.request.method == "CONNECT" or flow.response is not None:
            return
        policy = await self._attribute(flow)
        if policy is None:
            return
        request = flow.request
        request.headers.pop("proxy-authorization", None)
        host = request.host  # where the connection really goes, not the Host header
        flow.metadata[META] = {
            "session": policy.name,
            "host": host,
            "start": time.monotonic(),
            "credential": None,
            "path": request.path.split("?", 1)[0],
        }
        if host == HOOK_HOST:
            flow.metadata[META]["hook"] = policy  # answered in `request`, once the body is in
            return
        if not self.policy.egress_allows(host, policy.egress):
            self._refuse(flow, policy, 403, "egress", denial_text(host, policy.name, policy.egress))
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
        if not await self._inject(flow, policy, host):
            return
        upstream = self.policy.upstream_for(host)
        if upstream:
            self._redirect(flow, upstream)
        request.stream = True
        if is_model_call(host, request.method, flow.metadata[META]["path"]):
            flow.metadata[META]["model_call"] = policy
            self.directory.model_calls(policy, +1)

    def request(self, flow: http.HTTPFlow) -> None:
        meta = flow.metadata.get(META) or {}
        policy = meta.get("hook")
        if policy is None or flow.response is not None:
            return
        authorization = flow.request.headers.get("authorization", "")
        match = HOOK_PATH.fullmatch(meta["path"])
        if not policy.hook_token or authorization != f"Bearer {policy.hook_token}":
            self._refuse(
                flow,
                policy,
                403,
                "hook-token",
                "clauderon: an agent report without the session's token is refused\n",
            )
            return
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
        headers = flow.request.headers
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
        flow.response.stream = True  # server-sent events reach the agent as they arrive
        meta = flow.metadata.get(META)
        if meta and meta.get("credential") and flow.response.status_code == 401:
            self.credentials.mark_rejected(meta["credential"])

    def response(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        self._model_call_done(flow)
        self._audit(flow, flow.response.status_code, "allowed")

    def error(self, flow: http.HTTPFlow) -> None:
        self._model_call_done(flow)
        self._audit(flow, 502, "allowed", error=str(flow.error) if flow.error else "error")

    def _model_call_done(self, flow: http.HTTPFlow) -> None:
        meta = flow.metadata.get(META) or {}
        policy = meta.pop("model_call", None)
        if policy is not None:
            self.directory.model_calls(policy, -1)

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
        if meta.get("upstream"):
            entry["upstream"] = meta["upstream"]
        entry.update(extra)
        self.audit.write(entry)
