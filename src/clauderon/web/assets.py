"""xterm.js for the web UI, from the npm registry: pinned versions, integrity checked.

`npm pack` fetches each package with the machine's own npm settings (registry, proxy,
cache) — no registry host is written here — and reports the tarball's integrity, which
must equal the pinned one. Only the few files the pages load are kept, with the licences,
in `static/vendor/` (gitignored; shipped as package data).

Run as a script (`python3 src/clauderon/web/assets.py`) by scripts/install.sh and
scripts/test.sh before the package is installed, or as `clauderon web --fetch-assets`.
It uses the standard library only, so it runs before anything is installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# package@version → its sha512 integrity as the registry publishes it (`npm view … dist`).
PACKAGES = {
    "@xterm/xterm@6.0.0": (
        "sha512-TQwDdQGtwwDt+2cgKDLn0IRaSxYu1tSUjgKarSDkUM0ZNiSRXFpjxEsvc/Zgc5kq5omJ+V0a8/kIM2WD3sMOYg=="
    ),
    "@xterm/addon-fit@0.11.0": (
        "sha512-jYcgT6xtVYhnhgxh3QgYDnnNMYTcf8ElbxxFzX0IZo+vabQqSPAjC3c1wJrKB5E19VwQei89QCiZZP86DCPF7g=="
    ),
}
# (package, path in its tarball) → file name in static/vendor/
FILES = {
    ("@xterm/xterm@6.0.0", "package/lib/xterm.mjs"): "xterm.mjs",
    ("@xterm/xterm@6.0.0", "package/css/xterm.css"): "xterm.css",
    ("@xterm/xterm@6.0.0", "package/LICENSE"): "xterm.LICENSE",
    ("@xterm/addon-fit@0.11.0", "package/lib/addon-fit.mjs"): "addon-fit.mjs",
    ("@xterm/addon-fit@0.11.0", "package/LICENSE"): "addon-fit.LICENSE",
}
MAX_FILE = 8 * 1024 * 1024
STAMP = "VERSIONS"  # what is in the directory
VENDOR = Path(__file__).resolve().parent / "static" / "vendor"


class FetchError(Exception):
    pass


def _pack(npm: str, spec: str, staging: Path) -> Path:
    try:
        proc = subprocess.run(
            [npm, "pack", "--json", "--pack-destination", str(staging), spec],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise FetchError(f"npm pack {spec} did not finish in 300s") from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(f"could not fetch {spec} from the npm registry: {detail}")
    try:
        (info,) = json.loads(proc.stdout)
        integrity, filename = info["integrity"], info["filename"]
    except (ValueError, KeyError, TypeError):
        raise FetchError(f"npm pack {spec} answered something unexpected") from None
    if integrity != PACKAGES[spec]:
        raise FetchError(f"{spec} from the registry has integrity {integrity}, not the pinned one")
    return staging / Path(filename).name


def _extract(tarball: Path, spec: str, out: Path) -> None:
    wanted = {path: name for (pkg, path), name in FILES.items() if pkg == spec}
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            name = wanted.pop(member.name, None)
            if name is None:
                continue
            if not member.isfile() or member.size > MAX_FILE:
                raise FetchError(f"{spec}: {member.name} is not a regular file of sane size")
            source = archive.extractfile(member)
            assert source is not None
            (out / name).write_bytes(source.read(MAX_FILE + 1))
    if wanted:
        raise FetchError(f"{spec} lacks {', '.join(sorted(wanted))}")


def fetch(target: Path = VENDOR) -> None:
    """Fill `target` with the pinned files; a failure leaves what was there untouched."""
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError(
            "npm is not installed (sudo apt-get install npm), so xterm.js cannot be fetched"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clauderon-web-") as tmp:
        staging, out = Path(tmp) / "packs", Path(tmp) / "vendor"
        staging.mkdir()
        out.mkdir()
        for spec in PACKAGES:
            _extract(_pack(npm, spec, staging), spec, out)
        (out / STAMP).write_text(_stamp())
        new = target.with_name(target.name + ".new")
        shutil.rmtree(new, ignore_errors=True)
        shutil.copytree(out, new)
        shutil.rmtree(target, ignore_errors=True)
        new.rename(target)


def _stamp() -> str:
    return "".join(f"{spec} {integrity}\n" for spec, integrity in PACKAGES.items())


def up_to_date(target: Path = VENDOR) -> bool:
    """Every file is there, from the pinned versions."""
    return problem(target) is None


def problem(target: Path = VENDOR) -> str | None:
    """What is wrong with `target`: missing, incomplete, or other versions; None if fine."""
    try:
        stamp = (target / STAMP).read_text()
    except OSError:
        return f"missing from {target}"
    if stamp != _stamp():
        return f"other versions than the pinned ones in {target}"
    absent = sorted(name for name in FILES.values() if not (target / name).is_file())
    return f"incomplete in {target} (no {', '.join(absent)})" if absent else None


def main(argv: list[str]) -> int:
    if "--if-missing" in argv and up_to_date():
        return 0
    try:
        fetch()
    except (FetchError, OSError) as exc:
        print(f"clauderon: error: web UI assets: {exc}", file=sys.stderr)
        return 1
    print(f"web UI assets (xterm.js) in {VENDOR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
