"""The node images' root filesystems: the base folders and users, the
files and links asked for, the same bytes for the same content (so the
cache's names, by content hash, stay put), and busybox's applets linked to
it without a link in place of busybox itself."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from netplane.node.runtime import images


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_a_root_filesystem_has_its_files_links_and_base() -> None:
    data = images.rootfs({"echo": b"\x7fELF"}, links=[("bin/sh", "busybox")])
    got = members(data)
    assert {"bin", "dev", "etc", "proc", "sys", "tmp", "etc/passwd", "etc/group"} <= set(got)
    assert got["echo"].isfile() and got["echo"].mode == 0o755
    assert got["bin/sh"].issym() and got["bin/sh"].linkname == "busybox"
    assert got["tmp"].mode == 0o1777
    assert data == images.rootfs({"echo": b"\x7fELF"}, links=[("bin/sh", "busybox")])


def test_applets_leave_busybox_itself_out() -> None:
    box = images.BUSYBOX
    if not box.is_file():
        pytest.skip("busybox-static is not installed")
    names = images.applets(box)
    assert "busybox" not in names and {"sh", "wget", "head", "tail", "sleep"} <= set(names)


def test_images_are_cached_by_content(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in (images.PAUSE_BINARY, "netplane-echo"):
        (bin_dir / name).write_bytes(b"program " + name.encode())
    if not images.BUSYBOX.is_file():
        pytest.skip("busybox-static is not installed")
    first = images.built_images(bin_dir=bin_dir, cache=tmp_path / "cache")
    again = images.built_images(bin_dir=bin_dir, cache=tmp_path / "cache")
    assert [b.tarball for b in first] == [b.tarball for b in again]
    assert {n for b in first for n in b.names} == set(images.NAMES)
    (bin_dir / images.PAUSE_BINARY).write_bytes(b"another pause")
    changed = images.built_images(bin_dir=bin_dir, cache=tmp_path / "cache")
    pause = next(i for i, b in enumerate(first) if images.PAUSE_IMAGE in b.names)
    assert changed[pause].tarball != first[pause].tarball
    assert changed[0].tarball == first[0].tarball
    (bin_dir / images.PAUSE_BINARY).unlink()
    with pytest.raises(images.ImageBuildError, match=r"setup\.sh builds it"):
        images.built_images(bin_dir=bin_dir, cache=tmp_path / "cache")
