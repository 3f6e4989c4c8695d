import asyncio
import base64
import json
import os
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clauderon.config import ConfigError, load_config
from clauderon.models import AccessMode, Egress
from clauderon.proxy.addon import proxy_token
from clauderon.proxy.audit import AuditLog
from clauderon.proxy.credentials import CredentialStore, mask
from clauderon.proxy.policy import (
    PLACEHOLDER,
    Policy,
    access_allows,
    carries_placeholder,
    host_matches,
)


@pytest.mark.parametrize(
    ("host", "pattern", "match"),
    [
        ("api.github.com", "api.github.com", True),
        ("API.GitHub.com.", "api.github.com", True),
        ("evil-api.github.com", "api.github.com", False),
        ("api.github.com.evil.org", "api.github.com", False),
        ("a.githubusercontent.com", "*.githubusercontent.com", True),
        ("githubusercontent.com", "*.githubusercontent.com", False),
        ("xgithubusercontent.com", "*.githubusercontent.com", False),
    ],
)
def test_host_matching(host, pattern, match):
    assert host_matches(host, pattern) is match


def test_egress_policies():
    policy = Policy()
    assert policy.egress_allows("registry.npmjs.org", Egress.ALLOWLIST)
    assert not policy.egress_allows("example.org", Egress.ALLOWLIST)
    assert policy.egress_allows("example.org", Egress.OPEN)
    assert policy.egress_allows("api.anthropic.com", Egress.OFF)
    assert not policy.egress_allows("github.com", Egress.OFF)


def test_read_only_allows_reads_and_model_calls_only():
    ro = AccessMode.READ_ONLY
    assert access_allows(ro, "GET", "api.github.com", "/repos")
    assert not access_allows(ro, "POST", "api.github.com", "/graphql")
    assert not access_allows(ro, "DELETE", "registry.npmjs.org", "/x")
    assert access_allows(ro, "POST", "api.anthropic.com", "/v1/messages?beta=true")
    assert access_allows(ro, "POST", "api.anthropic.com", "/v1/messages/count_tokens")
    assert not access_allows(ro, "POST", "api.anthropic.com", "/v1/files")
    assert not access_allows(ro, "POST", "api.anthropic.com", "/v1/messagesx")
    assert access_allows(ro, "POST", "api.openai.com", "/v1/responses")
    assert access_allows(AccessMode.READ_WRITE, "DELETE", "api.github.com", "/x")


def test_placeholders_are_recognised_in_every_form():
    assert carries_placeholder(PLACEHOLDER)
    assert carries_placeholder(f"Bearer {PLACEHOLDER}")
    basic = base64.b64encode(f"x-access-token:{PLACEHOLDER}".encode()).decode()
    assert carries_placeholder(f"Basic {basic}")
    assert not carries_placeholder("Bearer sk-real")
    assert not carries_placeholder("Basic !!!")


@given(st.text(min_size=1).filter(lambda t: ":" not in t))
def test_proxy_token_round_trip(token):
    header = "Basic " + base64.b64encode(f"clauderon:{token}".encode()).decode()
    assert proxy_token(header) == token


@pytest.mark.parametrize(
    "header", [None, "", "Bearer x", "Basic !!", "Basic " + base64.b64encode(b"other:tok").decode()]
)
def test_proxy_token_refuses(header):
    assert proxy_token(header) is None


def test_rules_render_and_config_extends(tmp_path):
    (tmp_path / "config.toml").write_text(
        '[proxy]\nallow = ["internal.example.com"]\n'
        '[proxy.rules."api.example.com"]\ncredential = "example_token"\nenv = "EXAMPLE"\n'
        '[proxy.upstreams]\n"api.anthropic.com" = "http://127.0.0.1:9/prefix/"\n'
    )
    policy = Policy.from_config(load_config(tmp_path / "config.toml").proxy)
    assert policy.egress_allows("internal.example.com", Egress.ALLOWLIST)
    rule = policy.rules_for("api.example.com")[0]
    assert rule.render("s3cret") == "Bearer s3cret" and rule.env == ("EXAMPLE",)
    assert "example_token" in policy.credential_names()
    assert policy.upstream_for("api.anthropic.com") == "http://127.0.0.1:9/prefix"
    github = policy.rules_for("github.com")[0]
    assert base64.b64decode(github.render("t").split()[1]) == b"x-access-token:t"


