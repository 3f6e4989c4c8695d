"""What a session may reach, with which method, and which credential each host gets.

Pure decisions (no I/O), so every branch is unit-tested.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from ..config import ProxyConfig
from ..models import CREDENTIAL_PLACEHOLDER, AccessMode, Egress

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


def host_matches(host: str, pattern: str) -> bool:
    """`example.com` matches itself; `*.example.com` matches its subdomains only."""
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


@dataclass
class SessionPolicy:
    """What the proxy knows of one session; the manager changes `access_mode` live."""

    name: str
    session_id: str
    token: str
    egress: Egress
    access_mode: AccessMode
    hook_token: str = ""


@dataclass(frozen=True)
class Rule:
    """Inject `credential` into `header` of requests to `host`."""

    host: str
    credential: str
    header: str
    format: str  # "{}" is the secret; "basic-x-access-token" is GitHub's git form
    env: tuple[str, ...] = ()  # placeholder variables the container gets

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

    def egress_allows(self, host: str, egress: Egress) -> bool:
        if egress == Egress.OPEN:
            return True
        hosts = MODEL_HOSTS if egress == Egress.OFF else self.allowlist
        return any(host_matches(host, pattern) for pattern in hosts)

    def rules_for(self, host: str) -> list[Rule]:
        return [rule for rule in self.rules if host_matches(host, rule.host)]

    def upstream_for(self, host: str) -> str | None:
        for pattern, url in self.upstreams.items():
            if host_matches(host, pattern):
                return url
        return None

    def credential_names(self) -> list[str]:
        return list(dict.fromkeys(rule.credential for rule in self.rules))


def is_model_call(host: str, method: str, path: str) -> bool:
    """A request to the model API proper: while one is in flight, the agent is working."""
    if method.upper() != "POST":
        return False
    prefixes = next((p for h, p in MODEL_WRITE_PATHS.items() if host_matches(host, h)), ())
    route = path.split("?", 1)[0]
    return any(route == p or route.startswith(p + "/") for p in prefixes)


def access_allows(mode: AccessMode, method: str, host: str, path: str) -> bool:
    """Read-only sessions may read anything and make only the model calls they need."""
    if mode == AccessMode.READ_WRITE or method.upper() in READ_METHODS:
        return True
    prefixes = next((p for h, p in MODEL_WRITE_PATHS.items() if host_matches(host, h)), ())
    route = path.split("?", 1)[0]
    return any(route == p or route.startswith(p + "/") for p in prefixes)


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
    return (
        f"clauderon: egress to {host} is denied for session {session} (egress: {egress}). "
        f'To allow it, add "{host}" to allow = [...] under [proxy] in ~/.clauderon/config.toml '
        "and restart the daemon, or create the session with --egress open.\n"
    )
