"""What the agent itself may do through the proxy: push only its own branch to GitHub, read
why a host is refused, and reach a host the user allows while the session runs.

github.com is a local git smart-HTTP server (`git http-backend`) bound through
`[proxy.upstreams]`; other hosts go to a recording server on loopback.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import subprocess
from pathlib import Path

import pytest

from .conftest import AGENTS_IMAGE, exec_in, git
from .githttp import GitHTTPServer
from .upstream import RecordingUpstream

pytestmark = pytest.mark.docker

GITHUB_TOKEN = "ghp_REALSECRETnevergoesintoacontainer0123"
QUIET = ("--env", "ANTHROPIC_BASE_URL=http://127.0.0.1:9")
REMOTE = "https://github.com/owner/repo.git"
AGENT_GIT = "git -c user.email=agent@example.com -c user.name=Agent"


@pytest.fixture
def github(tmp_path: Path, repo: Path):
    """A bare `owner/repo.git` with the user's main, and a branch `other`."""
    bare = tmp_path / "github" / "owner" / "repo.git"
    bare.parent.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    git("push", "-q", str(bare), "main", "main:refs/heads/other", cwd=repo)
    with GitHTTPServer(tmp_path / "github") as server:
        yield server, bare


@pytest.fixture
def upstream():
    with RecordingUpstream() as server:
        yield server


@pytest.fixture
def session(clauderon, repo, github, upstream):
    server, _bare = github
    clauderon.configure(
        "[proxy.upstreams]\n"
        f'"github.com" = "{server.url}"\n'
        f'"example.org" = "{upstream.url}"\n'
        f'"registry.npmjs.org" = "{upstream.url}"\n',
        GITHUB_TOKEN=GITHUB_TOKEN,
    )
    created = clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET)
    return created, clauderon.container(created)


def refs(bare: Path) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=bare)
    return dict(line.split(" ", 1) for line in out.splitlines())


def audit(clauderon, name: str) -> list[dict]:
    out = clauderon.run("audit", name, "--json", "-n", "1000").stdout
    return [json.loads(line) for line in out.splitlines()]


def test_a_session_pushes_only_its_own_branch(session, github, clauderon):
    created, container = session
    name = created["name"]
    _server, bare = github
    before = refs(bare)
    code, out = exec_in(container, f"{AGENT_GIT} commit -q --allow-empty -m agent-work 2>&1")
    assert code == 0, out
    _code, head = exec_in(container, "git rev-parse HEAD")
    head = head.strip()
    allowed = f"refs/heads/{name}"

    # Another branch, a tag, deletions, and the session branch smuggled in with another
    # ref: each refused whole, with a message that names the one ref it may push.
    attempts = {
        "another branch": f"git push {REMOTE} HEAD:refs/heads/main",
        "a new branch": f"git push {REMOTE} HEAD:refs/heads/sneaky",
        "a tag": f"git tag v1 && git push {REMOTE} v1",
        "a deletion": f"git push {REMOTE} --delete other",
        "its own deletion": (
            f"git push {REMOTE} HEAD:{allowed} && git push {REMOTE} --delete {name}"
        ),
        "with its own": f"git push {REMOTE} HEAD:refs/heads/sneaky2 HEAD:refs/heads/{name}",
    }
    for what, command in attempts.items():
        code, out = exec_in(container, f"{command} 2>&1")
        assert code != 0, (what, out)
        assert "[remote rejected]" in out and allowed in out, (what, out)
        assert "clauderon" in out, (what, out)
    after = refs(bare)
    assert after.get("refs/heads/main") == before["refs/heads/main"]
    assert after.get("refs/heads/other") == before["refs/heads/other"]
    assert not any(r.startswith("refs/tags/") for r in after)
    assert "refs/heads/sneaky" not in after and "refs/heads/sneaky2" not in after
    assert after.get(allowed) == head  # pushed by "its own deletion", not deleted

    # Its own branch lands, with new commits (a large one: git sends it chunked, after
    # an empty probe request); fetch and clone work.
    exec_in(
        container,
        f"head -c 3000000 /dev/urandom > big.bin && git add big.bin && "
        f"{AGENT_GIT} commit -q -m more-work",
    )
    code, out = exec_in(container, f"git push {REMOTE} HEAD:{allowed} 2>&1")
    assert code == 0, out
    _code, head = exec_in(container, "git rev-parse HEAD")
    assert refs(bare)[allowed] == head.strip()
    code, out = exec_in(
        container,
        f"git clone -q {REMOTE} /tmp/clone 2>&1 && "
        f"git -C /tmp/clone log -1 --format=%s origin/{name}",
    )
    assert code == 0 and "more-work" in out, out
    code, out = exec_in(container, f"git fetch -q {REMOTE} main 2>&1")
    assert code == 0, out

    entries = [e for e in audit(clauderon, name) if e["path"].endswith("/git-receive-pack")]
    denied = [e for e in entries if e["decision"] == "denied:push-ref"]
    allowed_entries = [e for e in entries if e["decision"] == "allowed"]
    assert len(denied) == len(attempts), entries
    # The two pushes of its branch (and the empty probe git sends before a large one).
    assert [e["refs"] for e in allowed_entries if e["refs"]] == [[allowed]] * 2, entries
    assert {"refs/tags/v1", "refs/heads/main", "refs/heads/other"} <= {
        ref for e in denied for ref in e["refs"]
    }


