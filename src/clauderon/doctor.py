"""`clauderon doctor`: checks run in the CLI's own process, so they work when the daemon
cannot start. Every check reports ok, or the problem and its fix; a check that cannot run
says why. Nothing here needs root or any tool beyond Docker's API, git and a C compiler."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .forwarder import INSTALL_FIX, binary_path, compiler
from .models import DEFAULT_IMAGE
from .paths import Paths

MIN_FREE_BYTES = 2 * 1024**3
MIN_GIT = (2, 31)  # GIT_CONFIG_COUNT, used inside containers


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # a failed warning does not fail `doctor`


def _docker_info() -> tuple[Any, dict[str, Any] | None, Check]:
    """The engine client, its `info`, and the check that says whether it answered."""
    import docker
    import docker.errors

    from .backends.docker import DockerBackend

    try:
        client = docker.from_env(timeout=10)
        info = client.info()
    except Exception as exc:  # any way of not reaching the engine is the same answer
        failure = DockerBackend._unavailable(exc)
        detail, _, fix = failure.message.partition(": ")
        return None, None, Check("docker", False, detail, fix or failure.message)
    rootless = any("rootless" in str(o) for o in info.get("SecurityOptions") or [])
    kind = "rootless" if rootless else "rootful"
    version = info.get("ServerVersion")
    return client, info, Check("docker", True, f"engine {version} ({kind}) reachable")


def _isolation_check(info: dict[str, Any] | None) -> Check:
    """Which isolation applies: sessions have no network but loopback (engine-enforced,
    no root needed); the proxy socket mounted into each is their only way out."""
    if info is None:
        return Check(
            "isolation",
            False,
            "cannot be checked: the Docker engine does not answer (see the docker check)",
            "fix the docker check first",
            warning=True,
        )
    drivers = (info.get("Plugins") or {}).get("Network") or []
    if drivers and "null" not in drivers:
        return Check(
            "isolation",
            False,
            f"this engine has no 'none' network driver (it has {', '.join(drivers)}): "
            "sessions cannot be cut off from the network",
            "use Docker Engine 20.10 or newer (e.g. sudo apt-get install docker.io)",
        )
    return Check(
        "isolation",
        True,
        "sessions run with no network but loopback (enforced by the engine, no root "
        "needed); their only way out is their own proxy socket",
    )


def _forwarder_check(paths: Paths) -> Check:
    built = binary_path(paths.home / "bin")
    if built.is_file():
        return Check("forwarder", True, f"built ({built})")
    cc = compiler()
    if cc is None:
        return Check(
            "forwarder",
            False,
            "no C compiler to build the in-container forwarder: `create` will refuse",
            INSTALL_FIX,
        )
    return Check("forwarder", True, f"built with {cc} on the first create")


def _image_check(client: Any) -> Check:
    import docker.errors

    if client is None:
        return Check(
            "default image",
            False,
            "cannot be checked: the Docker engine does not answer",
            "fix the docker check first",
            warning=True,
        )
    try:
        client.images.get(DEFAULT_IMAGE)
    except docker.errors.ImageNotFound:
        return Check(
            "default image",
            False,
            f"{DEFAULT_IMAGE} is missing",
            "build it with scripts/build-images.sh (or pass --image to create)",
            warning=True,
        )
    return Check("default image", True, f"{DEFAULT_IMAGE} is present")


def _disk_check(name: str, path: str, fix: str) -> Check:
    try:
        free = shutil.disk_usage(path).free
    except OSError as exc:
        return Check(name, True, f"cannot be read from here ({exc.strerror}); not checked")
    gib = free / 1024**3
    return Check(name, free >= MIN_FREE_BYTES, f"{gib:.1f} GiB free", fix)


def _git_check() -> Check:
    git = shutil.which("git")
    if git is None:
        return Check("git", False, "git is not installed", "sudo apt-get install git")
    out = subprocess.run(
        [git, "--version"], capture_output=True, text=True, timeout=10
    ).stdout.strip()
    parts = (out.split() or ["0"])[-1].split(".")
    version = tuple(int(p) for p in parts[:2] if p.isdigit())
    if version < MIN_GIT:
        return Check("git", False, out, f"upgrade git to {MIN_GIT[0]}.{MIN_GIT[1]} or newer")
    return Check("git", True, out)


def _home_check(paths: Paths) -> Check:
    home = paths.home
    if not home.exists():
        return Check("home", True, f"{home} will be created on first use")
    info = home.stat()
    if info.st_uid != os.getuid():
        return Check(
            "home",
            False,
            f"{home} belongs to uid {info.st_uid}, not to you (uid {os.getuid()})",
            f"sudo chown -R {os.getuid()}:{os.getgid()} {home}",
        )
    mode = info.st_mode & 0o777
    if mode & 0o077:
        return Check(
            "home", False, f"{home} is readable by others (mode {mode:o})", f"chmod 700 {home}"
        )
    if paths.socket.exists() and paths.socket.stat().st_mode & 0o077:
        return Check("home", False, f"{paths.socket} is open to others", "clauderon daemon stop")
    return Check("home", True, f"{home} (private)")


def _user_check() -> Check:
    if os.getuid() == 0:
        return Check(
            "user",
            True,
            "running as root: containers run as uid 0 (with every capability dropped)",
        )
    return Check(
        "user",
        True,
        f"running as uid {os.getuid()}: containers run as {os.getuid()}:{os.getgid()}, "
        "so what the agent writes is yours and no step needs root",
    )


def _npm_check() -> Check:
    npm = shutil.which("npm")
    return Check(
        "npm",
        npm is not None,
        "present (fetches an agent when an image has none)"
        if npm
        else "not installed: images without an agent cannot get one",
        "sudo apt-get install npm, or use images with the agent installed (--image)",
        warning=True,
    )


def web_assets_check(vendor: Path | None = None) -> Check:
    """The web UI's xterm.js in the package: there, complete, and the pinned versions."""
    from .web import FETCH_COMMAND, assets

    target = vendor or assets.VENDOR
    problem = assets.problem(target)
    return Check(
        "web ui",
        problem is None,
        f"{', '.join(assets.PACKAGES)} present"
        if problem is None
        else f"xterm.js {problem}: `clauderon web` cannot serve its terminal",
        f"{FETCH_COMMAND} (needs npm)",
        warning=True,
    )


