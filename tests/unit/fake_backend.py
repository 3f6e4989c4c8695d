"""`FakeBackend`: the `Backend` contract (src/clauderon/backends) kept in memory.

Containers are records in a `FakeEngine` (several homes' backends may share one, as they
share a Docker engine). Nothing runs: `create` records the spec and marks the container
running. Faults are injected from the test:

- `fail("create", times=1)`: the next call of that method raises (a ClauderonError by
  default, as a real backend's refusal would);
- `before("stop", hook)`: `hook(*args)` runs in the worker thread before the call (to
  block on an event, commit in the worktree as an agent would, …);
- `kill(name)`: the agent dies (exited, code 137); `vanish(name)`: the container is
  removed behind the daemon's back; `engine.down = True`: every call raises
  BackendUnavailable.

Only the home's own containers (label `clauderon.instance`) are started, stopped or
removed, as the contract says.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from clauderon.backends import CacheVolume, ContainerState, ContainerStatus, ImageFacts, Progress
from clauderon.backends.docker import validate_image_name
from clauderon.errors import BackendUnavailable, ClauderonError, ImageError
from clauderon.spec import ContainerSpec

AGENT_COMMANDS = frozenset({"sh", "bash", "git", "claude", "codex"})


@dataclass
class FakeContainer:
    spec: ContainerSpec
    state: ContainerState = ContainerState.RUNNING
    exit_code: int | None = None
    starts: int = 1

    @property
    def labels(self) -> dict[str, str]:
        return self.spec.labels


@dataclass
class FakeEngine:
    """What several backends (homes) share: containers, images, volumes."""

    containers: dict[str, FakeContainer] = field(default_factory=dict)
    images: set[str] = field(default_factory=set)
    pullable: set[str] = field(default_factory=set)  # images a pull finds
    volumes: set[str] = field(default_factory=set)
    down: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeBackend:
    kind = "fake"

    def __init__(
        self,
        instance: str,
        engine: FakeEngine | None = None,
        commands: frozenset[str] = AGENT_COMMANDS,
    ) -> None:
        self.instance = instance
        self.engine = engine or FakeEngine()
        self.commands = commands
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._failures: dict[str, list[BaseException]] = {}
        self._hooks: dict[str, Callable[..., None]] = {}
        self.attached: list[socket.socket] = []  # the test's ends of attach streams

    # --- fault injection ----------------------------------------------------------------

    def fail(self, method: str, exc: BaseException | None = None, times: int = 1) -> None:
        error = exc or ClauderonError(f"injected failure of {method}", code="backend_error")
        self._failures.setdefault(method, []).extend([error] * times)

    def before(self, method: str, hook: Callable[..., None] | None) -> None:
        if hook is None:
            self._hooks.pop(method, None)
        else:
            self._hooks[method] = hook

    def kill(self, name: str, exit_code: int = 137) -> None:
        container = self.engine.containers[name]
        container.state, container.exit_code = ContainerState.EXITED, exit_code

    def vanish(self, name: str) -> None:
        self.engine.containers.pop(name, None)

    def ours(self) -> dict[str, FakeContainer]:
        return {
            n: c
            for n, c in self.engine.containers.items()
            if c.labels.get("clauderon.instance") == self.instance
        }

    def _enter(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        hook = self._hooks.get(method)
        if hook is not None:
            hook(*args)
        if self.engine.down:
            raise BackendUnavailable("the fake engine is down")
        failures = self._failures.get(method)
        if failures:
            raise failures.pop(0)

    def _mine(self, name: str) -> FakeContainer | None:
        container = self.engine.containers.get(name)
        if container is None or container.labels.get("clauderon.instance") != self.instance:
            return None
        return container

    # --- the engine ----------------------------------------------------------------------

    def check(self) -> None:
        self._enter("check")

    def architecture(self) -> str:
        self._enter("architecture")
        return "x64"

    # --- images ----------------------------------------------------------------------------

    def validate_image(self, image: str) -> str:
        return validate_image_name(image)

    def ensure_image(self, image: str, policy: str, progress: Progress) -> None:
        self._enter("ensure_image", image, policy)
        with self.engine.lock:
            present = image in self.engine.images
            if policy == "never" and not present:
                raise ImageError(f"image {image!r} is not present (pull policy 'never')")
            if policy == "always" or not present:
                if image not in self.engine.pullable and not present:
                    raise ImageError(f"image {image!r} could not be pulled")
                self.engine.images.add(image)

    def refresh_image(self, image: str, progress: Progress) -> str | None:
        self._enter("refresh_image", image)
        if image not in self.engine.pullable:
            if image not in self.engine.images:
                raise ImageError(f"could not pull {image!r} and there is no local copy")
            return "the registry did not answer"
        self.engine.images.add(image)
        return None

    def image_id(self, image: str) -> str:
        self._enter("image_id", image)
        return f"sha256:{abs(hash(image)):x}"

    def image_facts(self, image: str) -> ImageFacts:
        self._enter("image_facts", image)
        return ImageFacts(self.image_id(image), self.commands, False, "/usr/bin:/bin")

    # --- containers ---------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> str:
        self._enter("create", spec)
        with self.engine.lock:
            if spec.name in self.engine.containers:
                raise ClauderonError(
                    f"a container named {spec.name} already exists", code="conflict", status=409
                )
            self.engine.volumes.update(m.source for m in spec.mounts if m.volume)
            self.engine.containers[spec.name] = FakeContainer(spec)
        return f"id-{spec.name}"

    def start(self, name: str) -> None:
        self._enter("start", name)
        container = self._mine(name)
        if container is None:
            raise ClauderonError(f"container {name} is missing", code="backend_error")
        container.state, container.exit_code = ContainerState.RUNNING, None
        container.starts += 1

    def stop(self, name: str) -> None:
        self._enter("stop", name)
        container = self._mine(name)
        if container is not None and container.state == ContainerState.RUNNING:
            container.state, container.exit_code = ContainerState.EXITED, 143

    def remove(self, name: str) -> None:
        self._enter("remove", name)
        with self.engine.lock:
            if self._mine(name) is not None:
                del self.engine.containers[name]

    def _status(self, name: str, container: FakeContainer) -> ContainerStatus:
        return ContainerStatus(name, container.state, container.exit_code, dict(container.labels))

    def inspect(self, name: str) -> ContainerStatus | None:
        self._enter("inspect", name)
        container = self._mine(name)
        return None if container is None else self._status(name, container)

    def inspect_all(self, labels: dict[str, str]) -> dict[str, ContainerStatus]:
        self._enter("inspect_all", labels)
        with self.engine.lock:
            return {
                name: self._status(name, c)
                for name, c in self.engine.containers.items()
                if all(c.labels.get(k) == v for k, v in labels.items())
            }

    def logs(self, name: str, follow: bool, tail: int | None) -> Iterator[bytes]:
        self._enter("logs", name, follow, tail)
        return iter([f"log of {name}\n".encode()])

    def attach(self, name: str) -> socket.socket:
        self._enter("attach", name)
        ours, theirs = socket.socketpair()
        self.attached.append(theirs)
        return ours

    def resize(self, name: str, rows: int, cols: int) -> None:
        self._enter("resize", name, rows, cols)

    # --- shared caches ------------------------------------------------------------------

    def cache_volumes(self, names: list[str]) -> list[CacheVolume]:
        self._enter("cache_volumes", names)
        used: dict[str, list[str]] = {n: [] for n in names}
        for cname, c in self.engine.containers.items():
            for m in c.spec.mounts:
                if m.volume and m.source in used:
                    used[m.source].append(cname)
        return [CacheVolume(n, None, sorted(used[n]), n in self.engine.volumes) for n in names]

    def remove_volume(self, name: str) -> None:
        self._enter("remove_volume", name)
        self.engine.volumes.discard(name)

    def remove_legacy_network(self) -> None:
        self._enter("remove_legacy_network")
