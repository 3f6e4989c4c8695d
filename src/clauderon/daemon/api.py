"""The daemon's HTTP API (FastAPI): every front end, the CLI included, uses these routes.

Long operations (create, start, unarchive, refresh, reconcile) answer JSON when they are
done, or with `?stream=true` a stream of JSON lines: progress events, then one `result`
or `error` line. Errors are always `{"code": ..., "message": ...}`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..backends import Progress
from ..errors import ClauderonError, InvalidInput
from ..models import (
    CommitRequest,
    CreateSessionRequest,
    DeleteResult,
    MergeRequest,
    PullRequestRequest,
    PushRequest,
    SessionView,
)
from .auth import OpenConnections, Principal, over_unix_socket
from .blocking import blocking
from .manager import SessionManager

log = logging.getLogger(__name__)
NDJSON = "application/x-ndjson"


class CancelRequest(BaseModel):
    request_id: str


class AccessModeRequest(BaseModel):
    access_mode: str


class CredentialRequest(BaseModel):
    value: str


class AllowRequest(BaseModel):
    host: str
    session: str | None = None  # None: every session


class SendRequest(BaseModel):
    text: str


class TokenRequest(BaseModel):
    name: str = "default"


class ErrorBody(BaseModel):
    code: str
    message: str


def _line(obj: Any) -> bytes:
    return (json.dumps(jsonable_encoder(obj)) + "\n").encode()


def _error_body(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, ClauderonError):
        return exc.to_json()
    return {"code": "internal", "message": f"internal error: {type(exc).__name__}: {exc}"}


PROGRESS_BACKLOG = 256


async def _run(
    operation: Callable[[Progress], Coroutine[Any, Any, Any]],
    stream: bool,
    on_disconnect: Callable[[asyncio.Task[Any]], None] | None = None,
) -> Any:
    """Run a long operation; stream its progress as JSON lines when asked to."""
    if not stream:
        return await operation(lambda *_: None)
    loop = asyncio.get_running_loop()
    # Bounded: a slow reader (an image pull reports thousands of steps) loses the oldest
    # progress lines, never the end of the operation.
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=PROGRESS_BACKLOG)

    def offer(event: dict[str, Any]) -> None:
        if queue.full():
            queue.get_nowait()
        queue.put_nowait(event)

    def progress(message: str, current: int | None = None, total: int | None = None) -> None:
        event = {"type": "progress", "message": message, "current": current, "total": total}
        loop.call_soon_threadsafe(offer, event)

    task = asyncio.create_task(operation(progress))
    task.add_done_callback(lambda _: loop.call_soon_threadsafe(offer, {"type": "done"}))

    async def lines() -> AsyncIterator[bytes]:
        try:
            while True:
                event = await queue.get()
                if event["type"] != "done":
                    yield _line(event)
                    continue
                try:
                    yield _line({"type": "result", "result": task.result()})
                except BaseException as exc:  # the operation failed: say why, in-band
                    yield _line({"type": "error", **_error_body(exc)})
                return
        finally:
            if not task.done() and on_disconnect is not None:
                on_disconnect(task)  # the client went away mid-operation

    return StreamingResponse(lines(), media_type=NDJSON)


def create_app(
    manager: SessionManager,
    shutdown: Callable[[], None],
    connections: OpenConnections | None = None,
) -> FastAPI:
    """`connections`: what the TCP gate tracks per credential, so a revoked token's
    requests and WebSockets are closed at once."""
    app = FastAPI(
        title="clauderon",
        version=__version__,
        description="Sessions of coding agents in isolated containers.",
        docs_url=None,  # the schema is at /openapi.json; no UI that fetches assets
        redoc_url=None,
        responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
    )

    @app.exception_handler(ClauderonError)
    async def clauderon_error(_: Request, exc: ClauderonError) -> JSONResponse:
        return JSONResponse(exc.to_json(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"invalid request: {where}: {first.get('msg', 'invalid')}"
        return JSONResponse({"code": "invalid_request", "message": message}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return JSONResponse(
            {"code": codes.get(exc.status_code, "http_error"), "message": str(exc.detail)},
            status_code=exc.status_code,
        )

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse(_error_body(exc), status_code=500)

    # --- daemon ---------------------------------------------------------------------

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "pid": os.getpid(),
            "home": str(manager.paths.home),
        }

    @app.post("/api/daemon/shutdown")
    async def shutdown_daemon() -> dict[str, str]:
        shutdown()
        return {"status": "stopping"}

    # --- sessions -------------------------------------------------------------------

    @app.get("/api/sessions")
    async def list_sessions(archived: bool = False) -> list[SessionView]:
        return await manager.list(include_archived=archived)

    @app.post("/api/sessions", status_code=201, response_model=None)
    async def create_session(req: CreateSessionRequest, stream: bool = False) -> Any:
        def cancel(task: asyncio.Task[Any]) -> None:
            task.cancel()

        async def create(progress: Progress) -> SessionView:
            session = await manager.create(req, progress)
            view = manager.created_view(session)
            view.warnings = manager.warnings_for(session)
            return view

        return await _run(create, stream, cancel)

    @app.post("/api/sessions/cancel")
    async def cancel_create(req: CancelRequest) -> dict[str, bool]:
        return {"cancelled": await manager.cancel_create(req.request_id)}

    @app.get("/api/sessions/{name}")
    async def get_session(name: str) -> SessionView:
        return await manager.get(name)

    @app.delete("/api/sessions/{name}")
    async def delete_session(name: str, force: bool = False) -> DeleteResult:
        return await manager.delete(name, force)

    # Every answer about a session is its public view: the raw record holds the session's
    # proxy and hook tokens, which are the daemon's business only.

    @app.post("/api/sessions/{name}/stop")
    async def stop_session(name: str) -> SessionView:
        return await manager.public_view(await manager.stop(name))

    @app.post("/api/sessions/{name}/start", response_model=None)
    async def start_session(name: str, stream: bool = False) -> Any:
        async def start(progress: Progress) -> SessionView:
            return await manager.public_view(await manager.start(name, progress))

        return await _run(start, stream)

    @app.post("/api/sessions/{name}/archive")
    async def archive_session(name: str) -> SessionView:
        return await manager.public_view(await manager.archive(name))

    @app.post("/api/sessions/{name}/unarchive", response_model=None)
    async def unarchive_session(name: str, stream: bool = False) -> Any:
        async def unarchive(progress: Progress) -> SessionView:
            return await manager.public_view(await manager.unarchive(name, progress))

        return await _run(unarchive, stream)

    @app.post("/api/sessions/{name}/refresh", response_model=None)
    async def refresh_session(name: str, stream: bool = False) -> Any:
        async def refresh(progress: Progress) -> dict[str, Any]:
            session, warning = await manager.refresh(name, progress)
            return {"session": await manager.public_view(session), "warning": warning}

        return await _run(refresh, stream)

    @app.post("/api/sessions/{name}/access-mode")
    async def set_access_mode(name: str, req: AccessModeRequest) -> SessionView:
        return await manager.public_view(await manager.set_access_mode(name, req.access_mode))

    @app.post("/api/sessions/{name}/send")
    async def send_message(name: str, req: SendRequest) -> dict[str, str]:
        await manager.send(name, req.text)
        return {"status": "sent"}

    @app.get("/api/sessions/{name}/screen")
    async def screen(name: str) -> dict[str, Any]:
        snapshot = await blocking((await manager.console(name)).snapshot)
        snapshot["data"] = base64.b64encode(snapshot["data"]).decode()
        return snapshot

    @app.get("/api/sessions/{name}/attach")
    async def attach_session(name: str) -> dict[str, Any]:
        return await manager.attach_info(name)

    @app.get("/api/sessions/{name}/logs", response_model=None)
    async def session_logs(
        name: str, follow: bool = False, tail: int | None = Query(default=None, ge=0)
    ) -> Response:
        chunks = manager.logs(name, follow, tail)
        first = await anext(chunks, b"")  # errors surface before the stream starts

        async def body() -> AsyncIterator[bytes]:
            yield first
            async for chunk in chunks:
                yield chunk

        return StreamingResponse(body(), media_type="application/octet-stream")

    # --- review and land (landing.py, review.py) ------------------------------------------

    @app.get("/api/sessions/{name}/diff", response_model=None)
    async def session_diff(
        name: str,
        stat: bool = False,
        name_only: bool = False,
        base: str | None = None,
        color: bool = False,
    ) -> Response:
        """The session's changes as `git diff` text (cut at 32 MiB, with a note)."""
        chunks = await manager.diff(name, stat=stat, name_only=name_only, base=base, color=color)
        first = await anext(chunks, b"")  # errors surface before the stream starts

        async def body() -> AsyncIterator[bytes]:
            yield first
            async for chunk in chunks:
                yield chunk

        return StreamingResponse(body(), media_type="text/plain; charset=utf-8")

    @app.get("/api/sessions/{name}/changes")
    async def session_changes(name: str, base: str | None = None) -> dict[str, Any]:
        """The changed files as data (`clauderon diff --json`)."""
        return await manager.changes(name, base)

    @app.post("/api/sessions/{name}/commit")
    async def commit_session(name: str, req: CommitRequest) -> dict[str, Any]:
        return await manager.commit(name, req)

    @app.post("/api/sessions/{name}/merge")
    async def merge_session(name: str, req: MergeRequest) -> dict[str, Any]:
        return await manager.merge(name, req)

    @app.post("/api/sessions/{name}/push")
    async def push_session(name: str, req: PushRequest) -> dict[str, Any]:
        return await manager.push(name, req)

    @app.post("/api/sessions/{name}/pr")
    async def pull_request(name: str, req: PullRequestRequest) -> dict[str, Any]:
        return await manager.pull_request(name, req)

    # --- credentials and the audit log ---------------------------------------------------

    @app.get("/api/credentials")
    async def credentials() -> list[dict[str, Any]]:
        return manager.credentials()

    @app.put("/api/credentials/{name}")
    async def set_credential(name: str, req: CredentialRequest) -> dict[str, str]:
        manager.set_credential(name, req.value)
        return {"name": name, "status": "stored"}

    # --- hosts allowed or refused live (`clauderon allow|disallow`) ------------------------

    @app.get("/api/allow")
    async def allowed_hosts(session: str | None = None) -> list[dict[str, Any]]:
        """Every entry that decides egress (live ones, config.toml's, the defaults); with
        `session`, those that apply to that session."""
        return await manager.allowed_hosts(session)

    @app.post("/api/allow")
    async def allow_host(req: AllowRequest) -> dict[str, Any]:
        return await manager.change_allow(req.host, True, req.session)

    @app.post("/api/disallow")
    async def disallow_host(req: AllowRequest) -> dict[str, Any]:
        return await manager.change_allow(req.host, False, req.session)

    @app.get("/api/audit", response_model=None)
    async def audit(
        session: str | None = None,
        limit: int = Query(default=200, ge=1, le=10000),
        follow: bool = False,
    ) -> Any:
        if not follow:  # read and encoded in a thread: the loop carries the proxy

            def encoded() -> bytes:
                return json.dumps(manager.audit_entries(session, limit)).encode()

            return Response(await blocking(encoded), media_type="application/json")

        async def body() -> AsyncIterator[bytes]:
            async for entry in manager.audit_follow(session, limit):
                yield _line(entry)

        return StreamingResponse(body(), media_type=NDJSON)

    # --- caches and reconcile -----------------------------------------------------------

    @app.get("/api/cache")
    async def cache_report() -> list[dict[str, Any]]:
        return await manager.cache_report()

    @app.delete("/api/cache")
    async def clean_cache() -> dict[str, Any]:
        return await manager.clean_cache()

    @app.post("/api/reconcile", response_model=None)
    async def reconcile(remove_orphans: bool = False, stream: bool = False) -> Any:
        return await _run(lambda progress: manager.reconcile(remove_orphans, progress), stream)

    # --- tokens (made and revoked only over the Unix socket) ------------------------------

    def _local_only(request: Request) -> None:
        if not over_unix_socket(dict(request.scope)):
            raise ClauderonError(
                "tokens are managed over the Unix socket only", code="forbidden", status=403
            )

    @app.post("/api/tokens", status_code=201)
    async def create_token(req: TokenRequest, request: Request) -> dict[str, str]:
        _local_only(request)
        token_id, token = manager.new_token(req.name)
        return {"id": token_id, "name": req.name, "token": token}

    @app.get("/api/tokens")
    async def list_tokens(request: Request) -> list[dict[str, str]]:
        _local_only(request)
        return manager.list_tokens()

    @app.delete("/api/tokens/{token_id}")
    async def revoke_token(token_id: str, request: Request) -> dict[str, str]:
        _local_only(request)
        if not manager.delete_token(token_id):
            raise ClauderonError(f"no token with id {token_id!r}", code="not_found", status=404)
        closed = connections.revoke(Principal("token", token_id)) if connections else 0
        return {"id": token_id, "status": "revoked", "closed": str(closed)}

    # --- WebSockets ---------------------------------------------------------------------

    @app.websocket("/ws/events")
    async def events_ws(ws: WebSocket) -> None:
        """Every session event as it happens, so a front end never polls."""
        await ws.accept()
        queue = manager.events.subscribe()
        try:
            await ws.send_json({"type": "connected"})
            while True:
                await ws.send_json(jsonable_encoder(await queue.get()))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            manager.events.unsubscribe(queue)

    @app.websocket("/ws/console/{name}")
    async def console_ws(
        ws: WebSocket, name: str, rows: int | None = None, cols: int | None = None
    ) -> None:
        """The agent's terminal: a snapshot, then output; input, resize and signals in.
        `?rows=&cols=` give the viewer's size, so the snapshot is drawn at it."""
        await ws.accept()
        try:
            console = await manager.console(name)
            if rows is not None and cols is not None:
                _check_size(rows, cols)
                await console.fit(rows, cols)
        except (ClauderonError, ValueError) as exc:
            error = exc if isinstance(exc, ClauderonError) else InvalidInput(str(exc))
            await ws.send_json({"type": "error", **error.to_json()})
            await ws.close(code=4404 if error.status == 404 else 4409)
            return
        queue = console.subscribe()
        snapshot = await blocking(console.snapshot)  # a big screen renders off the loop
        snapshot["data"] = base64.b64encode(snapshot["data"]).decode()
        await ws.send_json({"type": "snapshot", **snapshot})

        async def output() -> None:
            while True:
                data = await queue.get()
                if data is None:
                    await ws.send_json({"type": "exit"})
                    return
                await ws.send_json({"type": "output", "data": base64.b64encode(data).decode()})

        async def commands() -> None:
            while True:
                message = await ws.receive_json()
                try:
                    await _console_command(console, message)
                except (ValueError, KeyError, TypeError, ConnectionError) as exc:
                    await ws.send_json(
                        {"type": "error", "code": "invalid_message", "message": str(exc)}
                    )

        tasks = [asyncio.create_task(output()), asyncio.create_task(commands())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            console.unsubscribe(queue)  # detaching never touches the agent
            with contextlib.suppress(RuntimeError):
                await ws.close()

    return app


def _check_size(rows: int, cols: int) -> None:
    if not (2 <= rows <= 500 and 10 <= cols <= 1000):
        raise ValueError("rows must be 2 to 500 and cols 10 to 1000")


async def _console_command(console: Any, message: dict[str, Any]) -> None:
    kind = message.get("type")
    if kind == "input":
        data = (
            base64.b64decode(message["data_b64"])
            if "data_b64" in message
            else str(message["data"]).encode()
        )
        await console.write(data)
    elif kind == "resize":
        rows, cols = int(message["rows"]), int(message["cols"])
        _check_size(rows, cols)
        await console.resize(rows, cols)
    elif kind == "signal":
        await console.signal(str(message["signal"]))
    elif kind == "send":
        await console.send_message(str(message["text"]))
    else:
        raise ValueError(f"unknown message type {kind!r}: input, resize, signal or send")
