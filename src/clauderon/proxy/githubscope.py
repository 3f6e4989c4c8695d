"""GitHub API scoping: with the injected token, a session may change only its own branch.

`git push` is scoped by pushscope.py; this closes the other door, api.github.com. Reads
(GET/HEAD/OPTIONS) pass. A write passes only when it is on `WRITES`, endpoints that cannot
move a ref or change the repository's settings: issues, comments, reactions, labels,
pull requests and their reviews, git objects (blobs, trees, commits: they move no ref),
and — checked against the request's JSON body — a pull request whose head is the session's
branch, `refs/heads/<branch>` created or moved through git/refs, and a contents-API commit
that names the session's branch (without `branch` GitHub commits to the default branch).
Everything else that writes is refused: merges, update-branch, releases, tags, deletions,
renames, the repository's settings, actions, hooks, keys, collaborators...

GraphQL (`POST /graphql`) is read by a small tokenizer and parser (comments, aliases,
fragments, block strings): queries pass; a mutation passes only when each of its top-level
fields is on `MUTATIONS` (createPullRequest only with headRefName = the branch, read from
the document or its variables). A document that cannot be read with confidence is refused.
Pure code (no I/O), so each case is unit-tested; everything unreadable fails closed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from .policy import READ_METHODS, host_matches, normalise_path

API_HOST = "api.github.com"
MAX_BODY = 1024 * 1024  # a write's body is read whole, up to this; larger ones are refused
MAX_TOKENS = 50_000
MAX_DEPTH = 64
DOCUMENTATION_URL = "https://docs.github.com/rest"  # the field GitHub's errors carry
# Headers some frameworks read as the real method: a GET could be run as a DELETE.
METHOD_OVERRIDES = ("x-http-method-override", "x-http-method", "x-method-override")


class Refused(ValueError):
    """Why a request to GitHub's API is refused."""


def is_github_api(host: str) -> bool:
    return host_matches(host, API_HOST)


def is_write(method: str) -> bool:
    return method.upper() not in READ_METHODS


# --- REST ---------------------------------------------------------------------------

Check = Callable[[dict[str, Any], list[str], str], None]


def _json_object(body: bytes) -> dict[str, Any]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                raise Refused(f"the JSON body names {key!r} twice")
            result[key] = value
        return result

    try:
        value = json.loads(body.decode("utf-8"), object_pairs_hook=pairs)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, Refused):
            raise
        raise Refused("the JSON body cannot be read") from None
    if not isinstance(value, dict):
        raise Refused("the body is not a JSON object")
    return value


def _head_is(head: object, branch: str) -> bool:
    """`branch` or `owner:branch` (a fork's branch of the same name)."""
    if not isinstance(head, str) or not branch:
        return False
    owner, colon, name = head.rpartition(":")
    return name == branch and (not colon or (bool(owner) and ":" not in owner))


def _check_pull_create(body: dict[str, Any], rest: list[str], branch: str) -> None:
    if not _head_is(body.get("head"), branch):
        raise Refused(f"a pull request's head must be {branch!r}")


def _check_ref_create(body: dict[str, Any], rest: list[str], branch: str) -> None:
    if not branch or body.get("ref") != f"refs/heads/{branch}":
        raise Refused("only refs/heads/<branch> may be created")


def _check_ref_update(body: dict[str, Any], rest: list[str], branch: str) -> None:
    if not branch or "/".join(rest) != f"heads/{branch}":
        raise Refused("only refs/heads/<branch> may be moved")


def _check_contents(body: dict[str, Any], rest: list[str], branch: str) -> None:
    if not branch or body.get("branch") != branch:
        raise Refused(f'a contents-API commit must name "branch": {branch!r}')


@dataclass(frozen=True)
class Route:
    method: str
    pattern: tuple[str, ...]  # "*" one segment, "**" the rest (one or more)
    check: Check | None = None


