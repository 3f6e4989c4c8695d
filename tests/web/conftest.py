"""The web UI in a real headless Chromium (Debian's, driven by Playwright on that
executable) against a real daemon, a real agent session and the fake model.

One browser for the whole run, and one daemon with one session shared by the tests
(creating sessions is what takes time); each test gets its own browser context (cookies).
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakeapi import FakeModelAPI, Text
from tests.fakegithub import FakeGitHub
from tests.integration.conftest import (  # noqa: F401 (docker_client is a fixture)
    AGENTS_IMAGE,
    Clauderon,
    docker_client,
    init_repo,
    wait_for,
)

KEY = "sk-ant-api03-web-test-key-0123456789abcdef"
GITHUB_TOKEN = "ghp_fake-token-for-web-tests"
CHROMIUM = os.environ.get("CLAUDERON_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # CI runs as a normal user without user namespaces for the sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]
LINK = re.compile(r"(http://\S+/login\?token=\S+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Web:
    clauderon: Clauderon
    api: FakeModelAPI
    repo: Path
    port: int
    github: FakeGitHub

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def login_link(self) -> str:
        out = self.clauderon.run("web", "--listen", f"127.0.0.1:{self.port}").stdout
        match = LINK.search(out)
        assert match, out
        return match.group(1)

    def session(self, name: str) -> dict[str, Any] | None:
        return next((s for s in self.clauderon.sessions() if s["name"] == name), None)

    def status(self, name: str) -> str | None:
        session = self.session(name)
        return session["agent_status"] if session else None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: sudo apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="package")
def web(tmp_path_factory: pytest.TempPathFactory, docker_client) -> Iterator[Web]:  # noqa: F811
    base = tmp_path_factory.mktemp("web")
    clauderon = Clauderon(base / "home", docker_client)
    try:
        with (
            FakeModelAPI([Text("Done.")], required_key=KEY) as api,
            FakeGitHub(token=GITHUB_TOKEN) as github,
        ):
            clauderon.configure(
                f'[proxy.upstreams]\n"api.anthropic.com" = "{api.url}"\n'
                f'[github]\napi_url = "{github.url}"\n',
                ANTHROPIC_API_KEY=KEY,
                GITHUB_TOKEN=GITHUB_TOKEN,
            )
            repo = init_repo(base / "repo")
            clauderon.create(repo, "--image", AGENTS_IMAGE, "--name", "first", prompt="say hello")
            api.wait_for(lambda r: "say hello" in json.dumps(r.json), timeout=120)
            web = Web(clauderon, api, repo, free_port(), github)
            wait_for(lambda: web.status("first") == "waiting_input", 120)
            yield web
    finally:
        clauderon.cleanup()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser context (its own cookies). The page must never trip its own
    Content-Security-Policy: a violation fails the test."""
    csp: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    # The page's own errors, shown with a failing test's output.
    context.on("weberror", lambda error: print("page error:", error.error))
    context.on(
        "console",
        lambda message: message.type == "error" and print("console error:", message.text),
    )
    context.on(
        "console",
        lambda message: "Content Security Policy" in message.text and csp.append(message.text),
    )
    try:
        yield context
    finally:
        context.close()
    assert not csp, csp[0]


@pytest.fixture
def page(context: Any, web: Web) -> Any:
    """A page logged in through a fresh login link, on the session list."""
    page = context.new_page()
    page.goto(web.login_link())
    page.wait_for_selector("#connection:has-text('live')")
    return page
