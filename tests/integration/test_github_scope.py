"""GitHub's API from inside a real session: with the injected token, writes that could move
a ref other than the session's branch are refused by the proxy (403 in GitHub's error
shape, audited) and never reach GitHub; the allowed ones do. api.github.com is the fake
in tests/fakegithub, bound through `[proxy.upstreams]`."""

from __future__ import annotations

import json
import shlex

import pytest

from tests.fakegithub import FakeGitHub

from .conftest import AGENTS_IMAGE, exec_in

pytestmark = pytest.mark.docker

TOKEN = "ghp_REALSECRETgithubscope0123456789"
QUIET = ("--image", AGENTS_IMAGE, "--env", "ANTHROPIC_BASE_URL=http://127.0.0.1:9")
API = "https://api.github.com"


@pytest.fixture
def fake():
    with FakeGitHub(token=TOKEN) as server:
        yield server


def call(container, method: str, path: str, data: object) -> tuple[int, str]:
    """curl inside the container, through the proxy: (status, body)."""
    body = shlex.quote(json.dumps(data))
    code, out = exec_in(
        container,
        f"curl -sS -m 20 -X {method} -H 'content-type: application/json' "
        f"-w '\\n%{{http_code}}' --data-binary {body} {API}{path} 2>&1",
    )
    assert code == 0, out
    text, _, status = out.rstrip("\n").rpartition("\n")
    return int(status), text


def test_github_api_writes_are_scoped_to_the_session_branch(clauderon, repo, fake):
    clauderon.configure(f'[proxy.upstreams]\n"api.github.com" = "{fake.url}"\n', GITHUB_TOKEN=TOKEN)
    created = clauderon.create(repo, *QUIET)
    name, branch = created["name"], created["branch"]
    container = clauderon.container(created)
    sha = "1" * 40

    refused = [
        ("PATCH", "/repos/owner/repo/git/refs/heads/main", {"sha": sha, "force": True}),
        ("PUT", "/repos/owner/repo/pulls/1/merge", {"merge_method": "squash"}),
        ("POST", "/repos/owner/repo/git/refs", {"ref": "refs/tags/v1", "sha": sha}),
        ("PUT", "/repos/owner/repo/contents/README.md", {"message": "m", "content": "eA=="}),
        (
            "POST",
            "/graphql",
            {"query": 'mutation { c: mergePullRequest(input: {pullRequestId: "x"}) { x } }'},
        ),
    ]
    for method, path, data in refused:
        status, text = call(container, method, path, data)
        assert status == 403, (method, path, text)
        answer = json.loads(text)
        assert answer["message"].startswith(
            f"clauderon: session {name} may change only refs/heads/{branch} through GitHub's API"
        ), answer
        assert "documentation_url" in answer

    # A body the proxy cannot bound before reading it: no length (streamed from stdin),
    # or over 1 MiB (the connection is closed unanswered). Neither reaches GitHub.
    query = shlex.quote(json.dumps({"query": "{ viewer { login } }"}))
    _code, out = exec_in(
        container,
        f"echo {query} | curl -sS -m 20 -X POST -T - -w '\\n%{{http_code}}' {API}/graphql 2>&1",
    )
    assert out.rstrip().endswith("403") and "Content-Length" in out, out
    code, out = exec_in(
        container,
        "head -c 1100000 /dev/zero | tr '\\0' ' ' | curl -sS -m 20 -X POST "
        f"-H 'content-type: application/json' --data-binary @- -w '%{{http_code}}' {API}/graphql",
    )
    assert code != 0 and not out.endswith("200"), out  # HTTP/2: the stream is reset

    allowed = [
        ("POST", "/repos/owner/repo/pulls", {"title": "t", "head": branch, "base": "main"}),
        ("POST", "/repos/owner/repo/issues", {"title": "found a bug"}),
        ("PATCH", f"/repos/owner/repo/git/refs/heads/{branch}", {"sha": sha}),
    ]
    statuses = [call(container, *request)[0] for request in allowed]
    assert statuses == [201, 404, 404]  # the fake knows only pulls: the others reached it

    reached = [(r.method, r.path) for r in fake.requests]
    assert reached == [(m, p) for m, p, _ in allowed]
    assert not fake.problems  # the real token was injected on each
    assert fake.pulls[0]["head"]["ref"] == branch

    entries = [
        json.loads(line)
        for line in clauderon.run("audit", name, "--json", "-n", "1000").stdout.splitlines()
    ]
    denied = [(e["method"], e["path"]) for e in entries if e["decision"] == "denied:github-api"]
    assert sorted(denied) == sorted([(m, p) for m, p, _ in refused] + [("POST", "/graphql")] * 2)
