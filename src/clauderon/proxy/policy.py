"""What a session may reach, with which method, and which credential each host gets.

Pure decisions (no I/O), so every branch is unit-tested.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ..config import ProxyConfig
from ..models import CREDENTIAL_PLACEHOLDER, AccessMode, Egress

if TYPE_CHECKING:
    from .allow import AllowRules

MODEL_HOSTS = ("api.anthropic.com", "api.openai.com")
DEFAULT_ALLOWLIST = (
    *MODEL_HOSTS,
    # GitHub
    "github.com",
    "api.github.com",
    "codeload.github.com",
    "uploads.github.com",
    "objects.githubusercontent.com",
    "raw.githubusercontent.com",
    "*.githubusercontent.com",
    "ghcr.io",
    "pkg-containers.githubusercontent.com",
    # package registries
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    "pypi.org",
    "files.pythonhosted.org",
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    "static.rust-lang.org",
    "proxy.golang.org",
    "sum.golang.org",
    "rubygems.org",
    "repo.maven.apache.org",
    "repo1.maven.org",
    "deb.debian.org",
    "security.debian.org",
    "archive.ubuntu.com",
    "security.ubuntu.com",
    "dl-cdn.alpinelinux.org",
)
# The calls an agent needs to work; read-only mode still lets these through.
MODEL_WRITE_PATHS = {
    "api.anthropic.com": ("/v1/messages",),
    "api.openai.com": ("/v1/responses", "/v1/chat/completions"),
}
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PLACEHOLDER = CREDENTIAL_PLACEHOLDER
# Where a host pattern without a port may be reached (web traffic); `host:port` in the
# allowlist opens another port.
WEB_PORTS = (80, 443)


def host_matches(host: str, pattern: str) -> bool:
    """`example.com` matches itself; `*.example.com` matches its subdomains only."""
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def split_pattern(pattern: str) -> tuple[str, tuple[int, ...]]:
    """`host` → (host, web ports); `host:8443` → (host, (8443,))."""
    host, sep, port = pattern.rpartition(":")
    if sep and port.isdigit() and host and not host.endswith("]"):
        return host, (int(port),)
    return pattern, WEB_PORTS


def address_matches(host: str, port: int, pattern: str) -> bool:
    pattern_host, ports = split_pattern(pattern)
    return port in ports and host_matches(host, pattern_host)


@dataclass
class SessionPolicy:
    """What the proxy knows of one session; the manager changes `access_mode` live."""

    name: str
    session_id: str
    token: str
    egress: Egress
    access_mode: AccessMode
    hook_token: str = ""
    branch: str = ""  # a git push through the proxy may update refs/heads/<branch> only


@dataclass(frozen=True)
class Rule:
    """Inject `credential` into `header` of requests to `host`."""

    host: str
    credential: str
    header: str
    format: str  # "{}" is the secret; "basic-x-access-token" is GitHub's git form
    env: tuple[str, ...] = ()  # placeholder variables the container gets
    port: int = 443  # credentials go over TLS to the service's own port only

    def render(self, secret: str) -> str:
        if self.format == "basic-x-access-token":
            return "Basic " + base64.b64encode(f"x-access-token:{secret}".encode()).decode()
        return self.format.replace("{}", secret)


DEFAULT_RULES = (
    Rule("api.anthropic.com", "anthropic_api_key", "x-api-key", "{}", ("ANTHROPIC_API_KEY",)),
    Rule(
        "api.anthropic.com",
        "claude_oauth_token",
        "Authorization",
        "Bearer {}",
        ("CLAUDE_CODE_OAUTH_TOKEN",),
    ),
    Rule(
        "api.openai.com",
        "openai_api_key",
        "Authorization",
        "Bearer {}",
        ("OPENAI_API_KEY", "CODEX_API_KEY"),
    ),
    Rule(
        "api.github.com", "github_token", "Authorization", "Bearer {}", ("GH_TOKEN", "GITHUB_TOKEN")
    ),
    Rule("github.com", "github_token", "Authorization", "basic-x-access-token"),
)
# Headers that carry a credential to the hosts above; anything but the placeholder there
# is refused.
CREDENTIAL_HEADERS = ("authorization", "x-api-key")


@dataclass
class Policy:
    """The daemon-wide part: allowlist, rules and upstreams from config.toml."""

    allowlist: tuple[str, ...] = DEFAULT_ALLOWLIST
    rules: tuple[Rule, ...] = DEFAULT_RULES
    upstreams: dict[str, str] = field(default_factory=dict)
    # `clauderon allow|disallow`, changed while the daemon runs (proxy/allow.py)
    live: AllowRules | None = None

    @classmethod
    def from_config(cls, config: ProxyConfig) -> Policy:
        allowlist = tuple(config.allowlist) if config.allowlist is not None else DEFAULT_ALLOWLIST
        extra_rules = tuple(
            Rule(host, r.credential, r.header, r.format, (r.env,) if r.env else ())
            for host, r in config.rules.items()
        )
        return cls(
            allowlist=allowlist + tuple(config.allow),
            rules=extra_rules + DEFAULT_RULES,
            upstreams=dict(config.upstreams),
        )

    def egress_allows(
        self, host: str, egress: Egress, port: int = 443, session_id: str = ""
    ) -> bool:
        """The session's live entries decide first, then those for all sessions (a
        refusal always; an allowance in allowlist mode, like config.toml's `allow`),
        then the egress mode with config.toml and the defaults."""
        live = self.live
        if live is not None:
            rule = live.rule_for(host, port, session_id) if session_id else None
            if rule is not None:
                return rule == "allow"
            rule = live.rule_for(host, port, "")
            if rule == "deny":
                return False
            if rule == "allow" and egress == Egress.ALLOWLIST:
                return True
        return self.base_allows(host, egress, port)

    def base_allows(self, host: str, egress: Egress, port: int = 443) -> bool:
        """The egress mode alone, with config.toml's lists and the defaults."""
        if egress == Egress.OPEN:
            return True
        hosts = MODEL_HOSTS if egress == Egress.OFF else self.allowlist
        return any(address_matches(host, port, pattern) for pattern in hosts)

    def rules_for(self, host: str) -> list[Rule]:
        return [rule for rule in self.rules if host_matches(host, rule.host)]

    def upstream_targets(self) -> frozenset[tuple[str, int]]:
        """The (host, port) of every upstream the user named: the proxy may connect there
        even when it is on this machine."""
        targets = set()
        for url in self.upstreams.values():
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            targets.add(((parts.hostname or "").lower(), port))
        return frozenset(targets)

    def upstream_for(self, host: str) -> str | None:
        for pattern, url in self.upstreams.items():
            if host_matches(host, pattern):
                return url
        return None

    def credential_names(self) -> list[str]:
        return list(dict.fromkeys(rule.credential for rule in self.rules))


