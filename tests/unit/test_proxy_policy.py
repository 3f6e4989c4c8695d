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
    SecretScrubber,
    access_allows,
    address_forbidden,
    authority_matches,
    carries_placeholder,
    host_matches,
    is_model_call,
    masked,
    normalise_path,
    secret_forms,
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
    assert log.flush()  # lines are written by the log's own thread
    assert (tmp_path / "audit.jsonl.1").exists() and (tmp_path / "audit.jsonl.2").exists()
    assert not (tmp_path / "audit.jsonl.3").exists()
    recent = log.read("s1", limit=3)
    assert [e["n"] for e in recent] == [95, 97, 99]
    assert oct(os.stat(tmp_path / "audit.jsonl").st_mode & 0o777) == "0o600"


# --- findings of the security test (issue 9) ----------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/messages/../files"),
        ("DELETE", "/v1/messages/%2e%2e/files/file_123"),
        ("DELETE", "/v1/messages/%2E%2E/files/file_123"),
        ("POST", "/v1/messages/./../files"),
        ("POST", "/v1/messages/%2f..%2ffiles"),
        ("POST", "/v1/messages/..%5cfiles"),
        ("POST", "/v1/messages/%252e%252e/files"),
        ("POST", "/v1/messages//../files"),
        ("POST", "/v1/messages\\..\\files"),
        ("POST", "/v1/messages/%ff/x"),
        ("POST", "v1/messages"),
    ],
)
def test_read_only_refuses_ambiguous_paths(method, path):
    assert not access_allows(AccessMode.READ_ONLY, method, "api.anthropic.com", path)
    assert not is_model_call("api.anthropic.com", method, path)


def test_paths_are_decided_normalised():
    assert normalise_path("/v1/%6Dessages?x=/../y") == "/v1/messages"
    assert normalise_path("/v1/messages/") == "/v1/messages/"
    assert normalise_path("/v1/a%2Fb") is None
    assert access_allows(AccessMode.READ_ONLY, "POST", "api.anthropic.com", "/v1/%6Dessages")
    assert access_allows(AccessMode.READ_ONLY, "GET", "api.anthropic.com", "/v1/../files")


@given(st.text(alphabet="/.%2eEfF5cC", max_size=30))
def test_a_normalised_path_never_holds_a_dot_segment(path):
    route = normalise_path("/" + path)
    if route is not None:
        assert ".." not in route.split("/") and "." not in route.split("/")


@pytest.mark.parametrize(
    ("host", "port", "authority", "match"),
    [
        ("api.openai.com", 443, "api.openai.com", True),
        ("api.openai.com", 443, "API.OpenAI.com.", True),
        ("api.openai.com", 443, "api.openai.com:443", True),
        ("api.openai.com", 443, None, True),
        ("api.openai.com", 443, "attacker.example", False),
        ("api.openai.com", 443, "api.openai.com:8443", False),
        ("api.openai.com", 443, "api.openai.com.attacker.example", False),
        ("::1", 80, "[::1]:80", True),
        ("api.openai.com", 443, "", False),
    ],
)
def test_the_name_sent_upstream_must_be_the_destination(host, port, authority, match):
    assert authority_matches(host, port, authority) is match


def test_ports_count_for_egress_and_config():
    policy = Policy(allowlist=("github.com", "internal.example:8443"))
    assert policy.egress_allows("github.com", Egress.ALLOWLIST, 443)
    assert policy.egress_allows("github.com", Egress.ALLOWLIST, 80)
    assert not policy.egress_allows("github.com", Egress.ALLOWLIST, 22)
    assert policy.egress_allows("internal.example", Egress.ALLOWLIST, 8443)
    assert not policy.egress_allows("internal.example", Egress.ALLOWLIST, 443)
    assert all(rule.port == 443 for rule in Policy().rules)


def test_allow_entries_take_a_port(tmp_path):
    (tmp_path / "config.toml").write_text('[proxy]\nallow = ["Git.Example:2222"]\n')
    assert load_config(tmp_path / "config.toml").proxy.allow == ["git.example:2222"]
    (tmp_path / "config.toml").write_text('[proxy]\nallow = ["git.example:99999"]\n')
    with pytest.raises(ConfigError):
        load_config(tmp_path / "config.toml")


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", True),
        ("0.1.2.3", True),
        ("169.254.169.254", True),
        ("fe80::1%eth0", True),
        ("224.0.0.1", True),
        ("172.17.0.1", True),  # one of this machine's own (given below)
        ("93.184.215.14", False),
        ("10.1.2.3", False),
        ("2606:4700::1", False),
        ("not-an-address", True),
    ],
)
def test_the_proxy_never_connects_to_this_machine(address, forbidden):
    assert address_forbidden(address, {"172.17.0.1", "192.0.2.2"}) is forbidden


def test_upstream_targets_are_the_named_ones():
    policy = Policy(upstreams={"api.anthropic.com": "http://127.0.0.1:9/x", "a.b": "https://gw"})
    assert policy.upstream_targets() == {("127.0.0.1", 9), ("gw", 443)}


def test_echoed_secrets_are_replaced_in_every_form_and_chunking():
    secret = "ghp_REALSECRETnevergoesintoacontainer0123"
    forms = secret_forms([secret, "short"], Policy().rules)
    basic = base64.b64encode(f"x-access-token:{secret}".encode())
    assert secret.encode() in forms and basic in forms and b"short" not in forms
    body = b"you sent Authorization: Basic " + basic + b" and token " + secret.encode() + b"!"
    for size in (1, 3, 7, 40, len(body)):
        scrubber = SecretScrubber(forms)
        out = b"".join(scrubber(body[i : i + size]) for i in range(0, len(body), size))
        out += scrubber(b"")
        assert secret.encode() not in out and basic not in out
        assert out.count(PLACEHOLDER.encode()) == 2
        assert out.startswith(b"you sent Authorization: " + PLACEHOLDER.encode())
        assert len(out) == len(body) and out.endswith(b"!")  # Content-Length stays true


def test_a_scrubbed_stream_holds_back_only_a_possible_secret():
    secret = b"sk-secret-value-0123456789-abcdefghij"
    scrubber = SecretScrubber([secret])
    assert scrubber(b"data: first\n\n") == b"data: first\n\n"  # events are not delayed
    assert scrubber(b"key sk-sec") == b"key "
    assert scrubber(secret[6:] + b" done") == masked(secret) + b" done"
    assert masked(secret).startswith(PLACEHOLDER.encode()) and len(masked(secret)) == len(secret)
    assert scrubber(b"tail sk-") == b"tail "
    assert scrubber(b"") == b"sk-"


def test_the_store_lists_every_secret_it_holds(tmp_path):
    store = CredentialStore(
        tmp_path, [], environ={"ANTHROPIC_API_KEY": "sk-ant-1234567890", "GH_TOKEN": "ghp_1"}
    )
    assert set(store.secret_values()) == {"sk-ant-1234567890", "ghp_1"}
