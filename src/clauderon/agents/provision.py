"""Fetch an agent's native binary once per version, to share read-only with every session.

The binary comes from the npm registry with `npm pack` (which checks the package's
integrity and uses the host's registry settings), is unpacked under
`~/.clauderon/agents/<agent>/<version>-linux-<arch>[-musl]/`, and is mounted read-only
at `/opt/clauderon/agent` in containers whose image has no agent of its own.
"""

from __future__ import annotations

import copy
import fcntl
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

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


def safe_extract(archive: tarfile.TarFile, target: Path) -> None:
    """Extract an untrusted tarball under `target` only: regular files, directories and
    links that stay inside; no absolute paths, `..`, devices or fifos.

    Python 3.11.4+ (and 3.12+) has the standard `data` filter for exactly this; Debian
    bookworm's 3.11.2 does not, so there every member is checked here first.
    """
    if hasattr(tarfile, "data_filter"):
        try:
            archive.extractall(target, filter="data")
        except tarfile.FilterError as exc:
            raise ProvisionError(f"the agent's package has an unsafe member: {exc}") from exc
        return
    archive.extractall(target, members=checked_members(archive, target))


def checked_members(archive: tarfile.TarFile, target: Path) -> list[tarfile.TarInfo]:
    """The members of `archive`, each checked to land inside `target` (the fallback for
    Pythons without `tarfile.data_filter`); raises ProvisionError on the first bad one.

    Stricter than the data filter where that is simpler to get right: a link's target
    has no `..` and no leading `/`, a hard link names a file seen before, and no member
    goes through a symbolic link of the archive."""
    root = os.path.realpath(target)
    files: set[str] = set()
    links: set[str] = set()
    members = []
    for original in archive.getmembers():
        name = original.name
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or ".." in parts:
            raise ProvisionError(f"the agent's package has an unsafe path: {name!r}")
        dest = os.path.realpath(os.path.join(root, name))
        if os.path.commonpath([root, dest]) != root:
            raise ProvisionError(f"the agent's package has a path outside its folder: {name!r}")
        normal = "/".join(p for p in parts if p != ".")
        if any("/".join(parts[:i]) in links for i in range(1, len(parts))):
            raise ProvisionError(f"the agent's package writes through a link: {name!r}")
        if original.issym():
            target_parts = PurePosixPath(original.linkname).parts
            if original.linkname.startswith("/") or ".." in target_parts:
                raise ProvisionError(
                    f"the agent's package links {name!r} outside: {original.linkname!r}"
                )
            links.add(normal)
        elif original.islnk():
            linked = "/".join(p for p in PurePosixPath(original.linkname).parts if p != ".")
            if linked not in files:
                raise ProvisionError(
                    f"the agent's package hard-links {name!r} to {original.linkname!r}"
                )
        elif original.isfile():
            files.add(normal)
        elif not original.isdir():
            raise ProvisionError(f"the agent's package has a special file: {name!r}")
        # As the data filter does: no set-id bits, no write for group/others, our owner.
        member = copy.copy(original)
        member.mode = original.mode & 0o755
        member.uid = member.gid = 0
        member.uname = member.gname = ""
        members.append(member)
    return members


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
            safe_extract(archive, staging)
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
