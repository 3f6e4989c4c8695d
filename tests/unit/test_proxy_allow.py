"""`clauderon allow|disallow`: the live entries, their precedence and their file."""

from __future__ import annotations

import json
import stat

from clauderon.models import Egress
from clauderon.proxy.allow import LiveAllowList, change
from clauderon.proxy.policy import Policy, denial_text


def make(tmp_path, **kwargs) -> tuple[Policy, LiveAllowList]:
    live = LiveAllowList(tmp_path / "proxy-allow.json")
    return Policy(live=live, **kwargs), live


def test_session_entries_beat_global_ones_which_beat_the_defaults(tmp_path):
    policy, live = make(tmp_path)
    allowlist = Egress.ALLOWLIST
    assert not policy.egress_allows("example.org", allowlist, 443, "s1")
    live.put("example.org", "allow", "s1", "one")
    assert policy.egress_allows("example.org", allowlist, 443, "s1")
    assert not policy.egress_allows("example.org", allowlist, 443, "s2")  # its own only
    assert not policy.egress_allows("example.org", allowlist, 22, "s1")  # web ports only
    live.put("example.org", "deny", "", "")
    assert policy.egress_allows("example.org", allowlist, 443, "s1")  # the session's wins
    live.put("registry.npmjs.org", "deny", "", "")  # a default host, refused for all
    assert not policy.egress_allows("registry.npmjs.org", allowlist, 443, "s1")
    assert not policy.egress_allows("registry.npmjs.org", Egress.OPEN, 443, "s1")
    live.put("registry.npmjs.org", "allow", "s1", "one")
    assert policy.egress_allows("registry.npmjs.org", allowlist, 443, "s1")
    # A global allowance is like config.toml's `allow`: not for sessions with egress off.
    live.put("pypi.example", "allow", "", "")
    assert policy.egress_allows("pypi.example", allowlist, 443, "s2")
    assert not policy.egress_allows("pypi.example", Egress.OFF, 443, "s2")
    live.put("pypi.example", "allow", "s2", "two")
    assert policy.egress_allows("pypi.example", Egress.OFF, 443, "s2")


def test_a_refusal_wins_within_a_scope(tmp_path):
    policy, live = make(tmp_path)
    live.put("*.example.org", "allow", "s", "s")
    live.put("bad.example.org", "deny", "s", "s")
    assert policy.egress_allows("good.example.org", Egress.ALLOWLIST, 443, "s")
    assert not policy.egress_allows("bad.example.org", Egress.ALLOWLIST, 443, "s")


def test_allow_and_disallow_record_only_what_changes_something(tmp_path):
    policy, live = make(tmp_path)
    assert change(policy, live, "example.org", True, "s", "one", Egress.ALLOWLIST) == "allow"
    # disallow takes it back: no entry left, refused as before
    assert change(policy, live, "example.org", False, "s", "one", Egress.ALLOWLIST) is None
    assert live.entries() == []
    assert not policy.egress_allows("example.org", Egress.ALLOWLIST, 443, "s")
    # a default host needs a refusal; allowing it again removes the refusal
    assert change(policy, live, "github.com", False, "s", "one", Egress.ALLOWLIST) == "deny"
    assert not policy.egress_allows("github.com", Egress.ALLOWLIST, 443, "s")
    assert change(policy, live, "github.com", True, "s", "one", Egress.ALLOWLIST) is None
    assert policy.egress_allows("github.com", Egress.ALLOWLIST, 443, "s")
    # for every session: a refusal is always recorded (sessions with egress open too)
    assert change(policy, live, "example.org", False) == "deny"
    assert not policy.egress_allows("example.org", Egress.OPEN, 443, "s")
    assert change(policy, live, "example.org", True) == "allow"
    assert policy.egress_allows("example.org", Egress.ALLOWLIST, 443, "s")
    assert change(policy, live, "api.github.com", True) is None  # the defaults have it
    # a port of its own
    assert change(policy, live, "example.org:8443", True, "s", "one", Egress.ALLOWLIST)
    assert policy.egress_allows("example.org", Egress.ALLOWLIST, 8443, "s")


def test_entries_persist_privately_and_forget_deleted_sessions(tmp_path):
    _policy, live = make(tmp_path)
    live.put("example.org", "allow", "s1", "one")
    live.put("example.com", "deny", "", "")
    path = tmp_path / "proxy-allow.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = LiveAllowList(path)
    assert [(e.host, e.rule, e.session_id) for e in again.entries()] == [
        ("example.org", "allow", "s1"),
        ("example.com", "deny", ""),
    ]
    again.forget_sessions(set())
    assert [e.host for e in LiveAllowList(path).entries()] == ["example.com"]


def test_a_damaged_file_starts_empty(tmp_path):
    path = tmp_path / "proxy-allow.json"
    for text in ("{", "[]", json.dumps({"entries": [{"host": 1, "rule": "x"}, {"bad": 1}]})):
        path.write_text(text)
        assert LiveAllowList(path).entries() == []


def test_the_denial_says_how_to_allow():
    text = denial_text("example.org", "fix-bug", Egress.ALLOWLIST)
    assert "clauderon allow example.org --session fix-bug" in text
    assert "for every session: clauderon allow example.org" in text
    off = denial_text("example.org", "fix-bug", Egress.OFF)
    assert "--session fix-bug" in off and "every session" not in off
