"""The contract between the SessionManager and whatever runs a session's agent.

`Backend` names every call the manager makes of a backend, and nothing else: the manager
never reaches past it. A backend is synchronous (the manager calls it from worker threads)
and knows nothing about the store or about sessions beyond the `ContainerSpec` it is given.
Containers are found by name and by labels (key/value pairs the manager sets: the home's
instance, the session's id). Errors are `ClauderonError`s: `BackendUnavailable` when the
engine cannot be reached at all, an error naming the container otherwise.

Implementations: `docker.py` (the Docker Engine API); the tests' `FakeBackend`
(tests/unit/fake_backend.py) keeps containers in memory. A backend is chosen per session
(`create --backend`, recorded in the session) from the `Backends` registry below; adding
one means implementing this protocol and registering it.
"""

from __future__ import annotations

import importlib
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from ..errors import InvalidInput
from ..spec import ContainerSpec

# (message, current, total): a step of a long operation; the numbers are optional.
Progress = Callable[[str, int | None, int | None], None]


class ContainerState(StrEnum):
    """What a container is doing. The values are the words `list` shows."""

    CREATED = "created"  # made, never started
    RUNNING = "running"
    RESTARTING = "restarting"  # the engine is starting it again after it ended
    PAUSED = "paused"
    EXITED = "exited"  # ended; `exit_code` says how
    DEAD = "dead"  # ended and could not be cleaned up; `exit_code` when known
    REMOVING = "removing"
    MISSING = "missing"  # no such container (what `list` shows; `inspect` returns None)
    UNKNOWN = "unknown"  # the backend said something else

    @property
    def ended(self) -> bool:
        """The agent's process is gone, the container is not (it can be started again)."""
        return self in (ContainerState.EXITED, ContainerState.DEAD)


@dataclass(frozen=True)
class ContainerStatus:
    name: str
    state: ContainerState
    exit_code: int | None = None  # for an ended container
    labels: dict[str, str] = field(default_factory=dict)
    # Made with no network but loopback (clauderon 0.2+); older containers sat on a
    # per-home network and move to the new design when they are recreated.
    isolated: bool = True

    @property
    def running(self) -> bool:
        return self.state == ContainerState.RUNNING

    def __post_init__(self) -> None:
        if not isinstance(self.state, ContainerState):  # a plain word from a caller
            object.__setattr__(self, "state", ContainerState(self.state))


@dataclass(frozen=True)
class ImageFacts:
    """What clauderon needs to know about an image, probed once per image id."""

    image_id: str
    commands: frozenset[str]  # which of the interesting commands the image has
    musl: bool  # the C library is musl (Alpine): native binaries must match
    path: str  # the image's PATH, extended when clauderon provides the agent


@dataclass(frozen=True)
class CacheVolume:
    name: str
    size: int | None  # bytes, None when the engine does not say
    used_by: list[str]  # container names
    exists: bool = True


class Backend(Protocol):
    """Every call the SessionManager makes of a backend."""

    kind: str  # the name `--backend` selects it by

    # --- the engine ----------------------------------------------------------------------

    def check(self) -> None:
        """Raise BackendUnavailable, with the fix, when the engine cannot be reached."""

    def architecture(self) -> str:
        """`x64` or `arm64`: which agent binaries this backend runs."""

    # --- images --------------------------------------------------------------------------

    def validate_image(self, image: str) -> str:
        """Return `image` if it is a valid image reference here, else raise InvalidInput."""

    def ensure_image(self, image: str, policy: str, progress: Progress) -> None:
        """Have `image` locally per the pull policy (always / if-not-present / never)."""

    def refresh_image(self, image: str, progress: Progress) -> str | None:
        """Pull `image` again; return why not (and keep the local one) when it fails."""

    def image_id(self, image: str) -> str:
        """The id of the local image (what image facts are cached by)."""

    def image_facts(self, image: str) -> ImageFacts:
        """Probe the image (a short container of role `probe`, removed after)."""

    # --- containers ----------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> str:
        """Create and start the container (its cache volumes made first); return its id."""

    def start(self, name: str) -> None: ...

    def stop(self, name: str) -> None:
        """Stop it if it exists; the agent gets a grace period to end."""

    def remove(self, name: str) -> None:
        """Remove the container if it exists (idempotent). Only this home's containers
        (label `clauderon.instance`) are ever started, stopped or removed."""

    def inspect(self, name: str) -> ContainerStatus | None:
        """This home's container of that name, or None when there is none."""

    def inspect_all(self, labels: dict[str, str]) -> dict[str, ContainerStatus]:
        """Every container carrying all of `labels`, by name, in one call."""

    def logs(self, name: str, follow: bool, tail: int | None) -> Iterator[bytes]:
        """The output as a stream; its `close()` (when it has one) ends a follow from
        another thread."""

    def attach(self, name: str) -> socket.socket:
        """A raw two-way stream to the container's terminal."""

    def resize(self, name: str, rows: int, cols: int) -> None:
        """Resize the container's terminal (best effort)."""

    # --- shared caches and what older versions made ---------------------------------------

    def cache_volumes(self, names: list[str]) -> list[CacheVolume]:
        """The named cache volumes: whether each exists, its size, which containers use it."""

    def remove_volume(self, name: str) -> None:
        """Remove a cache volume if it exists."""

    def remove_legacy_network(self) -> None:
        """Remove what older versions made for networking, once nothing uses it."""


# --- the registry: which backend `--backend` names ------------------------------------------

# kind → "module:class"; the class is made with the home's instance id.
KNOWN: dict[str, str] = {"docker": "clauderon.backends.docker:DockerBackend"}


class Backends:
    """The backends of one daemon, by kind, each made on first use."""

    def __init__(self, factories: Mapping[str, Callable[[], Backend]], default: str) -> None:
        if default not in factories:
            raise ValueError(f"default backend {default!r} is not among {sorted(factories)}")
        self._factories = dict(factories)
        self._made: dict[str, Backend] = {}
        self.default = default

    @classmethod
    def for_home(cls, instance: str) -> Backends:
        """Every known backend, for the home of this instance id."""

        def factory(path: str) -> Callable[[], Backend]:
            def make() -> Backend:
                module, _, name = path.partition(":")
                made: Backend = getattr(importlib.import_module(module), name)(instance)
                return made

            return make

        return cls({kind: factory(path) for kind, path in KNOWN.items()}, default="docker")

    @classmethod
    def of(cls, *backends: Backend) -> Backends:
        """Backends already made (the first is the default)."""

        def made(backend: Backend) -> Callable[[], Backend]:
            return lambda: backend

        return cls({b.kind: made(b) for b in backends}, default=backends[0].kind)

    def kinds(self) -> list[str]:
        return sorted(self._factories)

    def check_kind(self, kind: str) -> str:
        """`kind` if this daemon has such a backend, else InvalidInput naming those it has."""
        if kind not in self._factories:
            names = ", ".join(repr(k) for k in self.kinds())
            raise InvalidInput(f"unknown backend {kind!r}: the available backends are {names}")
        return kind

    def get(self, kind: str) -> Backend:
        self.check_kind(kind)
        if kind not in self._made:
            self._made[kind] = self._factories[kind]()
        return self._made[kind]

    def made(self) -> list[Backend]:
        """The backends in use so far (what reconcile and `list` ask about)."""
        return list(self._made.values())
