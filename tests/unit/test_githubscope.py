"""GitHub API scoping (proxy/githubscope.py): with the injected token a session may change
only refs/heads/<its branch>; everything unreadable is refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clauderon.proxy.githubscope import (
    MUTATIONS,
    graphql_refusal,
    is_github_api,
    message,
    needs_body,
    refusal,
)

BRANCH = "clauderon/fix-bug"


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def decide(method: str, path: str, data: bytes | None = b"", query: str = "", **kw: object):
    return refusal(method, path, query, data, BRANCH, **kw)  # type: ignore[arg-type]


ALLOWED = [
    ("GET", "/repos/o/r/pulls", None),
    ("GET", "/repos/o/r/git/refs/heads/main", None),
    ("HEAD", "/", None),
    ("POST", "/repos/o/r/issues", body(title="t")),
    ("PATCH", "/repos/o/r/issues/3", body(state="closed")),
    ("POST", "/repos/o/r/issues/3/comments", body(body="hi")),
    ("PATCH", "/repos/o/r/issues/comments/9", body(body="edit")),
    ("DELETE", "/repos/o/r/issues/comments/9", b""),
    ("POST", "/repos/o/r/issues/3/labels", body(labels=["bug"])),
    ("POST", "/repos/o/r/pulls", body(head=BRANCH, base="main", title="t")),
    ("POST", "/repos/o/r/pulls", body(head=f"someone:{BRANCH}", base="main")),
    ("PATCH", "/repos/o/r/pulls/1", body(title="better")),
    ("POST", "/repos/o/r/pulls/1/reviews", body(event="COMMENT")),
    ("POST", "/repos/o/r/pulls/1/comments", body(body="x")),
    ("POST", "/repos/o/r/pulls/1/requested_reviewers", body(reviewers=["a"])),
    ("POST", "/repos/o/r/git/blobs", body(content="x")),
    ("POST", "/repos/o/r/git/trees", body(tree=[])),
    ("POST", "/repos/o/r/git/commits", body(message="m", tree="0" * 40)),
    ("POST", "/repos/o/r/git/refs", body(ref=f"refs/heads/{BRANCH}", sha="0" * 40)),
    ("PATCH", f"/repos/o/r/git/refs/heads/{BRANCH}", body(sha="0" * 40, force=True)),
    ("PUT", "/repos/o/r/contents/src/a.py", body(message="m", content="eA==", branch=BRANCH)),
    ("DELETE", "/repos/o/r/contents/a.py", body(message="m", sha="0" * 40, branch=BRANCH)),
    ("POST", "/markdown", body(text="# hi")),
    ("POST", "/graphql", body(query="query { viewer { login } }")),
    ("POST", "/graphql", body(query="{ viewer { login } }", variables=None)),
]

REFUSED = [
    ("PUT", "/repos/o/r/pulls/1/merge", body(merge_method="squash")),
    ("PUT", "/repos/o/r/pulls/1/update-branch", b""),
    ("POST", "/repos/o/r/merges", body(base="main", head=BRANCH)),
    ("POST", "/repos/o/r/merge-upstream", body(branch="main")),
    ("POST", "/repos/o/r/releases", body(tag_name="v1")),
    ("PATCH", "/repos/o/r/git/refs/heads/main", body(sha="0" * 40, force=True)),
    ("PATCH", "/repos/o/r/git/refs/tags/v1", body(sha="0" * 40)),
    ("PATCH", f"/repos/o/r/git/refs/heads/{BRANCH}/x", body(sha="0" * 40)),
    ("DELETE", f"/repos/o/r/git/refs/heads/{BRANCH}", b""),
    ("DELETE", "/repos/o/r/git/refs/heads/main", b""),
    ("POST", "/repos/o/r/git/refs", body(ref="refs/heads/main", sha="0" * 40)),
    ("POST", "/repos/o/r/git/refs", body(ref="refs/tags/v1", sha="0" * 40)),
    ("POST", "/repos/o/r/git/refs", body(ref=f"heads/{BRANCH}", sha="0" * 40)),
    ("POST", "/repos/o/r/git/tags", body(tag="v1")),
    ("PUT", "/repos/o/r/contents/a.py", body(message="m", content="eA==")),  # default branch
    ("PUT", "/repos/o/r/contents/a.py", body(message="m", content="eA==", branch="main")),
    ("PUT", "/repos/o/r/contents/a.py", b"{}"),
    ("PUT", "/repos/o/r/contents/a.py", b"not json"),
    (
        "PUT",
        "/repos/o/r/contents/a.py",
        b'{"branch": "' + BRANCH.encode() + b'", "branch": "main"}',
    ),
    ("PUT", "/repos/o/r/contents/a.py", body(branch=[BRANCH])),
    ("DELETE", "/repos/o/r/contents/a.py", b""),
    ("POST", "/repos/o/r/pulls", body(head="main", base="x")),
    ("POST", "/repos/o/r/pulls", body(base="main")),
    ("POST", "/repos/o/r/pulls", body(head=f"a:b:{BRANCH}")),
    ("POST", "/repos/o/r/pulls", body(head=f":{BRANCH}")),
    ("POST", "/repos/o/r/branches/main/rename", body(new_name="x")),
    ("PATCH", "/repos/o/r", body(default_branch=BRANCH)),
    ("DELETE", "/repos/o/r", b""),
    ("POST", "/repos/o/r/actions/workflows/ci.yml/dispatches", body(ref="main")),
    ("PUT", "/repos/o/r/actions/secrets/X", body(encrypted_value="x")),
    ("POST", "/repos/o/r/hooks", body(config={})),
    ("PUT", "/repos/o/r/collaborators/evil", b""),
    ("POST", "/repos/o/r/keys", body(key="ssh-ed25519 x")),
    ("PUT", "/repos/o/r/branches/main/protection", b"{}"),
    ("POST", "/repos/o/r/statuses/" + "0" * 40, body(state="success")),
    ("POST", "/repos/o/r/forks", b""),
    ("POST", "/user/repos", body(name="x")),
    ("POST", "/repositories/1/issues", body(title="t")),  # the id form: not on the list
    ("POST", "/repos/o/r/issues/", body(title="t")),  # an empty segment
    ("POST", "/repos/o/r/pulls/1/../merge", b""),
    ("PUT", "/repos/o/r/pulls/1/%6derge", b""),  # decoded: merge
    ("BREW", "/repos/o/r/issues", b""),
    (
        "POST",
        "/graphql",
        b'{"query": "mutation { mergePullRequest(input: {}) { clientMutationId } }"}',
    ),
    ("POST", "/graphql", b"[]"),
    ("POST", "/graphql", b""),
    ("PUT", "/graphql", body(query="{ viewer { login } }")),
]


@pytest.mark.parametrize(("method", "path", "data"), ALLOWED)
def test_allowed(method: str, path: str, data: bytes | None) -> None:
    assert decide(method, path, data) is None


@pytest.mark.parametrize(("method", "path", "data"), REFUSED)
def test_refused(method: str, path: str, data: bytes | None) -> None:
    assert decide(method, path, data) is not None


def test_a_body_checked_write_needs_its_body() -> None:
    assert needs_body("POST", "/repos/o/r/pulls")
    assert needs_body("PUT", "/repos/o/r/contents/a/b.py")
    assert needs_body("POST", "/graphql")
    assert not needs_body("POST", "/repos/o/r/issues")
    assert not needs_body("PUT", "/repos/o/r/pulls/1/merge")  # refused on its headers
    assert not needs_body("GET", "/graphql")
    assert decide("POST", "/repos/o/r/pulls", None) is not None


def test_a_method_override_or_query_parameter_is_refused() -> None:
    assert decide("GET", "/repos/o/r", None, header_names=["X-HTTP-Method-Override"])
    assert decide("POST", "/repos/o/r/issues", b"{}", query="_method=DELETE")
    good = body(message="m", content="eA==", branch=BRANCH)
    assert decide("PUT", "/repos/o/r/contents/a", good, query="branch=main")
    assert decide("PUT", "/repos/o/r/contents/a", good, query="x=%ff")


def test_no_session_branch_changes_no_ref() -> None:
    assert refusal("PATCH", "/repos/o/r/git/refs/heads/", "", b"{}", "") is not None
    assert refusal("POST", "/repos/o/r/pulls", "", body(head=""), "") is not None


def test_the_message_is_githubs_error_shape() -> None:
    answer = json.loads(message("s1", BRANCH, "PUT", "/repos/o/r/pulls/1/merge", "why"))
    assert set(answer) == {"message", "documentation_url"}
    assert answer["message"].startswith(
        f"clauderon: session s1 may change only refs/heads/{BRANCH}"
    )
    assert "why" in answer["message"]


def test_only_api_github_com_is_scoped() -> None:
    assert is_github_api("api.github.com") and is_github_api("API.GitHub.com.")
    assert not is_github_api("github.com") and not is_github_api("api.github.com.evil")


# --- GraphQL ------------------------------------------------------------------------

GH_PR_CREATE = """
mutation PullRequestCreate($input: CreatePullRequestInput!) {
  createPullRequest(input: $input) { pullRequest { id url } }
}"""

GQL_ALLOWED = [
    ("query { viewer { login } }", {}),
    ('{ repository(owner: "o", name: "r") { id } }', {}),
    ("query Q($n: Int = 3) { a(first: $n) { ...F } } fragment F on X { b c @skip(if: true) }", {}),
    (
        'mutation { addComment(input: {subjectId: "x", body: "mutation { mergePullRequest }"}) '
        "{ clientMutationId } }",
        {},
    ),
    ('mutation { c: addComment(input: {subjectId: "x", body: """a"""}) { x } }', {}),
    ("# mergePullRequest in a comment\nmutation { addReaction(input: {}) { x } }", {}),
    (GH_PR_CREATE, {"input": {"headRefName": BRANCH, "baseRefName": "main"}}),
    (GH_PR_CREATE, {"input": {"headRefName": f"me:{BRANCH}"}}),
    (f'mutation {{ createPullRequest(input: {{headRefName: "{BRANCH}"}}) {{ x }} }}', {}),
    (
        'mutation($h: String = "' + BRANCH + '") { createPullRequest(input: {headRefName: $h}) '
        "{ x } }",
        {},
    ),
    ('mutation { updatePullRequest(input: {pullRequestId: "x", title: "t"}) { x } }', {}),
    ("query { a } mutation M { closePullRequest(input: {}) { x } }", {}),
]
GQL_REFUSED = [
    ('mutation { mergePullRequest(input: {pullRequestId: "x"}) { x } }', {}),
    ("mutation { comment: mergePullRequest(input: {}) { x } }", {}),  # alias
    ("mutation { addComment: mergePullRequest(input: {}) { x } }", {}),  # allowed name as alias
    ('mutation { addComment(input: {}) { x } deleteRef(input: {refId: "x"}) { x } }', {}),
    ("query A { a } mutation B { updateRef(input: {}) { x } }", {}),  # another operation
    ("mutation { ...F } fragment F on Mutation { mergePullRequest(input: {}) { x } }", {}),
    ("mutation { ... on Mutation { mergePullRequest(input: {}) { x } } }", {}),
    ("mutation { createCommitOnBranch(input: {}) { x } }", {}),
    ("mutation { updatePullRequestBranch(input: {}) { x } }", {}),
    ("mutation { enablePullRequestAutoMerge(input: {}) { x } }", {}),
    ('mutation { createRef(input: {name: "refs/heads/x"}) { x } }', {}),
    ("mutation { updateRepository(input: {}) { x } }", {}),
    (GH_PR_CREATE, {"input": {"headRefName": "main"}}),
    (GH_PR_CREATE, {}),
    (GH_PR_CREATE, {"input": "x"}),
    ('mutation { createPullRequest(input: {headRefName: "main"}) { x } }', {}),
    (
        f'mutation {{ createPullRequest(input: {{headRefName: "{BRANCH}", headRefName: "main"}}) '
        "{ x } }",
        {},
    ),
    ("mutation($h: String) { createPullRequest(input: {headRefName: $h}) { x } }", {}),
    ("subscription { a }", {}),
    ('mutation { addComment(input: {body: "unterminated }) { x } }', {}),
    ("mutation { addComment(input: {}) { x }", {}),
    ('mutation { mergePullRequest(input: {}) { x } } # "', {}),
    ("type Mutation { a: Int }", {}),
    ("", {}),
    ("mutation { 01 }", {}),
    ("{ a(x: " + "[" * 200 + "]" * 200 + ") }", {}),
]


@pytest.mark.parametrize(("document", "variables"), GQL_ALLOWED)
def test_graphql_allowed(document: str, variables: dict[str, object]) -> None:
    assert graphql_refusal(document, variables, BRANCH) is None
    assert decide("POST", "/graphql", body(query=document, variables=variables)) is None


@pytest.mark.parametrize(("document", "variables"), GQL_REFUSED)
def test_graphql_refused(document: str, variables: dict[str, object]) -> None:
    assert graphql_refusal(document, variables, BRANCH) is not None
    assert decide("POST", "/graphql", body(query=document, variables=variables)) is not None


def test_graphql_over_get_is_checked_too() -> None:
    assert decide("GET", "/graphql", None, query="query=%7B+viewer+%7B+login+%7D+%7D") is None
    bad = "query=mutation+%7B+mergePullRequest%28input%3A%7B%7D%29+%7B+x+%7D+%7D"
    assert decide("GET", "/graphql", None, query=bad) is not None


def test_graphql_request_shape() -> None:
    ok = "{ a }"
    assert decide("POST", "/graphql", body(query=ok, operationName="x")) is None
    assert decide("POST", "/graphql", body(query=ok, variables=[])) is not None
    assert decide("POST", "/graphql", body(query=ok, extensions={})) is not None
    assert decide("POST", "/graphql", body(query=ok), query="a=b") is not None
    assert decide("POST", "/graphql", body(query=ok).replace(b"{", b"\xff{", 1)) is not None


def test_the_allowlist_has_no_ref_mutation() -> None:
    for name in MUTATIONS:
        assert not any(word in name for word in ("Ref", "merge", "Merge", "Branch", "Repository"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bodies_never_crash_and_fail_closed(data: bytes) -> None:
    assert decide("POST", "/repos/o/r/pulls", data) is not None or b"head" in data
    assert decide("PUT", "/repos/o/r/contents/x", data) is not None or b"branch" in data
    assert decide("POST", "/graphql", data) is not None or b"query" in data


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='mutation{}()[]:$@#."\\ \nabcfgrM!=,', max_size=200))
def test_random_documents_never_crash(document: str) -> None:
    reason = graphql_refusal(document, {}, BRANCH)
    assert reason is None or isinstance(reason, str)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "GET"]),
    st.lists(
        st.sampled_from(
            [
                "repos",
                "o",
                "r",
                "git",
                "refs",
                "heads",
                "pulls",
                "1",
                "merge",
                "contents",
                "..",
                "%2F",
                "",
                "graphql",
                "issues",
            ]
        ),
        max_size=8,
    ),
    st.binary(max_size=64),
)
def test_random_requests_never_crash(method: str, segments: list[str], data: bytes) -> None:
    refusal(method, "/" + "/".join(segments), "", data, BRANCH)