_SEGMENT_OK = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@-]*")


def normalise_path(path: str) -> str | None:
    """The route a server will see, or None when servers could disagree about it.

    Percent-encoded unreserved characters are decoded; dot segments (`..`, `%2e%2e`),
    encoded slashes or backslashes, empty segments, control characters and double
    encoding are ambiguous (a server, a gateway or a framework may each resolve them
    differently), so the caller refuses them rather than guess."""
    route = path.split("?", 1)[0].split("#", 1)[0]
    if not route.startswith("/"):
        return None
    segments = route.split("/")[1:]
    clean = []
    for i, segment in enumerate(segments):
        if "%" in segment:
            try:
                decoded = unquote(segment, errors="strict")
            except UnicodeDecodeError:
                return None
            if "%" in decoded or "/" in decoded or "\\" in decoded:
                return None
            segment = decoded
        if not _SEGMENT_OK.fullmatch(segment) or segment in (".", ".."):
            return None
        if segment == "" and i != len(segments) - 1:
            return None  # `//`: some servers merge it, some do not
        clean.append(segment)
    return "/" + "/".join(clean)


def _model_route(host: str, path: str) -> bool:
    prefixes = next((p for h, p in MODEL_WRITE_PATHS.items() if host_matches(host, h)), ())
    route = normalise_path(path)
    if route is None:
        return False
    return any(route == p or route.startswith(p + "/") for p in prefixes)


def is_model_call(host: str, method: str, path: str) -> bool:
    """A request to the model API proper: while one is in flight, the agent is working."""
    return method.upper() == "POST" and _model_route(host, path)


