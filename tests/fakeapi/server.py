"""A scripted, local fake of the Anthropic Messages and OpenAI Responses APIs.

The real Claude Code and Codex CLIs can be pointed at it (``ANTHROPIC_BASE_URL`` /
a Codex ``model_providers`` entry) so that tests exercise the real agents without
reaching a real model. Standard library only.

Which scripted step answers a request is derived from the conversation in that
request (the number of tool results it already carries), never from a global
counter: agents send side requests (titles, summaries...) and may retry.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import secrets
import socket
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "FakeModelAPI",
    "RecordedRequest",
    "ScriptItem",
    "Text",
    "ToolCall",
    "codex_config_toml",
]

FINAL_TEXT = "Done."
SIDE_TEXT = "OK"


@dataclass(frozen=True)
class ToolCall:
    """Script step: the model calls tool ``name`` with ``input`` as its arguments."""

    name: str
    input: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Text:
    """Script step: the model answers with ``text`` and ends its turn."""

    text: str


ScriptItem = ToolCall | Text


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the fake received (whatever its path or outcome)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | list[Any] | bytes | None

    @property
    def route(self) -> str:
        """The path without its query string."""
        return urlsplit(self.path).path

    @property
    def json(self) -> dict[str, Any]:
        """The body as a JSON object (empty dict when it is not one)."""
        return self.body if isinstance(self.body, dict) else {}


# --------------------------------------------------------------------------- helpers


_counter = itertools.count(1)


def _new_id(prefix: str) -> str:
    """An id shaped like the real ones (``toolu_01...``, ``msg_01...``), unique."""
    return f"{prefix}{secrets.token_hex(10)}{next(_counter):04d}"


def _estimate_tokens(body: Any) -> int:
    try:
        size = len(json.dumps(body))
    except (TypeError, ValueError):
        size = 40
    return max(1, size // 4)


def anthropic_step(body: dict[str, Any]) -> int:
    """Number of ``tool_result`` blocks in the user messages of a Messages request."""
    count = 0
    for message in body.get("messages") or []:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            count += sum(
                1
                for block in content
                if isinstance(block, dict) and block.get("type") == "tool_result"
            )
    return count


_OPENAI_TOOL_OUTPUTS = {
    "function_call_output",
    "custom_tool_call_output",
    "local_shell_call_output",
}


def openai_step(body: dict[str, Any]) -> int:
    """Number of tool-call outputs (``function_call_output``...) in a Responses ``input``."""
    items = body.get("input")
    if not isinstance(items, list):
        return 0
    return sum(
        1 for item in items if isinstance(item, dict) and item.get("type") in _OPENAI_TOOL_OUTPUTS
    )


def _pick(script: Sequence[ScriptItem], body: dict[str, Any], step: int) -> ScriptItem:
    if not body.get("tools"):
        return Text(SIDE_TEXT)
    if step < len(script):
        return script[step]
    return Text(FINAL_TEXT)


def codex_config_toml(base_url: str, model: str = "gpt-5-codex") -> str:
    """A Codex ``config.toml`` pointing Codex at the fake (``base_url`` = ``api.url + "/v1"``)."""
    return (
        f'model = "{model}"\n'
        'model_provider = "fake"\n'
        "\n"
        "[model_providers.fake]\n"
        'name = "Fake"\n'
        f'base_url = "{base_url}"\n'
        'env_key = "OPENAI_API_KEY"\n'
        'wire_api = "responses"\n'
        "supports_websockets = false\n"
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
        "\n"
        "[features]\n"
        "plugins = false\n"
        "\n"
        "[analytics]\n"
        "enabled = false\n"
    )


# ----------------------------------------------------------------- Anthropic replies


def _anthropic_usage(body: dict[str, Any], output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": _estimate_tokens(body.get("messages")),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def anthropic_message(item: ScriptItem, body: dict[str, Any]) -> dict[str, Any]:
    """The complete (non-streamed) Messages API response for one script item."""
    if isinstance(item, ToolCall):
        content: list[dict[str, Any]] = [
            {"type": "tool_use", "id": _new_id("toolu_01"), "name": item.name, "input": item.input}
        ]
        stop_reason = "tool_use"
    else:
        content = [{"type": "text", "text": item.text}]
        stop_reason = "end_turn"
    return {
        "id": _new_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": body.get("model") or "claude-fake",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _anthropic_usage(body, output_tokens=_estimate_tokens(content)),
    }


def anthropic_events(message: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The ``(event, data)`` sequence that streams ``message`` like the real API does."""
    start = dict(message, content=[], stop_reason=None, stop_sequence=None)
    start["usage"] = dict(message["usage"], output_tokens=1)
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {
                        "type": "tool_use",
                        "id": block["id"],
                        "name": block["name"],
                        "input": {},
                    },
                },
            )
            args = json.dumps(block["input"])
            for chunk in _chunks(args, 40):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": chunk},
                    },
                )
        else:
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            for chunk in _chunks(block["text"], 20):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": chunk},
                    },
                )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": message["usage"]["output_tokens"]},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# -------------------------------------------------------------------- OpenAI replies


