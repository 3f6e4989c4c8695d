"""Tests of the fake model API: plain HTTP checks, then the real Claude Code and Codex CLIs."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import FakeModelAPI, Text, ToolCall
from .server import RecordedRequest, codex_config_toml

HTTP_TIMEOUT = 10
CLI_TIMEOUT = 120

CLAUDE_DEFAULT = "/tmp/npmtest/p/node_modules/.bin/claude"
CODEX_DEFAULT = (
    "/tmp/npmtest/p/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex"
)

TOOLS = [{"name": "Write", "description": "write a file", "input_schema": {"type": "object"}}]
OPENAI_TOOLS = [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]


# ------------------------------------------------------------------------------ helpers


@pytest.fixture
def api() -> Iterator[FakeModelAPI]:
    with FakeModelAPI(
        script=[ToolCall("Write", {"file_path": "/w/a.txt", "content": "a"}), Text("first")],
        codex_script=[ToolCall("exec_command", {"cmd": "true"}), Text("codex first")],
    ) as fake:
        yield fake
    assert not fake.errors, fake.errors


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A temp dir that is removed afterwards (pytest's tmp_path keeps old runs around)."""
    path = Path(tempfile.mkdtemp(prefix="fakeapi-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def call(
    api: FakeModelAPI,
    path: str,
    body: Any = None,
    *,
    method: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    req = urllib.request.Request(
        api.url + path,
        data=data,
        method=method or ("POST" if data is not None else "GET"),
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Parse an SSE body strictly: every event is exactly `event: X` + `data: JSON`."""
    text = raw.decode()
    assert text.endswith("\n\n")
    events = []
    for frame in text[:-2].split("\n\n"):
        lines = frame.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: ")
        kind, data = lines[0][len("event: ") :], json.loads(lines[1][len("data: ") :])
        assert data["type"] == kind
        events.append((kind, data))
    return events


def messages_body(tool_results: int = 0, **extra: Any) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "go"}]},
        {"role": "system", "content": "# Environment\n - cwd: /w"},  # Claude Code 2.1.3xx
    ]
    for i in range(tool_results):
        messages.append(
            {"role": "assistant", "content": [{"type": "tool_use", "id": f"t{i}", "name": "Write"}]}
        )
        messages.append(
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}"}]}
        )
    return {"model": "claude-x", "max_tokens": 100, "messages": messages, "tools": TOOLS, **extra}


def responses_body(outputs: int = 0, **extra: Any) -> dict[str, Any]:
    items: list[dict[str, Any]] = [{"type": "message", "role": "user", "content": "go"}]
    for i in range(outputs):
        items.append({"type": "function_call", "name": "exec_command", "call_id": f"c{i}"})
        items.append({"type": "function_call_output", "call_id": f"c{i}", "output": "ok"})
    return {"model": "gpt-5-codex", "input": items, "tools": OPENAI_TOOLS, **extra}


# ------------------------------------------------------------------- pure HTTP tests


def test_anthropic_json_follows_script_by_tool_results(api: FakeModelAPI) -> None:
    status, _, raw = call(api, "/v1/messages?beta=true", messages_body(0))
    assert status == 200
    msg = json.loads(raw)
    assert msg["type"] == "message" and msg["role"] == "assistant"
    assert msg["stop_reason"] == "tool_use"
    (block,) = msg["content"]
    assert block["type"] == "tool_use" and block["name"] == "Write"
    assert block["id"].startswith("toolu_01")
    assert block["input"] == {"file_path": "/w/a.txt", "content": "a"}
    assert {"input_tokens", "output_tokens", "cache_read_input_tokens"} <= msg["usage"].keys()

    msg = json.loads(call(api, "/v1/messages", messages_body(1))[2])
    assert msg["stop_reason"] == "end_turn" and msg["content"] == [
        {"type": "text", "text": "first"}
    ]

    msg = json.loads(call(api, "/v1/messages", messages_body(5))[2])
    assert msg["content"] == [{"type": "text", "text": "Done."}]

    # The same conversation again gets the same step: no hidden global counter.
    msg = json.loads(call(api, "/v1/messages", messages_body(0))[2])
    assert msg["content"][0]["type"] == "tool_use"


def test_tool_use_ids_are_unique(api: FakeModelAPI) -> None:
    ids = {
        json.loads(call(api, "/v1/messages", messages_body(0))[2])["content"][0]["id"]
        for _ in range(5)
    }
    assert len(ids) == 5


def test_anthropic_stream_event_sequence(api: FakeModelAPI) -> None:
    status, headers, raw = call(api, "/v1/messages?beta=true", messages_body(0, stream=True))
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = sse(raw)
    kinds = [k for k, _ in events if k != "ping"]
    assert kinds[0] == "message_start" and kinds[1] == "content_block_start"
    assert kinds[-4:] == [
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    block = next(d for k, d in events if k == "content_block_start")["content_block"]
    assert block["type"] == "tool_use" and block["name"] == "Write" and block["input"] == {}
    partial = "".join(d["delta"]["partial_json"] for k, d in events if k == "content_block_delta")
    assert json.loads(partial) == {"file_path": "/w/a.txt", "content": "a"}
    delta = next(d for k, d in events if k == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use" and "output_tokens" in delta["usage"]

    events = sse(call(api, "/v1/messages", messages_body(1, stream=True))[2])
    text = "".join(
        d["delta"]["text"]
        for k, d in events
        if k == "content_block_delta" and d["delta"]["type"] == "text_delta"
    )
    assert text == "first"
    assert next(d for k, d in events if k == "message_delta")["delta"]["stop_reason"] == "end_turn"


def test_openai_stream_event_sequence_on_both_paths(api: FakeModelAPI) -> None:
    for path in ("/v1/responses", "/responses"):
        status, headers, raw = call(api, path, responses_body(0, stream=True))
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        events = sse(raw)
        kinds = [k for k, _ in events]
        assert kinds[:3] == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
        ]
        assert kinds[-2:] == ["response.output_item.done", "response.completed"]
        item = events[-2][1]["item"]
        assert item["type"] == "function_call" and item["name"] == "exec_command"
        assert json.loads(item["arguments"]) == {"cmd": "true"}
        assert item["call_id"].startswith("call_")
        done = events[-1][1]["response"]
        assert done["status"] == "completed" and done["output"] == [item]
        assert done["usage"]["total_tokens"] > 0
        seqs = [d["sequence_number"] for _, d in events]
        assert seqs == sorted(seqs)

    events = sse(call(api, "/v1/responses", responses_body(1, stream=True))[2])
    kinds = [k for k, _ in events]
    assert "response.output_text.delta" in kinds
    text = "".join(d["delta"] for k, d in events if k == "response.output_text.delta")
    assert text == "codex first"
    assert events[-1][1]["response"]["output"][0]["content"][0]["text"] == "codex first"

    done = json.loads(call(api, "/v1/responses", responses_body(7))[2])  # not streamed
    assert done["output"][0]["content"][0]["text"] == "Done."


def test_side_requests_get_plain_text_and_do_not_advance(api: FakeModelAPI) -> None:
    side = messages_body(0)
    del side["tools"]
    msg = json.loads(call(api, "/v1/messages", side)[2])
    assert msg["content"][0]["type"] == "text" and msg["stop_reason"] == "end_turn"
    out = json.loads(call(api, "/v1/responses", responses_body(0, tools=[]))[2])
    assert out["output"][0]["type"] == "message"
    # The scripted conversations still start at step 0.
    assert json.loads(call(api, "/v1/messages", messages_body(0))[2])["content"][0]["type"] == (
        "tool_use"
    )
    assert json.loads(call(api, "/responses", responses_body(0))[2])["output"][0]["type"] == (
        "function_call"
    )


def test_required_key() -> None:
    with FakeModelAPI([Text("hi")], required_key="sekrit") as fake:
        status, _, raw = call(fake, "/v1/messages", messages_body())
        assert status == 401
        assert json.loads(raw)["error"]["type"] == "authentication_error"
        status, _, raw = call(fake, "/v1/messages", messages_body(), headers={"x-api-key": "no"})
        assert status == 401
        status, _, raw = call(fake, "/v1/responses", responses_body())
        assert status == 401 and json.loads(raw)["error"]["code"] == "invalid_api_key"

        assert (
            call(fake, "/v1/messages", messages_body(), headers={"x-api-key": "sekrit"})[0] == 200
        )
        bearer = {"authorization": "Bearer sekrit"}
        assert call(fake, "/v1/messages", messages_body(), headers=bearer)[0] == 200
        assert call(fake, "/v1/responses", responses_body(), headers=bearer)[0] == 200
        # Rejected requests are recorded too.
        assert len(fake.model_requests()) == 6
        assert fake.requests[1].headers["x-api-key"] == "no"


def test_auxiliary_endpoints(api: FakeModelAPI) -> None:
    status, _, raw = call(api, "/v1/messages/count_tokens?beta=true", messages_body())
    assert (status, json.loads(raw)) == (200, {"input_tokens": 10})
    for path in ("/api/hello", "/v1/oauth/hello"):
        status, _, raw = call(api, path)
        assert (status, json.loads(raw)) == (200, {})
    for path in ("/api/claude_code/settings", "/api/claude_code/policy_limits", "/api/x", "/nope"):
        status, headers, raw = call(api, path)
        assert status == 404 and headers["content-type"] == "application/json"
        assert json.loads(raw)["type"] == "error"
    assert call(api, "/v1/messages", method="GET")[0] == 404
    assert call(api, "/v1/messages", b"not json")[0] == 400


def test_recorded_requests(api: FakeModelAPI) -> None:
    call(api, "/v1/messages?beta=true", messages_body(), headers={"X-Custom": "Yes"})
    call(api, "/api/hello")
    call(api, "/whatever", b"\x00raw")
    first, second, third = api.requests
    assert isinstance(first, RecordedRequest)
    assert (first.method, first.path, first.route) == (
        "POST",
        "/v1/messages?beta=true",
        "/v1/messages",
    )
    assert first.headers["x-custom"] == "Yes" and all(k == k.lower() for k in first.headers)
    assert isinstance(first.body, dict) and first.body["model"] == "claude-x"
    assert (second.method, second.body) == ("GET", None)
    assert third.body == b"\x00raw"
    api.requests.clear()  # a copy: the fake's own list is untouched
    assert len(api.requests) == 3


def test_wait_for(api: FakeModelAPI) -> None:
    timer = threading.Timer(0.3, call, args=(api, "/v1/messages", messages_body(1)))
    timer.start()
    try:
        got = api.wait_for(lambda r: r.json.get("messages", [{}])[-1].get("role") == "user", 10)
        assert got.route == "/v1/messages"
    finally:
        timer.join()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        api.wait_for(lambda r: r.route == "/never", timeout=0.3)
    assert time.monotonic() - started < 5


def test_stop_releases_port_and_keepalive_connections() -> None:
    fake = FakeModelAPI([Text("x")]).start()
    url, port = fake.url, fake.port
    assert url == f"http://127.0.0.1:{port}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    conn.request("GET", "/api/hello")
    assert conn.getresponse().read() == b"{}"  # the connection stays open (keep-alive)
    started = time.monotonic()
    fake.stop()
    fake.stop()  # idempotent
    assert time.monotonic() - started < 5
    conn.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/api/hello", timeout=2)


def test_wildcard_bind_url() -> None:
    with FakeModelAPI([], host="0.0.0.0") as fake:
        assert fake.url == f"http://127.0.0.1:{fake.port}"
        assert call(fake, "/api/hello")[0] == 200


# ---------------------------------------------------------------- real CLI checks


def find_cli(env_var: str, default: str, name: str) -> str | None:
    for candidate in (os.environ.get(env_var), default, shutil.which(name)):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


CLAUDE_ARGS = ["-p", "write hello", "--dangerously-skip-permissions", "--output-format", "json"]
CODEX_ARGS = [
    "exec",
    "--skip-git-repo-check",  # the work dir is no git repo
    "--dangerously-bypass-approvals-and-sandbox",
    "create hello.txt",
]
CLAUDE_BIN = find_cli("CLAUDE_BIN", CLAUDE_DEFAULT, "claude")
CODEX_BIN = find_cli("CODEX_BIN", CODEX_DEFAULT, "codex")

needs_claude = pytest.mark.skipif(
    CLAUDE_BIN is None,
    reason=f"Claude Code CLI not found (set CLAUDE_BIN, or install it at {CLAUDE_DEFAULT})",
)
needs_codex = pytest.mark.skipif(
    CODEX_BIN is None,
    reason=f"Codex CLI not found (set CODEX_BIN, or install it at {CODEX_DEFAULT})",
)


def base_env(home: Path) -> dict[str, str]:
    """A clean environment: no real credentials or user config leak into the CLI."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}


def claude_env(api: FakeModelAPI, home: Path, key: str) -> dict[str, str]:
    return {
        **base_env(home),
        "IS_SANDBOX": "1",  # root may use --dangerously-skip-permissions
        "ANTHROPIC_BASE_URL": api.url,
        "ANTHROPIC_API_KEY": key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "DISABLE_AUTOUPDATER": "1",
    }


def run_claude(api: FakeModelAPI, work: Path, home: Path, key: str) -> dict[str, Any]:
    assert CLAUDE_BIN is not None
    proc = subprocess.run(
        [CLAUDE_BIN, *CLAUDE_ARGS],
        cwd=work,
        env=claude_env(api, home, key),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )
    assert proc.stdout.strip(), f"no output (rc={proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


def tool_results(req: RecordedRequest) -> list[dict[str, Any]]:
    return [
        block
        for message in req.json.get("messages", [])
        if message.get("role") == "user" and isinstance(message.get("content"), list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


@needs_claude
@pytest.mark.timeout(CLI_TIMEOUT + 60)
def test_real_claude_code_writes_file(scratch: Path) -> None:
    work, home = scratch / "work", scratch / "home"
    work.mkdir()
    home.mkdir()
    target = work / "hello.txt"
    script = [ToolCall("Write", {"file_path": str(target), "content": "hi\n"}), Text("Done.")]
    with FakeModelAPI(script, required_key="test-key") as api:
        result = run_claude(api, work, home, "test-key")
        assert result["is_error"] is False, result
        assert result["result"] == "Done."
        assert target.read_text() == "hi\n"

        reqs = api.model_requests()
        assert [r.route for r in reqs] == ["/v1/messages", "/v1/messages"]
        first, second = reqs
        assert first.headers["x-api-key"] == "test-key"
        assert first.json["stream"] is True
        assert "Write" in {t["name"] for t in first.json["tools"]}
        assert tool_results(first) == []
        (result_block,) = tool_results(second)
        assert result_block["tool_use_id"].startswith("toolu_01")
        assert not api.errors, api.errors


@needs_claude
@pytest.mark.timeout(CLI_TIMEOUT + 60)
def test_real_claude_code_sees_401(scratch: Path) -> None:
    with FakeModelAPI([Text("never")], required_key="right-key") as api:
        result = run_claude(api, scratch, scratch, "wrong-key")
        assert result["is_error"] is True and result["api_error_status"] == 401, result
        assert api.model_requests()[0].headers["x-api-key"] == "wrong-key"


@needs_codex
@pytest.mark.timeout(CLI_TIMEOUT + 60)
@pytest.mark.parametrize("base_path", ["/v1", ""])
def test_real_codex_runs_command(scratch: Path, base_path: str) -> None:
    work, home = scratch / "work", scratch / "codex-home"
    work.mkdir()
    home.mkdir()
    script = [ToolCall("exec_command", {"cmd": "printf 'hi\\n' > hello.txt"}), Text("Done.")]
    with FakeModelAPI([], codex_script=script, required_key="test-key") as api:
        (home / "config.toml").write_text(codex_config_toml(api.url + base_path))
        assert CODEX_BIN is not None
        proc = subprocess.run(
            [CODEX_BIN, *CODEX_ARGS],
            cwd=work,
            env={**base_env(home), "CODEX_HOME": str(home), "OPENAI_API_KEY": "test-key"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (work / "hello.txt").read_text() == "hi\n"
        assert proc.stdout.strip().endswith("Done.")

        reqs = api.model_requests()
        assert [r.route for r in reqs] == [f"{base_path}/responses"] * 2
        first, second = reqs
        assert first.headers["authorization"] == "Bearer test-key"
        assert first.json["stream"] is True
        tools = {t.get("name") for t in first.json["tools"]}
        assert "exec_command" in tools, f"Codex no longer offers exec_command: {tools}"
        calls = [i for i in second.json["input"] if i.get("type") == "function_call"]
        outputs = [i for i in second.json["input"] if i.get("type") == "function_call_output"]
        assert len(calls) == len(outputs) == 1
        assert outputs[0]["call_id"] == calls[0]["call_id"]
        assert not api.errors, api.errors
