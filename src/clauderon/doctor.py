"""`clauderon doctor`: checks run in the CLI's own process, so they work when the daemon
cannot start. Every failed check says how to fix it."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from .backends.docker import DockerBackend
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


def _docker_checks() -> list[Check]:
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=10)
        info = client.info()
    except docker.errors.DockerException as exc:
        failure = DockerBackend._unavailable(exc)
        return [
            Check(
                "docker", False, failure.message.split(":")[0], failure.message.split(": ", 1)[-1]
            )
        ]
    checks = [Check("docker", True, f"engine {info.get('ServerVersion')} reachable")]
    paths = Paths.from_env()
    checks.append(_isolation_check(DockerBackend(paths.instance, client), paths))
    root = info.get("DockerRootDir", "/var/lib/docker")
    checks.append(
        _disk_check(f"disk ({root})", root, "docker system df, then docker system prune -a")
    )
    try:
        client.images.get(DEFAULT_IMAGE)
        checks.append(Check("default image", True, f"{DEFAULT_IMAGE} is present"))
    except docker.errors.ImageNotFound:
        checks.append(
            Check(
                "default image",
                False,
                f"{DEFAULT_IMAGE} is missing",
                "build it with scripts/build-images.sh (or pass --image to create)",
                warning=True,
            )
        )
    return checks


def _isolation_check(backend: DockerBackend, paths: Paths) -> Check:
    """Whether containers are kept from every host port but the proxy's."""
    try:
        backend.client.networks.get(backend.network_name)
    except Exception:
        return Check("isolation", True, "the sessions network is made on the first create")
    listing = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True)
    if f"clauderon:{backend.instance}" in listing.stdout:
        return Check("isolation", True, "containers reach only the proxy on the host")
    return Check(
        "isolation",
        False,
        "containers may reach other services on the host's network address",
        "; ".join(backend.host_access_rules()).replace(" 0 ", " <proxy port> "),
        warning=True,
    )


def _disk_check(name: str, path: str, fix: str) -> Check:
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return Check(name, True, "cannot be read from here (not checked)")
    gib = free / 1024**3
    return Check(name, free >= MIN_FREE_BYTES, f"{gib:.1f} GiB free", fix)


def _git_check() -> Check:
    git = shutil.which("git")
    if git is None:
        return Check("git", False, "git is not installed", "install git (apt install git)")
    out = subprocess.run([git, "--version"], capture_output=True, text=True).stdout.strip()
    parts = out.split()[-1].split(".")
    version = tuple(int(p) for p in parts[:2] if p.isdigit())
    if version < MIN_GIT:
        return Check("git", False, out, f"upgrade git to {MIN_GIT[0]}.{MIN_GIT[1]} or newer")
    return Check("git", True, out)


def _home_check(paths: Paths) -> Check:
    home = paths.home
    if not home.exists():
        return Check("home", True, f"{home} will be created on first use")
    mode = home.stat().st_mode & 0o777
    if mode & 0o077:
        return Check(
            "home", False, f"{home} is readable by others (mode {mode:o})", f"chmod 700 {home}"
        )
    if paths.socket.exists() and paths.socket.stat().st_mode & 0o077:
        return Check("home", False, f"{paths.socket} is open to others", "clauderon daemon stop")
    return Check("home", True, f"{home} (private)")


def run_checks() -> list[Check]:
    paths = Paths.from_env()
    checks = _docker_checks()
    checks.append(_git_check())
    checks.append(_home_check(paths))
    checks.append(
        _disk_check(
            f"disk ({paths.home.parent})",
            str(paths.home.parent),
            f"free space under {paths.home.parent}",
        )
    )
    npm = shutil.which("npm")
    checks.append(
        Check(
            "npm",
            npm is not None,
            "present (fetches an agent when an image has none)"
            if npm
            else "not installed: images without an agent cannot get one",
            "install Node.js and npm, or use images with the agent installed",
            warning=True,
        )
    )
    if os.getuid() == 0:
        checks.append(
            Check(
                "user",
                True,
                "running as root: containers run as uid 0 (with all capabilities dropped)",
            )
        )
    return checks