def access_allows(mode: AccessMode, method: str, host: str, path: str) -> bool:
    """Read-only sessions may read anything and make only the model calls they need,
    decided on the normalised path (an ambiguous one is refused)."""
    if mode == AccessMode.READ_WRITE or method.upper() in READ_METHODS:
        return True
    return _model_route(host, path)


def authority_matches(host: str, port: int, authority: str | None) -> bool:
    """Whether a `Host`/`:authority` (or SNI, without port) names the destination the
    policy decided on; anything else is domain fronting."""
    if authority is None:
        return True  # HTTP/1.0 without Host: the destination is the request line's
    value = authority.strip().lower().rstrip(".")
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        given_port = rest[1:] if rest.startswith(":") else ""
    else:
        name, sep, given_port = value.rpartition(":")
        if not sep or not given_port.isdigit():
            name, given_port = value, ""
    if given_port and (not given_port.isdigit() or int(given_port) != port):
        return False
    return name == host.lower().rstrip(".")


def address_forbidden(address: str, local: Iterable[str] = ()) -> bool:
    """Addresses the proxy never connects to for a session: this machine (loopback, its
    own interface addresses, where the daemon listens), link-local (cloud metadata),
    unspecified, multicast."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True  # not an address: nothing to connect to
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_multicast
        or ip in ipaddress.ip_network("0.0.0.0/8")
    ):
        return True
    return str(ip) in set(local)


def secret_forms(secrets: Iterable[str], rules: Iterable[Rule]) -> list[bytes]:
    """Every form in which a real secret could come back: the value itself and each header
    value a rule renders from it (GitHub's base64 `x-access-token:` form…), longest first."""
    forms: set[str] = set()
    rules = list(rules)
    for secret in secrets:
        if len(secret) < 8:
            continue  # too short to scrub without mangling ordinary text
        forms.add(secret)
        for rule in rules:
            rendered = rule.render(secret)
            forms.add(rendered)
            scheme, _, token = rendered.partition(" ")
            if token and scheme.lower() == "basic":
                forms.add(token)
    return sorted((f.encode() for f in forms), key=len, reverse=True)


def masked(form: bytes) -> bytes:
    """The placeholder in a secret's place, at the secret's length (so Content-Length and
    every other framing of the response stay true)."""
    return (PLACEHOLDER.encode() + b"*" * len(form))[: len(form)]


class SecretScrubber:
    """Replaces real secrets with the placeholder in a stream of chunks. Only a tail that
    could be the start of a secret is held back until the next chunk (or the end), so
    server-sent events are not delayed."""

    def __init__(self, forms: list[bytes]):
        self.forms = forms
        self.keep = max((len(f) for f in forms), default=1) - 1
        self.pending = b""

    def scrub(self, data: bytes) -> bytes:
        for form in self.forms:
            if form in data:
                data = data.replace(form, masked(form))
        return data

    def _held(self, data: bytes) -> int:
        for size in range(min(self.keep, len(data)), 0, -1):
            tail = data[-size:]
            if any(form.startswith(tail) for form in self.forms):
                return size
        return 0

    def __call__(self, chunk: bytes) -> bytes:
        if not self.forms:
            return chunk
        if not chunk:  # the end of the stream: flush what was held back
            rest, self.pending = self.scrub(self.pending), b""
            return rest
        data = self.scrub(self.pending + chunk)
        cut = len(data) - self._held(data)
        self.pending = data[cut:]
        return data[:cut]


def carries_placeholder(value: str) -> bool:
    """Whether a credential header holds only the container's placeholder."""
    if PLACEHOLDER in value:
        return True
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "basic":
        try:
            return PLACEHOLDER in base64.b64decode(rest.strip(), validate=True).decode()
        except ValueError:
            return False
    return False


def denial_text(host: str, session: str, egress: Egress) -> str:
    """What a refused client reads: which host, and the command that allows it (live)."""
    everyone = "" if egress == Egress.OFF else f", or for every session: clauderon allow {host}"
    return (
        f"clauderon: egress to {host} is denied for session {session} (egress: {egress}).\n"
        f"To allow it, run on the host: clauderon allow {host} --session {session}"
        f"{everyone}\n(it applies at once; `clauderon allow --list` shows what is allowed).\n"
    )
