"""The Docker backend: turns a ContainerSpec into calls on the Docker Engine API.

It implements `backends.Backend`; what only Docker has (the docker CLI, its networks, the
root container that hands a cache volume to the user) stays here."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar, cast

import docker
import docker.errors
import docker.models.containers
import docker.models.volumes
import docker.types
import requests.exceptions

from ..errors import ClauderonError, DockerUnavailable, ImageError, InvalidInput
from ..spec import ContainerSpec
from . import CacheVolume, ContainerState, ContainerStatus, ImageFacts, Progress

MANAGED_LABEL = "clauderon.managed"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PIDS_LIMIT = 4096

_IMAGE_RE = re.compile(
    r"^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?|localhost(?::[0-9]+)?)/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
_EXIT_RE = re.compile(r"Exited \((-?\d+)\)")
_P = ParamSpec("_P")
_T = TypeVar("_T")
_STATES = {s.value: s for s in ContainerState}


def container_state(word: str) -> ContainerState:
    """Docker's word for a container's state as a ContainerState (the words match)."""
    state = _STATES.get(word, ContainerState.UNKNOWN)
    return ContainerState.UNKNOWN if state == ContainerState.MISSING else state


# Commands the probe looks for. `sh` is required; the rest decide what clauderon provides.
_PROBE = r"""
for c in sh bash git curl wget claude codex sccache chown; do
  if command -v "$c" >/dev/null 2>&1; then echo "cmd=$c"; fi
