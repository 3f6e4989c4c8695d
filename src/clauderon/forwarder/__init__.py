"""The in-container forwarder: `forward.c`, built once per source version on the host.

Session containers have no network but loopback. This static program (no libc feature
that needs NSS or any file of the image, so it runs in any image of the same machine
architecture, glibc or musl) listens on 127.0.0.1:<port> inside the container and joins
each client to the session's proxy socket. It is compiled with the host's C compiler the
first time a session needs it, into `<home>/bin/clauderon-forward-<source hash>`, and
mounted read-only.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import ClauderonError

SOURCE = Path(__file__).with_name("forward.c")
CONTAINER_PATH = "/opt/clauderon/forward"
INSTALL_FIX = "sudo apt-get install gcc libc6-dev"


class ForwarderUnavailable(ClauderonError):
    code = "forwarder_unavailable"
    status = 503


def binary_path(bin_dir: Path) -> Path:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    return bin_dir / f"clauderon-forward-{digest}"


def compiler() -> str | None:
    """The C compiler: $CC if set (and found), else cc or gcc on the PATH."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return shutil.which("cc") or shutil.which("gcc")


def ensure_forwarder(bin_dir: Path) -> Path:
    """Return the forwarder binary, compiling it the first time (about a second)."""
    target = binary_path(bin_dir)
    if target.is_file():
        return target
    bin_dir.mkdir(parents=True, exist_ok=True)
    with open(bin_dir / ".forward.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        cc = compiler()
        if cc is None:
            raise ForwarderUnavailable(
                "sessions need clauderon's small network forwarder, which is compiled on "
                f"first use, and there is no C compiler: run `{INSTALL_FIX}`"
            )
        fd, tmp = tempfile.mkstemp(prefix=".forward-", dir=bin_dir)
        os.close(fd)
        try:
            proc = subprocess.run(
                [cc, "-static", "-O2", "-o", tmp, str(SOURCE)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if proc.returncode != 0:
                reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise ForwarderUnavailable(
                    f"could not compile clauderon's network forwarder ({reason}): "
                    f"run `{INSTALL_FIX}`"
                )
            os.chmod(tmp, 0o755)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target
