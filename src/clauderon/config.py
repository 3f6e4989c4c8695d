"""`~/.clauderon/config.toml`: the daemon's settings (read at start, checked strictly).

All Docker settings are CLI flags; this file shapes the credential proxy and says where
GitHub's API is (for `clauderon pr`):

    [proxy]
    port = 18100                  # where the forwarder listens in each container (loopback)
    allow = ["internal.example.com", "*.corp.example", "git.corp.example:2222"]  # + defaults
                                      # (a host is reachable on 80/443; host:port for others)
    # allowlist = [...]           # replaces the default allowlist instead

    [proxy.rules."api.example.com"]   # inject a credential for another host
    credential = "example_token"      # ~/.clauderon/secrets/example_token or $EXAMPLE_TOKEN
    header = "Authorization"
    format = "Bearer {}"
    env = "EXAMPLE_TOKEN"             # the placeholder variable the container gets

    [proxy.upstreams]                 # send a host's traffic to another base URL
    "api.anthropic.com" = "https://gateway.corp.example/anthropic"

    [github]
    api_url = "https://github.corp.example/api/v3"   # default: from the remote's host
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ClauderonError

DEFAULT_PROXY_PORT = 18100
_HOST_RE = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigError(ClauderonError):
    code = "config_error"
    status = 500


def check_host_pattern(host: str) -> str:
    host = host.strip().lower()
    if not _HOST_RE.fullmatch(host):
        raise ValueError(f"{host!r} is not a host name or *.domain pattern")
    return host


def check_allow_entry(entry: str) -> str:
    """A host pattern, reachable on ports 80 and 443, or `pattern:port` for another port."""
    host, sep, port = entry.strip().rpartition(":")
    if sep:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
        return f"{check_host_pattern(host)}:{int(port)}"
    return check_host_pattern(entry)


class RuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential: str
    header: str = "Authorization"
    format: str = "Bearer {}"
    env: str | None = None

    @field_validator("credential")
    @classmethod
    def _credential(cls, value: str) -> str:
        if not _NAME_RE.fullmatch(value):
            raise ValueError("credential names are lowercase letters, digits and _")
        return value

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9-]+", value):
            raise ValueError(f"{value!r} is not a header name")
        return value

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value.count("{}") != 1:
            raise ValueError("format must contain {} exactly once (where the secret goes)")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value


class ProxyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    port: int = Field(default=DEFAULT_PROXY_PORT, ge=1, le=65535)
    allow: list[str] = Field(default_factory=list)
    allowlist: list[str] | None = None
    rules: dict[str, RuleConfig] = Field(default_factory=dict)
    upstreams: dict[str, str] = Field(default_factory=dict)

    @field_validator("allow", "allowlist")
    @classmethod
    def _hosts(cls, hosts: list[str] | None) -> list[str] | None:
        return None if hosts is None else [check_allow_entry(h) for h in hosts]

    @field_validator("rules")
    @classmethod
    def _rule_hosts(cls, rules: dict[str, RuleConfig]) -> dict[str, RuleConfig]:
        return {check_host_pattern(host): rule for host, rule in rules.items()}

    @field_validator("upstreams")
    @classmethod
    def _upstreams(cls, upstreams: dict[str, str]) -> dict[str, str]:
        checked = {}
        for host, url in upstreams.items():
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"upstream for {host!r} must be an http(s) URL, not {url!r}")
            if parts.query or parts.fragment:
                raise ValueError(f"upstream for {host!r} must not have a query or fragment")
            checked[check_host_pattern(host)] = url.rstrip("/")
        return checked


class GitHubConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_url: str | None = None

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"api_url must be an http(s) URL, not {url!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("api_url must not have credentials, a query or a fragment")
        return url.rstrip("/")


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    github: GitHubConfig = Field(default_factory=GitHubConfig)


def load_config(path: Path) -> Config:
    """Read config.toml; a missing file means the defaults, a bad one is an error."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return Config()
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{path}: [{where}] {message}") from None
