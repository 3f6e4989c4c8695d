"""A session whose agent cannot call its model never reads as `working`."""

from __future__ import annotations

import pytest

from tests.fakeapi import FakeModelAPI, Text

from .conftest import AGENTS_IMAGE, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.agent]

KEY = "sk-ant-api03-status-reason-key-0123456789abcdef"


def listed(clauderon, name: str) -> dict:
    return next(s for s in clauderon.sessions() if s["name"] == name)


def test_no_credential_is_an_error_with_its_reason(clauderon, repo):
    # No key anywhere: Claude Code says "Not logged in" and waits for ever.
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, prompt="fix the bug")
    row = wait_for(lambda: listed(clauderon, session["name"]), 30)
    assert row["agent_status"] == "error"
    assert "no credential for api.anthropic.com" in row["agent_status_reason"]
    assert "error" in clauderon.run("list").stdout


def test_a_model_api_that_refuses_the_key_is_an_error_with_its_reason(clauderon, repo):
    with FakeModelAPI([Text("never")], required_key="sk-ant-api03-another-key") as api:
        clauderon.configure(
            f'[proxy.upstreams]\n"api.anthropic.com" = "{api.url}"\n', ANTHROPIC_API_KEY=KEY
        )
        session = clauderon.create(
            repo,
            "--image",
            AGENTS_IMAGE,
            "--env",
            "CLAUDE_CODE_MAX_RETRIES=0",
            prompt="fix the bug",
        )
        api.wait_for(lambda r: r.route.endswith("/messages"), timeout=120)
        row = wait_for(
            lambda: (r := listed(clauderon, session["name"]))["agent_status"] == "error" and r,
            60,
        )
        assert "answered 401" in row["agent_status_reason"]