def _repo(method: str, pattern: str, check: Check | None = None) -> Route:
    return Route(method, ("repos", "*", "*", *pattern.split("/")), check)


WRITES: tuple[Route, ...] = (
    _repo("POST", "issues"),
    _repo("PATCH", "issues/*"),
    _repo("POST", "issues/*/comments"),
    _repo("PATCH", "issues/comments/*"),
    _repo("DELETE", "issues/comments/*"),
    _repo("POST", "issues/*/labels"),
    _repo("PUT", "issues/*/labels"),
    _repo("DELETE", "issues/*/labels"),
    _repo("DELETE", "issues/*/labels/*"),
    _repo("POST", "issues/*/assignees"),
    _repo("DELETE", "issues/*/assignees"),
    _repo("POST", "issues/*/reactions"),
    _repo("DELETE", "issues/*/reactions/*"),
    _repo("POST", "issues/comments/*/reactions"),
    _repo("DELETE", "issues/comments/*/reactions/*"),
    _repo("POST", "pulls", _check_pull_create),
    _repo("PATCH", "pulls/*"),
    _repo("POST", "pulls/*/reviews"),
    _repo("PUT", "pulls/*/reviews/*"),
    _repo("DELETE", "pulls/*/reviews/*"),
    _repo("POST", "pulls/*/reviews/*/events"),
    _repo("POST", "pulls/*/comments"),
    _repo("POST", "pulls/*/comments/*/replies"),
    _repo("PATCH", "pulls/comments/*"),
    _repo("DELETE", "pulls/comments/*"),
    _repo("POST", "pulls/comments/*/reactions"),
    _repo("DELETE", "pulls/comments/*/reactions/*"),
    _repo("POST", "pulls/*/requested_reviewers"),
    _repo("DELETE", "pulls/*/requested_reviewers"),
    _repo("POST", "git/blobs"),
    _repo("POST", "git/trees"),
    _repo("POST", "git/commits"),
    _repo("POST", "git/refs", _check_ref_create),
    _repo("PATCH", "git/refs/**", _check_ref_update),
    _repo("PUT", "contents/**", _check_contents),
    _repo("DELETE", "contents/**", _check_contents),
    Route("POST", ("markdown",)),
    Route("POST", ("markdown", "raw")),
)
BODY_CHECKED = {"branch", "head", "ref"}


def _match(route: Route, method: str, segments: list[str]) -> list[str] | None:
    """The segments `**` took (empty when none), or None when the route does not match."""
    if route.method != method:
        return None
    pattern = route.pattern
    if pattern and pattern[-1] == "**":
        fixed = pattern[:-1]
        if len(segments) <= len(fixed):
            return None
    elif len(segments) != len(pattern):
        return None
    for want, got in zip(pattern, segments, strict=False):
        if want == "**":
            break
        if want != "*" and want != got:
            return None
    return segments[len(pattern) - 1 :] if pattern[-1] == "**" else []


def needs_body(method: str, path: str) -> bool:
    """Whether the decision on this request needs its body (GraphQL, and the writes whose
    JSON names the ref they change)."""
    method = method.upper()
    if not is_write(method):
        return False
    route = normalise_path(path)
    if route is None:
        return False
    segments = route.split("/")[1:]
    if segments == ["graphql"]:
        return True
    for candidate in WRITES:
        if _match(candidate, method, segments) is not None:
            return candidate.check is not None
    return False


def refusal(
    method: str,
    path: str,
    query: str,
    body: bytes | None,
    branch: str,
    header_names: Iterable[str] = (),
) -> str | None:
    """Why this request to api.github.com is refused, or None when it may go. `path`
    without its query; `body` is the whole body (None: not read, refused for a write
    that needs it); `header_names` lower-case."""
    try:
        _decide(method.upper(), path, query, body, branch, {h.lower() for h in header_names})
    except Refused as exc:
        return str(exc)
    return None