done
if ls /lib/ld-musl-* >/dev/null 2>&1; then echo musl=1; fi
echo "path=$PATH"
"""


def validate_image_name(image: str) -> str:
    if not image or len(image) > 255 or not _IMAGE_RE.fullmatch(image):
        raise InvalidInput(
            f"invalid image name {image!r}: expected a Docker reference such as "
            "debian:bookworm or registry.example.com/team/image:tag"
        )
    return image


def _split_image(image: str) -> tuple[str, str | None]:
    if "@" in image:
        repo, digest = image.split("@", 1)
        return repo, digest
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
        return repo, tag
    return image, "latest"


def _api_message(exc: Exception) -> str:
    if isinstance(exc, docker.errors.APIError):
        text = exc.explanation or str(exc)
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        return str(text).strip()
    return str(exc).strip()


class DockerBackend:
    kind = "docker"

    def __init__(self, instance: str, client: docker.DockerClient | None = None) -> None:
        self.instance = instance
        self._client = client
        self._lock = threading.Lock()
        self._volumes: set[str] = set()  # cache volumes known to exist

    # --- connection -----------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                try:
                    self._client = docker.from_env(timeout=120)
                except docker.errors.DockerException as exc:
                    raise self._unavailable(exc) from exc
            return self._client

    @staticmethod
    def _unavailable(exc: Exception) -> DockerUnavailable:
        text = str(exc)
        if "Permission denied" in text or "PermissionError" in text:
            return DockerUnavailable(
                "permission denied on the Docker socket: run `sudo usermod -aG docker $USER && "
                "newgrp docker`"
            )
        return DockerUnavailable(
            "the Docker engine is not running or not reachable: start it (e.g. `sudo systemctl "
            "start docker`) and check with `docker info`"
        )

    def _call(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run an engine call, turning a lost connection into the one clear error. Every
        other error (the engine answered: a container failed, a name is taken…) is left
        for the caller to explain."""
        try:
            return fn(*args, **kwargs)
        except requests.exceptions.ConnectionError as exc:
            raise self._unavailable(exc) from exc
        except docker.errors.DockerException as exc:
            if type(exc) is docker.errors.DockerException:  # the SDK's "cannot connect"
                raise self._unavailable(exc) from exc
            raise

    def check(self) -> None:
        self._call(self.client.ping)

    def architecture(self) -> str:
        arch = str(self._call(self.client.info).get("Architecture", "x86_64"))
        return {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
            arch, arch
        )

    # --- images ---------------------------------------------------------------------

    def validate_image(self, image: str) -> str:
        return validate_image_name(image)

    def _image_present(self, image: str) -> bool:
        try:
            self._call(self.client.images.get, image)
            return True
        except docker.errors.ImageNotFound:
            return False

    def ensure_image(self, image: str, policy: str, progress: Progress) -> None:
        validate_image_name(image)
        present = self._image_present(image)
        if policy == "never":
            if not present:
                raise ImageError(
                    f"image {image!r} is not present locally and the pull policy is 'never': "
                    f"build or pull it first (docker pull {image})"
                )
            return
        if policy == "if-not-present" and present:
            return
        try:
            self._pull(image, progress)
        except ClauderonError as exc:
            if present:  # policy "always": a local copy exists, but the user asked for fresh
                raise ImageError(
                    f"could not pull {image!r} ({exc.message}); use --pull-policy "
                    "if-not-present to run the local copy"
                ) from exc
            raise ImageError(
                f"image {image!r} is not present locally and could not be pulled: {exc.message}"
            ) from exc

    def refresh_image(self, image: str, progress: Progress) -> str | None:
        try:
            self._pull(image, progress)
            return None
        except ClauderonError as exc:
            if not self._image_present(image):
                raise ImageError(
                    f"could not pull {image!r} and there is no local copy: {exc.message}"
                ) from exc
            return exc.message

    def _pull(self, image: str, progress: Progress) -> None:
        repo, tag = _split_image(image)
        layers: dict[str, tuple[int, int]] = {}
        progress(f"Pulling {image}", None, None)
        try:
            stream = self._call(self.client.api.pull, repo, tag=tag, stream=True, decode=True)
            for event in stream:
                if "error" in event:
                    raise ClauderonError(str(event["error"]).strip())
                detail = event.get("progressDetail") or {}
                layer = event.get("id")
                if layer and detail.get("total"):
                    layers[layer] = (detail.get("current", 0), detail["total"])
                    done = sum(c for c, _ in layers.values())
                    total = sum(t for _, t in layers.values())
                    progress(f"Pulling {image}", done, total)
        except (docker.errors.APIError, docker.errors.NotFound) as exc:
            raise ClauderonError(_api_message(exc)) from exc

    def image_facts(self, image: str) -> ImageFacts:
        image_id = self.image_id(image)
        try:
            output = self._call(
                self.client.containers.run,
                image,
                entrypoint=["/bin/sh", "-c", _PROBE],
                command=[],
                network_mode="none",
                remove=True,
                user="0",
                labels={
                    MANAGED_LABEL: "true",
                    "clauderon.instance": self.instance,
                    "clauderon.role": "probe",
                },
            )
        except docker.errors.ContainerError as exc:
            raise ImageError(f"image {image!r} cannot run a shell: {exc.stderr!r}") from exc
        except docker.errors.APIError as exc:
            raise ImageError(
                f"image {image!r} has no /bin/sh, which clauderon needs to start the agent "
                f"({_api_message(exc)})"
            ) from exc
        lines = output.decode(errors="replace").splitlines()
        commands = frozenset(line[4:] for line in lines if line.startswith("cmd="))
        path = next((line[5:] for line in lines if line.startswith("path=")), "")
        return ImageFacts(
            image_id=image_id, commands=commands, musl="musl=1" in lines, path=path or DEFAULT_PATH
        )

    def image_id(self, image: str) -> str:
        return str(self._call(self.client.images.get, image).id)

    # --- networks and volumes ---------------------------------------------------------

    @property
    def legacy_network_name(self) -> str:
        """The per-home sessions network of clauderon before 0.2 (sessions now have none)."""
        return f"clauderon-{self.instance}"

    def remove_legacy_network(self) -> None:
        """Remove the old sessions network once no container uses it (best effort)."""
        try:
            network = self._call(self.client.networks.get, self.legacy_network_name)
            if (network.attrs.get("Labels") or {}).get(MANAGED_LABEL) == "true":
                network.reload()
                if not network.attrs.get("Containers"):
                    network.remove()
        except (docker.errors.APIError, ClauderonError):
            pass

    def ensure_volumes(self, names: list[str], owner: str, image: str) -> None:
        """Make sure the shared cache volumes exist and belong to the user the containers
        run as ("uid:gid"), once per daemon. A new volume is root-owned, and one made by an
        earlier run as another user (root, say) is not writable by this one: either is
        handed over (recursively: a cache is only a cache) by one short root container
        with the session image, the only image known to be here."""
        unknown = [n for n in dict.fromkeys(names) if n not in self._volumes]
        if not unknown:
            return
        wrong_owner = []
        for name in unknown:
            try:
                volume = self._call(self.client.volumes.get, name)
            except docker.errors.NotFound:
                volume = self._call(
                    self.client.volumes.create,
                    name,
                    labels={MANAGED_LABEL: "true", "clauderon.cache": "true"},
                )
            if self._volume_owner(volume) != owner:
                wrong_owner.append(name)
        if wrong_owner:
            mounts = [
                docker.types.Mount(f"/volumes/{i}", name, type="volume")
                for i, name in enumerate(wrong_owner)
            ]
            script = (
                'for d in /volumes/*; do [ "$(stat -c %u:%g "$d" 2>/dev/null)" = "$1" ] '
                '|| chown -R "$1" "$d"; done'
            )
            self._call(
                self.client.containers.run,
                image,
                entrypoint=["/bin/sh", "-c", script, "chown", owner],
                command=[],
                user="0",
                network_mode="none",
                remove=True,
                mounts=mounts,
                labels={
                    MANAGED_LABEL: "true",
                    "clauderon.instance": self.instance,
                    "clauderon.role": "chown",
                },
            )
        self._volumes.update(unknown)

    @staticmethod
    def _volume_owner(volume: docker.models.volumes.Volume) -> str | None:
        """ "uid:gid" of a local volume's directory, when this process may look (root);
        None otherwise (then the root container checks)."""
        mountpoint = (volume.attrs or {}).get("Mountpoint")
        try:
            info = os.stat(mountpoint) if mountpoint else None
        except OSError:
            return None
        return f"{info.st_uid}:{info.st_gid}" if info else None

    def cache_volumes(self, names: list[str]) -> list[CacheVolume]:
        sizes: dict[str, int | None] = {}
        try:
            usage = self._call(self.client.df)
            for vol in usage.get("Volumes") or []:
                size = (vol.get("UsageData") or {}).get("Size")
                sizes[vol["Name"]] = size if size is not None and size >= 0 else None
        except docker.errors.APIError:
            pass
        users: dict[str, list[str]] = {n: [] for n in names}
        for container in self._call(self.client.api.containers, all=True):
            for mount in container.get("Mounts") or []:
                if mount.get("Type") == "volume" and mount.get("Name") in users:
                    users[mount["Name"]].append(container["Names"][0].lstrip("/"))
        result = []
        for name in names:
            try:
                self._call(self.client.volumes.get, name)
                exists = True
            except docker.errors.NotFound:
                exists = False
            result.append(CacheVolume(name, sizes.get(name), sorted(users[name]), exists))
        return result

    def remove_volume(self, name: str) -> None:
        self._volumes.discard(name)
        with contextlib.suppress(docker.errors.NotFound):
            self._call(self.client.volumes.get, name).remove()

    # --- containers -------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> str:
        self.ensure_volumes([m.source for m in spec.mounts if m.volume], spec.user, spec.image)
        mounts = [
            docker.types.Mount(
                m.target, m.source, type="volume" if m.volume else "bind", read_only=m.read_only
            )
            for m in spec.mounts
        ]
        kwargs: dict[str, Any] = {}
        if spec.restart:
            kwargs["restart_policy"] = {"Name": "unless-stopped"}
        if spec.cpu_limit:
            kwargs["nano_cpus"] = int(spec.cpu_limit * 1e9)
        if spec.memory_limit:
            kwargs["mem_limit"] = spec.memory_limit
            kwargs["memswap_limit"] = spec.memory_limit
        try:
            container = self._call(
                self.client.containers.create,
                spec.image,
                command=spec.command,
                entrypoint=[],
                name=spec.name,
                user=spec.user,
                environment=spec.env,
                working_dir=spec.workdir,
                labels=spec.labels,
                tty=spec.tty,
                stdin_open=True,
                detach=True,
                init=True,
                mounts=mounts,
                # Loopback only: nothing on the host, in other containers or outside is
                # reachable; the proxy socket mounted in is the one way out.
                network_mode="none",
                security_opt=["no-new-privileges"],
                cap_drop=["ALL"],
                pids_limit=PIDS_LIMIT,
                **kwargs,
            )
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise ClauderonError(
                    f"a container named {spec.name} already exists: remove it "
                    f"(docker rm -f {spec.name}) or choose another --name",
                    code="conflict",
                    status=409,
                ) from exc
            raise ClauderonError(
                f"docker could not create {spec.name}: {_api_message(exc)}",
                code="backend_error",
                status=500,
            ) from exc
        try:
            self._call(container.start)
        except docker.errors.APIError as exc:
            raise ClauderonError(
                f"docker could not start {spec.name}: {_api_message(exc)}",
                code="backend_error",
                status=500,
            ) from exc
        return str(container.id)

    def _container(self, name: str) -> docker.models.containers.Container:
        """The container of this name, only if this home made it: another home's (or
        anyone else's) container is never started, stopped or removed from here."""
        container = self._call(self.client.containers.get, name)
        if (container.labels or {}).get("clauderon.instance") != self.instance:
            raise docker.errors.NotFound(f"{name} belongs to another clauderon home")
        return container

    def start(self, name: str) -> None:
        try:
            self._call(self._container(name).start)
        except docker.errors.APIError as exc:
            raise ClauderonError(
                f"docker could not start {name}: {_api_message(exc)}",
                code="backend_error",
                status=500,
            ) from exc

    def stop(self, name: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self._call(self._container(name).stop, timeout=10)

    def remove(self, name: str) -> None:
        try:
            self._call(self._container(name).remove, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise

    def inspect(self, name: str) -> ContainerStatus | None:
        try:
            attrs = self._container(name).attrs
        except docker.errors.NotFound:
            return None
        state = attrs.get("State") or {}
        status = container_state(str(state.get("Status", "unknown")))
        return ContainerStatus(
            name=name,
            state=status,
            exit_code=state.get("ExitCode") if status.ended else None,
            labels=(attrs.get("Config") or {}).get("Labels") or {},
            isolated=(attrs.get("HostConfig") or {}).get("NetworkMode") == "none",
        )

    def inspect_all(self, labels: dict[str, str]) -> dict[str, ContainerStatus]:
        """Every matching container in one engine call (no per-container inspect)."""
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        result: dict[str, ContainerStatus] = {}
        for item in self._call(self.client.api.containers, all=True, filters=filters):
            name = item["Names"][0].lstrip("/")
            exit_match = _EXIT_RE.search(item.get("Status", ""))
            result[name] = ContainerStatus(
                name=name,
                state=container_state(str(item.get("State", "unknown"))),
                exit_code=int(exit_match.group(1)) if exit_match else None,
                labels=item.get("Labels") or {},
                isolated=(item.get("HostConfig") or {}).get("NetworkMode") == "none",
            )
        return result

    def logs(self, name: str, follow: bool, tail: int | None) -> Iterator[bytes]:
        """The output as a stream; its `close()` ends a follow from another thread."""
        container = self._container(name)
        stream = self._call(
            container.logs, stream=True, follow=follow, tail="all" if tail is None else tail
        )
        return cast(Iterator[bytes], stream)

    def attach(self, name: str) -> socket.socket:
        params = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        try:
            stream = self._call(self.client.api.attach_socket, name, params=params)
        except docker.errors.NotFound as exc:
            raise ClauderonError(
                f"container {name} is missing", code="conflict", status=409
            ) from exc
        return cast(socket.socket, stream._sock if hasattr(stream, "_sock") else stream)

    def resize(self, name: str, rows: int, cols: int) -> None:
        with contextlib.suppress(docker.errors.APIError):
            self._call(self.client.api.resize, name, height=rows, width=cols)