def openai_output_item(item: ScriptItem) -> dict[str, Any]:
    """The Responses API output item for one script item."""
    if isinstance(item, ToolCall):
        return {
            "type": "function_call",
            "id": _new_id("fc_"),
            "call_id": _new_id("call_"),
            "name": item.name,
            "arguments": json.dumps(item.input),
            "status": "completed",
        }
    return {
        "type": "message",
        "id": _new_id("msg_"),
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": item.text, "annotations": []}],
    }


def openai_response(item: ScriptItem, body: dict[str, Any]) -> dict[str, Any]:
    """The completed Responses API response object for one script item."""
    output = openai_output_item(item)
    input_tokens = _estimate_tokens(body.get("input"))
    output_tokens = _estimate_tokens(output)
    return {
        "id": _new_id("resp_"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": body.get("model") or "gpt-fake",
        "output": [output],
        "parallel_tool_calls": False,
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
    }


def openai_events(response: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The ``(event, data)`` sequence that streams ``response`` like the real API does."""
    seq = itertools.count()
    pending = dict(response, status="in_progress", output=[], usage=None)

    def event(kind: str, **data: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(seq), **data}

    yield event("response.created", response=pending)
    yield event("response.in_progress", response=pending)
    for index, item in enumerate(response["output"]):
        if item["type"] == "function_call":
            yield event(
                "response.output_item.added",
                output_index=index,
                item=dict(item, arguments="", status="in_progress"),
            )
            for chunk in _chunks(item["arguments"], 40):
                yield event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=index,
                    delta=chunk,
                )
            yield event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=item["arguments"],
            )
        else:
            text = item["content"][0]["text"]
            yield event(
                "response.output_item.added",
                output_index=index,
                item=dict(item, content=[], status="in_progress"),
            )
            part = {"type": "output_text", "text": "", "annotations": []}
            yield event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=part,
            )
            for chunk in _chunks(text, 20):
                yield event(
                    "response.output_text.delta",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    delta=chunk,
                )
            yield event(
                "response.output_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=text,
            )
            yield event(
                "response.content_part.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=dict(part, text=text),
            )
        yield event("response.output_item.done", output_index=index, item=item)
    yield event("response.completed", response=response)


# -------------------------------------------------------------------------- server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300  # idle keep-alive connections are dropped after this
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    # -- request plumbing

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
            raw = bytes(data)
        else:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        encoding = self.headers.get("content-encoding", "").lower()
        if raw and encoding in ("gzip", "deflate"):
            with contextlib.suppress(zlib.error):
                raw = zlib.decompress(raw, zlib.MAX_WBITS | 32)
        return raw

    def _handle(self) -> None:
        raw = self._read_body()
        body: dict[str, Any] | list[Any] | bytes | None
        if not raw:
            body = None
        else:
            try:
                body = json.loads(raw)
            except (UnicodeDecodeError, ValueError):
                body = raw
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            key = key.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        record = RecordedRequest(self.command, self.path, headers, body)
        self.server.api._record(record)
        try:
            self.server.api._dispatch(self, record)
        except OSError:  # the client went away mid-answer
            self.close_connection = True
        except Exception:
            self.server.api.errors.append(traceback.format_exc())
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.send_json(
                    500, {"type": "error", "error": {"type": "api_error", "message": "fake"}}
                )

    # -- response helpers (used by FakeModelAPI._dispatch)

    def send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def send_sse(
        self, events: Iterator[tuple[str, dict[str, Any]]], extra_headers: dict[str, str]
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for key, value in extra_headers.items():
            self.send_header(key, value)
        self.end_headers()
        for kind, data in events:
            chunk = f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: FakeModelAPI) -> None:
        self.api = api
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            self.api.errors.append(traceback.format_exc())

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut the kept-alive client connections so their handler threads end."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class FakeModelAPI:
    """A scripted fake of the Anthropic Messages and OpenAI Responses APIs.

    ``script`` drives ``/v1/messages`` (Claude Code); ``codex_script`` drives
    ``/v1/responses`` and ``/responses`` (Codex) and defaults to ``script``.
    """

    def __init__(
        self,
        script: Sequence[ScriptItem] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        required_key: str | None = None,
        codex_script: Sequence[ScriptItem] | None = None,
    ) -> None:
        self.script: list[ScriptItem] = list(script)
        self.codex_script: list[ScriptItem] = list(script if codex_script is None else codex_script)
        self.host = host
        self.required_key = required_key
        self._requested_port = port
        self._requests: list[RecordedRequest] = []
        self.errors: list[str] = []  # tracebacks of the fake's own failures (should stay empty)
        self._cond = threading.Condition()
        self._open = threading.Event()  # cleared by hold(): model answers wait for it
        self._open.set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FakeModelAPI:
        """Bind and serve in a background thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("FakeModelAPI already started")
        self._server = _Server((self.host, self._requested_port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="fake-model-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeModelAPI:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with ``port=0``)."""
        if self._server is None:
            raise RuntimeError("FakeModelAPI not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (for a wildcard bind, the loopback address)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    # -- recorded traffic

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far, in arrival order."""
        with self._cond:
            return list(self._requests)

    def model_requests(self) -> list[RecordedRequest]:
        """The recorded POSTs to the messages / responses endpoints."""
        return [
            r for r in self.requests if r.method == "POST" and _model_route(r.route) is not None
        ]

    def wait_for(
        self, predicate: Callable[[RecordedRequest], bool], timeout: float = 60
    ) -> RecordedRequest:
        """Block until a recorded request (past or future) satisfies ``predicate``.

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for record in self._requests[seen:]:
                    if predicate(record):
                        return record
                seen = len(self._requests)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching request within {timeout}s ({seen} recorded)")
                self._cond.wait(remaining)

    def _record(self, record: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(record)
            self._cond.notify_all()

    # -- holding answers

    def hold(self) -> None:
        """From now on, model requests are recorded and then wait, unanswered, until
        `release()` (or 120 s): a request in flight for as long as a test needs."""
        self._open.clear()

    def release(self) -> None:
        """Answer the held model requests, and the next ones at once."""
        self._open.set()

    # -- routing

    def _authorized(self, record: RecordedRequest) -> bool:
        if self.required_key is None:
            return True
        if record.headers.get("x-api-key") == self.required_key:
            return True
        return record.headers.get("authorization", "") == f"Bearer {self.required_key}"

    def _dispatch(self, handler: _Handler, record: RecordedRequest) -> None:
        route = record.route.rstrip("/") or "/"
        model_route = _model_route(route)
        if record.method == "POST" and model_route is not None:
            if not self._authorized(record):
                handler.send_json(401, _auth_error(model_route))
                return
            if not isinstance(record.body, dict):
                handler.send_json(
                    400, _bad_request(model_route, "request body must be a JSON object")
                )
                return
            if model_route != "count_tokens":
                self._open.wait(timeout=120)
            if model_route == "count_tokens":
                handler.send_json(200, {"input_tokens": 10})
            elif model_route == "anthropic":
                self._answer_anthropic(handler, record.body)
            else:
                self._answer_openai(handler, record.body)
            return
        if record.method in ("GET", "HEAD") and route in ("/api/hello", "/v1/oauth/hello"):
            handler.send_json(200, {})
            return
        # Everything else, including the /api/claude_code/* settings Claude Code probes
        # (it treats a 404 there as "nothing configured").
        message = f"{record.method} {route} not found"
        handler.send_json(
            404, {"type": "error", "error": {"type": "not_found_error", "message": message}}
        )

    def _answer_anthropic(self, handler: _Handler, body: dict[str, Any]) -> None:
        item = _pick(self.script, body, anthropic_step(body))
        message = anthropic_message(item, body)
        if body.get("stream"):
            handler.send_sse(anthropic_events(message), {"request-id": _new_id("req_01")})
        else:
            handler.send_json(200, message)

    def _answer_openai(self, handler: _Handler, body: dict[str, Any]) -> None:
        item = _pick(self.codex_script, body, openai_step(body))
        response = openai_response(item, body)
        if body.get("stream"):
            handler.send_sse(openai_events(response), {"x-request-id": _new_id("req_")})
        else:
            handler.send_json(200, response)


def _model_route(route: str) -> str | None:
    route = route.rstrip("/")
    if route == "/v1/messages/count_tokens":
        return "count_tokens"
    if route == "/v1/messages":
        return "anthropic"
    if route in ("/v1/responses", "/responses"):
        return "openai"
    return None


def _auth_error(model_route: str) -> dict[str, Any]:
    if model_route == "openai":
        return {
            "error": {
                "message": "Incorrect API key provided.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
    return {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }


def _bad_request(model_route: str, message: str) -> dict[str, Any]:
    if model_route == "openai":
        return {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
    return {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