def _decide(
    method: str, path: str, query: str, body: bytes | None, branch: str, headers: set[str]
) -> None:
    if headers & set(METHOD_OVERRIDES):
        raise Refused("a method-override header is refused")
    try:
        params = parse_qs(query, keep_blank_values=True, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise Refused("the query string cannot be read") from None
    if "_method" in params:
        raise Refused("a method override in the query is refused")
    route = normalise_path(path)
    if route is None:
        if not is_write(method):
            return
        raise Refused("the path is ambiguous")
    segments = route.split("/")[1:]
    if segments == ["graphql"]:
        if not is_write(method):
            if "query" in params:
                for document in params["query"]:
                    graphql_refusal_raise(document, {}, branch)
            return
        if method != "POST":
            raise Refused(f"{method} /graphql is not a GraphQL request")
        if query:
            raise Refused("a GraphQL request with a query string is refused")
        _check_graphql_body(body, branch)
        return
    if not is_write(method):
        return
    if any(not s for s in segments):
        raise Refused("the path has an empty segment")
    for candidate in WRITES:
        rest = _match(candidate, method, segments)
        if rest is None:
            continue
        if candidate.check is not None:
            if BODY_CHECKED & params.keys():
                raise Refused("parameters in the query string are refused here")
            if body is None:
                raise Refused("the body was not read")
            candidate.check(_json_object(body) if body.strip() else {}, rest, branch)
        return
    raise Refused(f"{method} {route} can change refs or settings")


# --- GraphQL ------------------------------------------------------------------------

MUTATIONS = frozenset(
    {
        "addComment",
        "updateIssueComment",
        "deleteIssueComment",
        "createIssue",
        "updateIssue",
        "closeIssue",
        "reopenIssue",
        "addLabelsToLabelable",
        "removeLabelsFromLabelable",
        "addAssigneesToAssignable",
        "removeAssigneesFromAssignable",
        "addReaction",
        "removeReaction",
        "createPullRequest",
        "updatePullRequest",
        "closePullRequest",
        "reopenPullRequest",
        "markPullRequestReadyForReview",
        "convertPullRequestToDraft",
        "requestReviews",
        "addPullRequestReview",
        "submitPullRequestReview",
        "updatePullRequestReview",
        "deletePullRequestReview",
        "addPullRequestReviewComment",
        "addPullRequestReviewThread",
        "addPullRequestReviewThreadReply",
        "updatePullRequestReviewComment",
        "deletePullRequestReviewComment",
        "resolveReviewThread",
        "unresolveReviewThread",
        "__typename",
    }
)

_TOKEN = re.compile(
    r"""
    (?P<ignored>[\ufeff \t\r\n,]+|\#[^\r\n]*)
  | (?P<spread>\.\.\.)
  | (?P<punct>[!$&()\:=@\[\]{|}])
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<block>\"\"\"(?:\\\"\"\"|(?!\"\"\")[\s\S])*\"\"\")
  | (?P<string>"(?:[^"\\\r\n]|\\(?:["\\/bfnrt]|u[0-9A-Fa-f]{4}))*")
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # spread, punct, name, number, block, string
    text: str


def tokenize(document: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(document):
        match = _TOKEN.match(document, pos)
        if match is None:
            raise Refused(f"the GraphQL document cannot be read at offset {pos}")
        kind = match.lastgroup or ""
        end = match.end()
        if kind == "number" and end < len(document) and re.match(r"[_0-9A-Za-z.]", document[end]):
            raise Refused("the GraphQL document has a malformed number")
        if kind != "ignored":
            tokens.append(Token(kind, match.group()))
            if len(tokens) > MAX_TOKENS:
                raise Refused("the GraphQL document is too long")
        pos = end
    return tokens


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass(frozen=True)
class Enum:
    name: str


@dataclass
class Field:
    name: str
    arguments: dict[str, Any]


@dataclass
class Operation:
    kind: str  # query, mutation, subscription
    defaults: dict[str, Any] = field(default_factory=dict)
    fields: list[Field] = field(default_factory=list)
    spreads: bool = False  # a fragment at the top level


def _unescape(token: Token) -> str:
    if token.kind == "block":
        return token.text[3:-3].replace('\\"""', '"""')
    try:
        value = json.loads(token.text)
    except ValueError:
        raise Refused("a GraphQL string cannot be read") from None
    if not isinstance(value, str):
        raise Refused("a GraphQL string cannot be read")
    return value


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.pos = 0

    def peek(self, offset: int = 0) -> Token | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise Refused("the GraphQL document ends early")
        self.pos += 1
        return token

    def at(self, text: str) -> bool:
        token = self.peek()
        return token is not None and token.kind in ("punct", "spread") and token.text == text

    def expect(self, text: str) -> None:
        token = self.next()
        if token.kind not in ("punct", "spread") or token.text != text:
            raise Refused(f"the GraphQL document has {token.text!r} where {text!r} belongs")

    def name(self) -> str:
        token = self.next()
        if token.kind != "name":
            raise Refused(f"the GraphQL document has {token.text!r} where a name belongs")
        return token.text

    def document(self) -> list[Operation]:
        operations: list[Operation] = []
        if not self.tokens:
            raise Refused("the GraphQL document is empty")
        while self.peek() is not None:
            token = self.peek()
            assert token is not None
            if self.at("{"):
                operation = Operation("query")
                self.selection_set(operation, 0)
                operations.append(operation)
            elif token.kind == "name" and token.text in ("query", "mutation", "subscription"):
                operations.append(self.operation())
            elif token.kind == "name" and token.text == "fragment":
                self.next()
                self.name()
                if self.name() != "on":
                    raise Refused("a GraphQL fragment without `on`")
                self.name()
                self.directives(0)
                self.selection_set(None, 1)
            else:
                raise Refused(f"the GraphQL document has {token.text!r} at the top level")
        return operations

    def operation(self) -> Operation:
        operation = Operation(self.name())
        token = self.peek()
        if token is not None and token.kind == "name":
            self.next()
        if self.at("("):
            self.next()
            while not self.at(")"):
                self.expect("$")
                variable = self.name()
                self.expect(":")
                self.type(0)
                if self.at("="):
                    self.next()
                    if variable in operation.defaults:
                        raise Refused("a GraphQL variable is defined twice")
                    operation.defaults[variable] = self.value(0)
                self.directives(0)
            self.next()
        self.directives(0)
        self.selection_set(operation, 0)
        return operation

    def type(self, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise Refused("the GraphQL document is nested too deep")
        if self.at("["):
            self.next()
            self.type(depth + 1)
            self.expect("]")
        else:
            self.name()
        if self.at("!"):
            self.next()

    def directives(self, depth: int) -> None:
        while self.at("@"):
            self.next()
            self.name()
            if self.at("("):
                self.arguments(depth)

    def arguments(self, depth: int) -> dict[str, Any]:
        self.expect("(")
        arguments: dict[str, Any] = {}
        while not self.at(")"):
            name = self.name()
            self.expect(":")
            if name in arguments:
                raise Refused(f"the GraphQL argument {name} is given twice")
            arguments[name] = self.value(depth + 1)
        self.next()
        if not arguments:
            raise Refused("empty GraphQL arguments")
        return arguments

    def selection_set(self, operation: Operation | None, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise Refused("the GraphQL document is nested too deep")
        self.expect("{")
        if self.at("}"):
            raise Refused("an empty GraphQL selection set")
        while not self.at("}"):
            if self.at("..."):
                self.next()
                if operation is not None:
                    operation.spreads = True
                token = self.peek()
                if token is not None and token.kind == "name" and token.text != "on":
                    self.name()
                    self.directives(depth)
                    continue
                if token is not None and token.kind == "name":
                    self.next()
                    self.name()
                self.directives(depth)
                self.selection_set(None, depth + 1)
                continue
            name = self.name()
            if self.at(":"):
                self.next()
                name = self.name()
            arguments = self.arguments(depth) if self.at("(") else {}
            self.directives(depth)
            if operation is not None:
                operation.fields.append(Field(name, arguments))
            if self.at("{"):
                self.selection_set(None, depth + 1)
        self.next()

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise Refused("the GraphQL document is nested too deep")
        token = self.next()
        if token.kind in ("string", "block"):
            return _unescape(token)
        if token.kind == "number":
            return float(token.text)
        if token.kind == "name":
            return {"true": True, "false": False, "null": None}.get(token.text, Enum(token.text))
        if token.text == "$":
            return Variable(self.name())
        if token.text == "[":
            items = []
            while not self.at("]"):
                items.append(self.value(depth + 1))
            self.next()
            return items
        if token.text == "{":
            fields: dict[str, Any] = {}
            while not self.at("}"):
                name = self.name()
                self.expect(":")
                if name in fields:
                    raise Refused(f"the GraphQL input field {name} is given twice")
                fields[name] = self.value(depth + 1)
            self.next()
            return fields
        raise Refused(f"the GraphQL document has {token.text!r} where a value belongs")


def parse(document: str) -> list[Operation]:
    return _Parser(tokenize(document)).document()


def _resolve(value: Any, variables: dict[str, Any], defaults: dict[str, Any]) -> Any:
    if isinstance(value, Variable):
        if value.name in variables:
            return variables[value.name]
        return defaults.get(value.name)
    return value


def _check_mutation(operation: Operation, variables: dict[str, Any], branch: str) -> None:
    if operation.spreads:
        raise Refused("a fragment at a mutation's top level is refused")
    for item in operation.fields:
        if item.name not in MUTATIONS:
            raise Refused(f"the GraphQL mutation {item.name} can change refs or settings")
        if item.name == "createPullRequest":
            given = _resolve(item.arguments.get("input"), variables, operation.defaults)
            head = _resolve(
                given.get("headRefName") if isinstance(given, dict) else None,
                variables,
                operation.defaults,
            )
            if not _head_is(head, branch):
                raise Refused(f"createPullRequest's headRefName must be {branch!r}")


def graphql_refusal_raise(document: str, variables: dict[str, Any], branch: str) -> None:
    for operation in parse(document):
        if operation.kind == "mutation":
            _check_mutation(operation, variables, branch)
        elif operation.kind != "query":
            raise Refused(f"a GraphQL {operation.kind} is refused")


def graphql_refusal(document: str, variables: dict[str, Any], branch: str) -> str | None:
    """Why this GraphQL document is refused, or None. Every operation in it is checked,
    whichever `operationName` picks."""
    try:
        graphql_refusal_raise(document, variables, branch)
    except Refused as exc:
        return str(exc)
    return None


def _check_graphql_body(body: bytes | None, branch: str) -> None:
    if body is None:
        raise Refused("the body was not read")
    request = _json_object(body)
    document = request.get("query")
    variables = request.get("variables")
    if not isinstance(document, str):
        raise Refused("a GraphQL request without a query")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise Refused("GraphQL variables that are not an object")
    if not set(request) <= {"query", "variables", "operationName"}:
        raise Refused("a GraphQL request with unknown members")
    graphql_refusal_raise(document, variables, branch)


def message(session: str, branch: str, method: str, path: str, reason: str) -> bytes:
    """GitHub's error shape, so `gh` and agents show the reason."""
    text = (
        f"clauderon: session {session} may change only refs/heads/{branch} through "
        f"GitHub's API; {method} {path} is refused ({reason}). Merges, releases, tags, "
        "other branches and the repository's settings are for the host."
    )
    return json.dumps({"message": text, "documentation_url": DOCUMENTATION_URL}).encode()
