"""The proxy's certificate authority: made once, its key never leaves the host.

`proxy-ca.pem` (the certificate, mounted read-only into containers at
/etc/clauderon/proxy-ca.pem) and `proxy-ca-key.pem` (mode 0600, never mounted) live in
the clauderon home. mitmproxy reads both from its own file in `proxy/` (also 0600).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mitmproxy import certs

from ..errors import ClauderonError

KEY_SIZE = 2048


class CAError(ClauderonError):
    code = "proxy_ca_error"
    status = 500


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)


def ensure_ca(home: Path) -> tuple[Path, Path]:
    """Return (certificate, mitmproxy confdir), creating the CA the first time."""
    cert_path, key_path = home / "proxy-ca.pem", home / "proxy-ca-key.pem"
    confdir = home / "proxy"
    try:
        home.mkdir(parents=True, exist_ok=True)
        if not (cert_path.exists() and key_path.exists()):
            key, cert = certs.create_ca(
                organization="clauderon",
                cn=f"clauderon proxy CA ({socket.gethostname()})",
                key_size=KEY_SIZE,
            )
            _write_private(
                key_path,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.TraditionalOpenSSL,
                    serialization.NoEncryption(),
                ),
            )
            cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            cert_path.chmod(0o644)
        if key_path.stat().st_mode & 0o077:
            key_path.chmod(0o600)  # the key is the proxy's alone
        x509.load_pem_x509_certificate(cert_path.read_bytes())  # fail early if damaged
        confdir.mkdir(mode=0o700, exist_ok=True)
        _write_private(confdir / "mitmproxy-ca.pem", key_path.read_bytes() + cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CAError(f"cannot prepare the proxy CA in {home}: {exc}") from exc
    return cert_path, confdir