def test_a_hostile_push_request_is_refused(session, github, clauderon):
    created, container = session
    _server, bare = github
    before = refs(bare)
    url = "https://github.com/owner/repo.git/git-receive-pack"
    zero = "0" * 40
    _code, main = exec_in(container, "git rev-parse HEAD")
    line = f"{zero} {main.strip()} refs/heads/main\0report-status side-band-64k\n".encode()
    command = b"%04x%s" % (len(line) + 4, line)
    bodies = {
        "not pkt-lines": b"zzzz-not-a-pkt-line",
        "a line longer than its data": b"00ffshort",
        "no flush": command,
        "a special packet": b"0001" + command + b"0000",
        "another ref, raw": command + b"0000PACK",
        "gzip": gzip.compress(command + b"0000"),
    }
    for what, body in bodies.items():
        header = "-H 'content-encoding: gzip'" if what == "gzip" else ""
        code, out = exec_in(
            container,
            f"echo {base64.b64encode(body).decode()} | base64 -d | "
            "curl -sS -m 10 -o /dev/null -w '%{http_code}' --data-binary @- "
            f"-H 'content-type: application/x-git-receive-pack-request' {header} {url} 2>&1",
        )
        # A list it can read is declined in receive-pack's report (asked for); else 403.
        assert out.strip() == ("200" if what == "another ref, raw" else "403"), (what, out)
    assert refs(bare) == before
    decisions = [
        e["decision"]
        for e in audit(clauderon, created["name"])
        if e["path"].endswith("/git-receive-pack")
    ]
    assert decisions == ["denied:push-ref"] * len(bodies), decisions


def test_a_denied_https_host_explains_itself_and_allow_is_live(session, upstream, clauderon):
    created, container = session
    name = created["name"]
    probe = "curl -sS -m 10 https://example.org/probe 2>&1"
    code, out = exec_in(container, probe)
    assert code == 0, out  # answered inside TLS: the client reads the explanation
    assert "egress to example.org is denied" in out, out
    assert f"clauderon allow example.org --session {name}" in out, out
    assert not upstream.requests_to("/probe")

    # Allowed for this session: the same container reaches it at once.
    result = clauderon.run("allow", "example.org", "--session", name)
    assert "example.org" in result.stdout
    code, out = exec_in(container, probe)
    assert code == 0 and "ok GET /probe" in out, out
    listing = clauderon.run("allow", "--list", "--json").json
    assert {"host": "example.org", "session": name, "rule": "allow"} in [
        {k: e[k] for k in ("host", "session", "rule")} for e in listing
    ]
    # The list for one session holds its own entries and those for every session.
    mine = clauderon.run("allow", "--list", "--session", name, "--json").json
    assert {e["session"] for e in mine} <= {None, name} and any(e["session"] for e in mine)

    # It lasts across a daemon restart (the running container keeps it).
    clauderon.run("daemon", "stop")
    clauderon.run("list")
    code, out = exec_in(container, probe)
    assert "ok GET /probe" in out, out

    # Disallowed: refused again, at once; a host of the default list can be disallowed.
    clauderon.run("disallow", "example.org", "--session", name)
    code, out = exec_in(container, probe)
    assert "egress to example.org is denied" in out, out
    npm = "curl -sS -m 10 https://registry.npmjs.org/probe/npm 2>&1"
    assert "ok GET /probe/npm" in exec_in(container, npm)[1]
    clauderon.run("disallow", "registry.npmjs.org")
    assert "egress to registry.npmjs.org is denied" in exec_in(container, npm)[1]
    clauderon.run("allow", "registry.npmjs.org")
    assert "ok GET /probe/npm" in exec_in(container, npm)[1]

    # Globally: every session, and shown in the list.
    clauderon.run("allow", "example.org")
    assert "ok GET /probe" in exec_in(container, probe)[1]
    text = clauderon.run("allow", "--list").stdout
    assert "example.org" in text and "all sessions" in text

    # Plain HTTP gets the same explanation.
    clauderon.run("disallow", "example.org")
    _code, out = exec_in(container, "curl -sS -m 10 http://example.org/plain 2>&1")
    assert f"clauderon allow example.org --session {name}" in out, out

    changes = [e for e in audit(clauderon, name) if e["method"] in ("ALLOW", "DISALLOW")]
    assert [e["method"] for e in changes][:2] == ["ALLOW", "DISALLOW"], changes
    denied = [e for e in audit(clauderon, name) if e["decision"] == "denied:egress"]
    assert any(e["host"] == "example.org" and e["method"] == "GET" for e in denied)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("allow", "not a host"), "not a host name"),
        (("allow", "example.org:99999"), "port must be"),
        (("disallow", "exa mple.org"), "not a host name"),
        (("allow", "example.org", "--session", "nope"), "no session"),
        (("allow", "--list", "--session", "nope"), "no session"),
        (("allow",), "a host"),
    ],
)
def test_allow_refuses_bad_input(clauderon, args, fragment):
    result = clauderon.run(*args, check=False)
    assert result.code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines


def test_a_refused_tunnel_carries_nothing_but_the_explanation(clauderon, repo):
    """A refused CONNECT is accepted (to answer inside TLS), so what is not HTTP in it —
    an SSH banner — must still reach nothing. The target is a loopback listener the user named
    as an upstream (so only the egress decision stands between it and the session)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        clauderon.configure(f'[proxy.upstreams]\n"example.org" = "http://127.0.0.1:{port}"\n')
        created = clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET)
        container = clauderon.container(created)
        code, out = exec_in(
            container,
            "(printf 'SSH-2.0-OpenSSH_9.2\\r\\n'; sleep 2) | "
            f'curl -sS -m 5 --noproxy "" -p -x "$HTTPS_PROXY" telnet://127.0.0.1:{port} 2>&1',
        )
        with pytest.raises(BlockingIOError):
            listener.accept()  # no connection ever reached it
    finally:
        listener.close()
    denied = [e for e in audit(clauderon, created["name"]) if e["host"] == "127.0.0.1"]
    assert [e["decision"] for e in denied] == ["denied:egress"], denied
