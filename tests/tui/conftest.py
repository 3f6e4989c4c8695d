"""The dashboard's live tests share one home, one fake model and one session (creating
sessions is what takes time); the snapshot tests need none of it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.pilot import Pilot

from tests.fakeapi import FakeModelAPI, Text
from tests.integration.conftest import (  # noqa: F401 (docker_client is a fixture)
    AGENTS_IMAGE,
    Clauderon,
    docker_client,
    init_repo,
    wait_for,
)

from .screen_text import screen_text

KEY = "sk-ant-api03-tui-test-key-0123456789abcdef"


@dataclass
class Live:
    clauderon: Clauderon
    api: FakeModelAPI
    repo: Path
    first: dict[str, Any]

    def status(self, name: str) -> str | None:
        return next(
            (s["agent_status"] for s in self.clauderon.sessions() if s["name"] == name), None
        )


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory, docker_client) -> Iterator[Live]:  # noqa: F811
    base = tmp_path_factory.mktemp("tui")
    clauderon = Clauderon(base / "home", docker_client)
    try:
        with FakeModelAPI([Text("Done.")], required_key=KEY) as api:
            clauderon.configure(
                f'[proxy.upstreams]\n"api.anthropic.com" = "{api.url}"\n', ANTHROPIC_API_KEY=KEY
            )
            repo = init_repo(base / "repo")
            first = clauderon.create(
                repo, "--image", AGENTS_IMAGE, "--name", "first", prompt="say hello"
            )
            api.wait_for(lambda r: "say hello" in json.dumps(r.json), timeout=120)
            live = Live(clauderon, api, repo, first)
            wait_for(lambda: live.status("first") == "waiting_input", 120)
            yield live
    finally:
        clauderon.cleanup()


async def until(
    pilot: Pilot, predicate: Callable[[], Any], timeout: float = 90, what: str = ""
) -> Any:
    """Let the app run until `predicate()` holds (it reads the app's state or screen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.2)
    app: App = pilot.app
    raise AssertionError(f"not seen in {timeout:.0f}s: {what}\n{screen_text(app)}")


def run(coro: Any) -> Any:
    return asyncio.run(coro)
