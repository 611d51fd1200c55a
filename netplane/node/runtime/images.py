"""The images every node of the docker runtime has, made on the machine (no
registry is needed): ``busybox`` (Debian's static busybox and its applets),
``netplane/echo`` (the echo server the process runtime runs too),
``netplane/toolbox`` (busybox with the machine's curl, dig and stress-ng
and the libraries they load: what the examples' client pods run) and
``netplane/pause`` (the sandbox that holds a pod's namespaces).

Each is a root filesystem tarball, written once into a cache directory
under a name that carries a hash of its content, and imported into each
engine that lacks it (``docker import``, with the image's command and
environment)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from netplane.node.runtime.command import ECHO_BINARY

CACHE = Path("/var/cache/netplane/images")
BUSYBOX = Path("/bin/busybox")
PAUSE_BINARY = "netplane-pause"  # built from pause.c by scripts/build-c.sh
PAUSE_IMAGE = "netplane/pause:3.10"
# Every name the node images go by: what an engine must have.
NAMES = ("busybox:latest", "netplane/echo:latest", "netplane/echo:1.0",
         "netplane/toolbox:latest", PAUSE_IMAGE)
TOOLS = (Path("/usr/bin/curl"), Path("/usr/bin/dig"), Path("/usr/bin/stress-ng"))
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Built:
    """An image to import: its names, root filesystem and Dockerfile-style changes."""

    names: tuple[str, ...]
    tarball: Path
    changes: tuple[str, ...]


def _add_file(tar: tarfile.TarFile, path: str, data: bytes, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(path)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, path: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(path)
    info.type, info.mode = tarfile.DIRTYPE, mode
    tar.addfile(info)


def _add_link(tar: tarfile.TarFile, path: str, target: str) -> None:
    info = tarfile.TarInfo(path)
    info.type, info.linkname = tarfile.SYMTYPE, target
    tar.addfile(info)


def applets(busybox: Path = BUSYBOX) -> list[str]:
    """The commands a busybox binary provides (busybox itself left out)."""
    out = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True)
    return sorted({a for a in out.stdout.split() if a and "/" not in a and a != "busybox"})


def rootfs(files: dict[str, bytes], *, links: Iterable[tuple[str, str]] = ()) -> bytes:
    """A root filesystem tarball: the base folders, ``files`` (path -> bytes,
    executable) and symbolic ``links`` (path, target). Member times are zero,
    so the same content gives the same bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "var", "var/run"):
            _add_dir(tar, d, 0o1777 if d == "tmp" else 0o755)
        _add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                  b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644)
        _add_file(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644)
        for path, data in sorted(files.items()):
            _add_file(tar, path, data)
        for path, target in sorted(links):
            _add_link(tar, path, target)
    return buf.getvalue()


def _cached(name: str, data: bytes, cache: Path) -> Path:
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = cache / f"{name.replace('/', '_').replace(':', '_')}-{digest}.tar"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(path)  # a rename: another node's import never reads half a file
    return path


def with_libraries(programs: Iterable[Path]) -> tuple[dict[str, bytes], list[tuple[str, str]]]:
    """``programs`` and the shared libraries ``ldd`` says they load, at the
    paths it names them by (links where those are links on the machine)."""
    files: dict[str, bytes] = {}
    links: list[tuple[str, str]] = []
    for program in programs:
        if not program.is_file():
            raise ImageBuildError(f"{program} is missing: scripts/setup.sh installs it")
        files[str(program).lstrip("/")] = program.read_bytes()
        out = subprocess.run(["ldd", str(program)], capture_output=True, text=True,
                             check=True).stdout
        for word in out.split():
            if not word.startswith("/"):
                continue
            lib = Path(word)
            real = lib.resolve()
            files[str(real).lstrip("/")] = real.read_bytes()
            if real != lib:
                links.append((str(lib).lstrip("/"), str(real)))
    return files, links


def _program(name: str, bin_dir: Path) -> bytes:
    path = bin_dir / name
    if not path.is_file():
        raise ImageBuildError(f"{path} is missing: scripts/setup.sh builds it")
    return path.read_bytes()


def built_images(*, bin_dir: Path, cache: Path = CACHE,
                 busybox: Path = BUSYBOX) -> list[Built]:
    """The node images, their tarballs written to ``cache`` where missing;
    ``bin_dir`` holds the runtime's C programs (the interpreter's folder)."""
    if not busybox.is_file():
        raise ImageBuildError(f"{busybox} is missing: scripts/setup.sh installs busybox-static")
    box = busybox.read_bytes()
    links = [(f"bin/{a}", "busybox") for a in applets(busybox)]
    env = f"ENV PATH={PATH}"
    return [
        Built(("busybox:latest",),
              _cached("busybox", rootfs({"bin/busybox": box}, links=links), cache),
              (env, 'CMD ["sh"]')),
        # The manifests of the docs and tests name it with and without 1.0.
        Built(("netplane/echo:latest", "netplane/echo:1.0"),
              _cached("netplane-echo", rootfs({"bin/busybox": box,
                                               "echo": _program(ECHO_BINARY, bin_dir)},
                                              links=links), cache),
              (env, 'ENTRYPOINT ["/echo"]')),
        Built(("netplane/toolbox:latest",), _toolbox(box, links, cache), (env, 'CMD ["sh"]')),
        Built((PAUSE_IMAGE,),
              _cached("netplane-pause", rootfs({"pause": _program(PAUSE_BINARY, bin_dir)}),
                      cache),
              (env, 'ENTRYPOINT ["/pause"]')),
    ]


def _toolbox(box: bytes, applet_links: list[tuple[str, str]], cache: Path) -> Path:
    files, lib_links = with_libraries(TOOLS)
    files["bin/busybox"] = box
    # glibc reads it for getaddrinfo: the pod's hosts file, then its DNS.
    nss = b"hosts: files dns\n"
    # One member per path: curl and dig load many of the same libraries.
    links = dict([*applet_links, *lib_links])
    data = rootfs({**files, "etc/nsswitch.conf": nss},
                  links=[(p, t) for p, t in links.items() if p not in files])
    return _cached("netplane-toolbox", data, cache)


def clear_cache(cache: Path = CACHE) -> None:
    shutil.rmtree(cache, ignore_errors=True)
