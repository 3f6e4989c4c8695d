"""Fetch an agent's native binary once per version, to share read-only with every session.

The binary comes from the npm registry with `npm pack` (which checks the package's
integrity and uses the host's registry settings), is unpacked under
`~/.clauderon/agents/<agent>/<version>-linux-<arch>[-musl]/`, and is mounted read-only
at `/opt/clauderon/agent` in containers whose image has no agent of its own.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from ..errors import ClauderonError
from . import Agent

CONTAINER_AGENT_DIR = "/opt/clauderon/agent"


class ProvisionError(ClauderonError):
    code = "agent_provision_failed"
    status = 502


def agent_dir(agents_root: Path, agent: Agent, version: str, arch: str, musl: bool) -> Path:
    return agents_root / agent.command / f"{version}-linux-{arch}{'-musl' if musl else ''}"


def ensure_agent(agents_root: Path, agent: Agent, version: str, arch: str, musl: bool) -> Path:
    """Return the directory holding `bin/<command>`, fetching it the first time."""
    target = agent_dir(agents_root, agent, version, arch, musl)
    if (target / "bin" / agent.command).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one fetch per version, however many sessions wait
        if (target / "bin" / agent.command).exists():
            return target
        _fetch(agent, version, arch, musl, target)
    return target


def _fetch(agent: Agent, version: str, arch: str, musl: bool, target: Path) -> None:
    spec, binaries = agent.npm_package(version, arch, musl)
    npm = shutil.which("npm")
    if npm is None:
        raise ProvisionError(
            f"the image has no {agent.command!r} and npm is not installed to fetch "
            f"{agent.display_name} {version}: install Node.js/npm, or use an image with "
            f"{agent.command} installed (--image)"
        )
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        proc = subprocess.run(
            [npm, "pack", "--silent", "--pack-destination", str(staging), spec],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        tarballs = list(staging.glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            reason = (proc.stderr.strip().splitlines() or ["no tarball"])[-1]
            raise ProvisionError(
                f"could not fetch {agent.display_name} {version} ({spec}) from the npm "
                f"registry: {reason}"
            )
        with tarfile.open(tarballs[0]) as archive:
            archive.extractall(staging, filter="data")
        tarballs[0].unlink()
        bin_dir = staging / "bin"
        bin_dir.mkdir()
        for member in binaries:
            binary = staging / member
            if not binary.is_file():
                raise ProvisionError(f"{spec} has no {member}; is {version} a real version?")
            binary.chmod(0o755)
            (bin_dir / binary.name).symlink_to(os.path.relpath(binary, bin_dir))
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
