"""What a session's container is, independent of the backend that runs it.

The manager builds a `ContainerSpec` from the session record; a backend only turns it
into its own API calls. Building the spec is pure, so it is unit-tested without Docker.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mount:
    source: str  # host path, or volume name when `volume` is true
    target: str
    read_only: bool = False
    volume: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    command: list[str]
    workdir: str
    user: str  # "uid:gid"
    env: dict[str, str]
    mounts: list[Mount]
    labels: dict[str, str]
    cpu_limit: float | None = None
    memory_limit: int | None = None  # bytes
    tty: bool = True
    # Come back after a reboot or an engine restart; a one-off print run does not.
    restart: bool = True
