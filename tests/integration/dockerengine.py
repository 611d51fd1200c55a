"""A real Docker Engine of a test's own: ``dockerd`` in a throwaway network
namespace (only loopback in it), its state in the test's folder, the node
images imported; stopped, and everything it made removed, afterwards."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from netplane.node.runtime.dockerd import Engine

HAVE_DOCKERD = shutil.which("dockerd") is not None
BIN_DIR = Path(sys.executable).parent


@contextlib.contextmanager
def throwaway_engine(base: Path, *, images: bool = True) -> Iterator[Engine]:
    if not HAVE_DOCKERD:
        pytest.skip("dockerd is not installed (scripts/setup.sh installs docker.io)")
    netns = f"npt-docker-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    engine = Engine(state=base / "engine", netns=netns)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        engine.start()
        if images:
            engine.ensure_images(bin_dir=BIN_DIR)
        yield engine
    finally:
        engine.stop()
        subprocess.run(["ip", "netns", "del", netns], check=False)