def test_missing_config_is_the_default(tmp_path):
    assert load_config(tmp_path / "none.toml").proxy.port == 18100


@pytest.mark.parametrize(
    "text",
    [
        "[proxy",
        "[proxy]\nport = 'x'\n",
        '[proxy.upstreams]\n"h" = "not a url"\n',
        "[docker]\nimage = 'x'\n",
    ],
)
def test_bad_config(tmp_path, text):
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "config.toml")
    assert "config.toml" in info.value.message and "\n" not in info.value.message


def test_credentials_env_first_then_files(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "anthropic_api_key").write_text("from-file-1234567890\n")
    (secrets / "github_token").write_text("ghp_fromfile_1234567890\n")
    (secrets / "github_token").chmod(0o644)
    store = CredentialStore(secrets, [], environ={"ANTHROPIC_API_KEY": "from-env-1234567890"})
    assert store.get("anthropic_api_key").source == "env:ANTHROPIC_API_KEY"
    github = store.get("github_token")
    assert github.value == "ghp_fromfile_1234567890"
    assert "chmod 600" in github.warning
    rows = {r["name"]: r for r in store.describe()}
    assert rows["anthropic_api_key"]["masked"] == "from…7890"
    assert rows["openai_api_key"]["source"] is None
    assert mask("short") == "****"


def test_set_credential_writes_a_private_file(tmp_path):
    store = CredentialStore(tmp_path / "secrets", [], environ={})
    store.set("openai_api_key", "  sk-openai-new \n")
    path = tmp_path / "secrets" / "openai_api_key"
    assert path.read_text() == "sk-openai-new\n"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert store.get("openai_api_key").value == "sk-openai-new"


def test_oauth_refresh_is_single_flight(tmp_path):
    asyncio.run(_oauth_refresh_is_single_flight(tmp_path))


async def _oauth_refresh_is_single_flight(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "claude_oauth_token").write_text(
        json.dumps(
            {
                "claudeAiOauth": {
                    "accessToken": "old",
                    "refreshToken": "r1",
                    "expiresAt": (time.time() - 5) * 1000,
                }
            }
        )
    )
    store = CredentialStore(secrets, [], environ={})
    calls = []

    async def post(url, body):
        calls.append((url, body))
        await asyncio.sleep(0.05)
        return {"access_token": "new", "refresh_token": "r2", "expires_in": 3600}

    values = await asyncio.gather(*(store.value("claude_oauth_token", post) for _ in range(5)))
    assert values == ["new"] * 5
    assert len(calls) == 1 and calls[0][1]["refresh_token"] == "r1"
    assert "console.anthropic.com" in calls[0][0]
    saved = json.loads((secrets / "claude_oauth_token").read_text())
    assert saved["refresh_token"] == "r2"
    store.mark_rejected("claude_oauth_token")
    await store.value("claude_oauth_token", post)
    assert len(calls) == 2


def test_audit_log_rotates_and_filters(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl", max_bytes=2000, backups=2)
    for i in range(100):
        log.write({"session": f"s{i % 2}", "host": "h", "n": i})
    assert (tmp_path / "audit.jsonl.1").exists() and (tmp_path / "audit.jsonl.2").exists()
    assert not (tmp_path / "audit.jsonl.3").exists()
    recent = log.read("s1", limit=3)
    assert [e["n"] for e in recent] == [95, 97, 99]
    assert oct(os.stat(tmp_path / "audit.jsonl").st_mode & 0o777) == "0o600"
