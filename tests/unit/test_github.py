"""github.py against the fake pulls API: create, again (the existing one), bad token."""

import asyncio

import pytest

from clauderon import github
from tests.fakegithub import FakeGitHub


def open_pull(fake: FakeGitHub, token: str = "tok-123") -> tuple[str, bool]:
    return asyncio.run(
        github.create_pull(
            fake.url,
            token,
            "acme",
            "widgets",
            head="fix-bug",
            base="main",
            title="Fix the bug",
            body="Body",
            draft=True,
        )
    )


def test_create_then_existing():
    with FakeGitHub(token="tok-123") as fake:
        url, existed = open_pull(fake)
        assert (url, existed) == ("https://github.example/acme/widgets/pull/1", False)
        assert fake.pulls[0]["draft"] is True and fake.pulls[0]["title"] == "Fix the bug"
        assert open_pull(fake) == (url, True)
        assert len(fake.pulls) == 1
        assert fake.problems == []
        posted = fake.requests[0]
        assert posted.headers["Accept"] == "application/vnd.github+json"


def test_bad_token_is_one_clear_error():
    with FakeGitHub(token="tok-123") as fake:
        with pytest.raises(github.GitHubError, match="refused the token") as info:
            open_pull(fake, token="wrong")
        assert "\n" not in info.value.message
        assert fake.pulls == []


def test_unreachable_api():
    with pytest.raises(github.GitHubError, match="cannot reach"):
        asyncio.run(
            github.create_pull(
                "http://127.0.0.1:9",
                "t",
                "a",
                "b",
                head="h",
                base="m",
                title="t",
                body="",
                draft=False,
            )
        )


def test_api_url_for():
    assert github.api_url_for("github.com", None) == "https://api.github.com"
    assert github.api_url_for("ghe.corp", None) == "https://ghe.corp/api/v3"
    assert github.api_url_for("github.com", "http://127.0.0.1:1/") == "http://127.0.0.1:1"
