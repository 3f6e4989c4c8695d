"""The contract between the SessionManager and whatever runs a session's agent.

A backend is synchronous (the manager calls it from worker threads) and knows nothing
about the store or about sessions beyond the `ContainerSpec` it is given. Docker is the
first backend; another (Kubernetes, a host multiplexer) implements this same protocol.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ..spec import ContainerSpec

# (message, current, total): a step of a long operation; the numbers are optional.
Progress = Callable[[str, int | None, int | None], None]


@dataclass(frozen=True)
class ContainerStatus:
    name: str
    state: str  # running / exited / created / restarting / paused / dead
    exit_code: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # Made with no network but loopback (clauderon 0.2+); older containers sat on a
    # per-home network and move to the new design when they are recreated.
    isolated: bool = True


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
    kind: str
    detach_keys: str  # how a user leaves an attached terminal, for humans

    def validate_image(self, image: str) -> str:
        """Return `image` if it is a valid image reference here, else raise InvalidInput."""

    def check(self) -> None:
        """Raise DockerUnavailable (or the backend's equivalent) with the fix."""

    def architecture(self) -> str:
        """`x64` or `arm64`: which agent binaries this backend runs."""

    def ensure_image(self, image: str, policy: str, progress: Progress) -> None: ...

    def refresh_image(self, image: str, progress: Progress) -> str | None:
        """Pull `image` again; return why not (and keep the local one) when it fails."""

    def image_facts(self, image: str) -> ImageFacts: ...

    def create(self, spec: ContainerSpec) -> str:
        """Create and start the container; return its id."""

    def start(self, name: str) -> None: ...

    def stop(self, name: str) -> None: ...

    def remove(self, name: str) -> None:
        """Remove the container if it exists (idempotent)."""

    def inspect(self, name: str) -> ContainerStatus | None: ...

    def inspect_all(self, labels: dict[str, str]) -> dict[str, ContainerStatus]: ...

    def logs(self, name: str, follow: bool, tail: int | None) -> Iterator[bytes]: ...

    def attach_command(self, name: str) -> list[str]: ...

    def attach(self, name: str) -> socket.socket:
        """A raw two-way stream to the container's terminal."""

    def resize(self, name: str, rows: int, cols: int) -> None: ...

    def remove_legacy_network(self) -> None:
        """Remove what older versions made for networking, once nothing uses it."""
