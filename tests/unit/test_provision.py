"""Unpacking an agent's npm tarball: nothing may land outside the target folder.

The tarball comes from a registry: hostile members must be refused on every supported
Python, both where `tarfile` has the `data` filter (3.11.4+) and on Debian bookworm's
3.11.2, which does not (the fallback is forced here by hiding the filter)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from clauderon.agents import provision
from clauderon.agents.provision import ProvisionError, safe_extract


def make_tar(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                archive.addfile(info)
    return path


def regular(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o644
    return info, None


HOSTILE: dict[str, Callable[[], list]] = {
    "absolute path": lambda: [regular("/tmp/clauderon-evil")],
    "dot-dot": lambda: [regular("package/../../evil")],
    "symlink to an absolute path": lambda: [special("package/l", tarfile.SYMTYPE, "/etc")],
    "symlink out with dot-dot": lambda: [special("package/l", tarfile.SYMTYPE, "../../..")],
    "write through a symlink": lambda: [
        special("package/l", tarfile.SYMTYPE, "/tmp"),
        regular("package/l/evil"),
    ],
    "hard link outside": lambda: [special("package/h", tarfile.LNKTYPE, "/etc/passwd")],
    "character device": lambda: [special("package/null", tarfile.CHRTYPE)],
    "block device": lambda: [special("package/disk", tarfile.BLKTYPE)],
    "fifo": lambda: [special("package/fifo", tarfile.FIFOTYPE)],
}


@pytest.fixture(params=["data filter", "fallback (3.11.2)"])
def python_kind(request, monkeypatch) -> str:
    if request.param.startswith("fallback"):
        # What Debian bookworm's Python 3.11.2 looks like: no `filter=` in extractall.
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
        original = tarfile.TarFile.extractall

        def extractall(self, path=".", members=None, *, numeric_owner=False, **kwargs):
            if kwargs:
                raise TypeError(f"unexpected keyword arguments {sorted(kwargs)}")
            return original(self, path, members, numeric_owner=numeric_owner)

        monkeypatch.setattr(tarfile.TarFile, "extractall", extractall)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile data filter")
    return request.param


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_member_is_refused_and_nothing_lands_outside(
    tmp_path: Path, python_kind: str, case: str
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    tarball = make_tar(tmp_path / "evil.tgz", regular("package/ok"), *HOSTILE[case]())
    before = sorted(p.name for p in tmp_path.iterdir())
    with tarfile.open(tarball) as archive:
        try:
            safe_extract(archive, target)
        except ProvisionError:
            pass
        else:  # the data filter makes an absolute name relative rather than refusing it
            assert (python_kind, case) == ("data filter", "absolute path")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    for path in target.rglob("*"):
        assert path.is_dir() or path.is_file()  # no device, fifo or link was made
        assert path.resolve().is_relative_to(target.resolve())


def test_a_normal_package_is_unpacked_without_set_id_bits(tmp_path: Path, python_kind: str) -> None:
    target = tmp_path / "target"
    target.mkdir()
    tarball = make_tar(
        tmp_path / "ok.tgz",
        regular("package/package.json", b"{}"),
        regular("package/bin/agent", b"#!/bin/sh\n", mode=0o4777),
        special("package/link", tarfile.SYMTYPE, "bin/agent"),
        special("package/hard", tarfile.LNKTYPE, "package/package.json"),
    )
    with tarfile.open(tarball) as archive:
        safe_extract(archive, target)
    agent = target / "package" / "bin" / "agent"
    assert agent.read_bytes() == b"#!/bin/sh\n"
    assert agent.stat().st_mode & 0o7777 == 0o755
    assert (target / "package" / "link").resolve() == agent.resolve()
    assert (target / "package" / "hard").read_bytes() == b"{}"


def test_the_fallback_is_what_runs_without_the_data_filter(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    seen: list[int] = []
    original = provision.checked_members

    def spy(archive, target):
        members = original(archive, target)
        seen.append(len(members))
        return members

    monkeypatch.setattr(provision, "checked_members", spy)
    tarball = make_tar(tmp_path / "ok.tgz", regular("package/a"))
    with tarfile.open(tarball) as archive:
        safe_extract(archive, tmp_path)
    assert seen == [1]
