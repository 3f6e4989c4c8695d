"""One error type that crosses every layer with a stable code and a human message.

The daemon turns it into JSON (`{"code": ..., "message": ...}`), the client turns that
back into the same exception, and the CLI prints the message on one line.
"""

from __future__ import annotations


class ClauderonError(Exception):
    """An error the user can act on. `message` is one line and says what to do."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class InvalidInput(ClauderonError):
    code = "invalid_input"
    status = 400


class NotFound(ClauderonError):
    code = "not_found"
    status = 404


class Conflict(ClauderonError):
    code = "conflict"
    status = 409


class WouldLoseWork(ClauderonError):
    code = "would_lose_work"
    status = 409


class BackendUnavailable(ClauderonError):
    """The engine a backend drives cannot be reached at all (not: it refused a call)."""

    code = "backend_unavailable"
    status = 503


class DockerUnavailable(BackendUnavailable):
    code = "docker_unavailable"
    status = 503


class ImageError(ClauderonError):
    code = "image_error"
    status = 400


class Cancelled(ClauderonError):
    code = "cancelled"
    status = 499


class StoreUnwritable(ClauderonError):
    code = "store_unwritable"
    status = 503


class DaemonUnavailable(ClauderonError):
    code = "daemon_unavailable"
    status = 503


def session_not_found(name: str) -> NotFound:
    return NotFound(f"no session named {name!r} (see `clauderon list --archived`)")