def _python_check() -> Check:
    version = ".".join(str(v) for v in sys.version_info[:3])
    return Check("python", True, f"{version} ({sys.executable})")


def _guarded(name: str, check: Callable[[], Check]) -> Check:
    """Run one check; if it cannot run, say why instead of failing `doctor`."""
    try:
        return check()
    except Exception as exc:
        return Check(
            name,
            False,
            f"could not be checked ({type(exc).__name__}: {exc})",
            "run `clauderon doctor` again; if this persists, report it with this line",
            warning=True,
        )


def run_checks() -> list[Check]:
    paths = Paths.from_env()
    client, info, docker_check = None, None, None
    try:
        client, info, docker_check = _docker_info()
    except Exception as exc:  # e.g. the docker package itself is broken
        docker_check = Check(
            "docker", False, f"could not be checked ({type(exc).__name__}: {exc})", "docker info"
        )
    checks = [
        _guarded("user", _user_check),
        _guarded("python", _python_check),
        docker_check,
        _guarded("isolation", lambda: _isolation_check(info)),
        _guarded("forwarder", lambda: _forwarder_check(paths)),
    ]
    if info is not None:
        root = info.get("DockerRootDir", "/var/lib/docker")
        checks.append(
            _guarded(
                "disk",
                lambda: _disk_check(
                    f"disk ({root})", root, "docker system df, then docker system prune -a"
                ),
            )
        )
    checks += [
        _guarded("default image", lambda: _image_check(client)),
        _guarded("git", _git_check),
        _guarded("home", lambda: _home_check(paths)),
        _guarded(
            "disk",
            lambda: _disk_check(
                f"disk ({paths.home.parent})",
                str(paths.home.parent),
                f"free space under {paths.home.parent}",
            ),
        ),
        _guarded("npm", _npm_check),
        _guarded("web ui", web_assets_check),
    ]
    return checks
