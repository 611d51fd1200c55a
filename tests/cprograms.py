"""The runtime's C programs built from their source as ``scripts/setup.sh``
builds them (``scripts/build-c.sh``), so that the tests check the source
as it is, whatever binary the virtualenv holds."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def build_c(program: str, out_dir: Path) -> Path:
    """``netplane/node/runtime/PROGRAM.c`` built as ``OUT_DIR/netplane-PROGRAM``;
    skips the test without a C compiler."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler (scripts/setup.sh installs one)")
    out = out_dir / f"netplane-{program}"
    subprocess.run(["bash", str(REPO / "scripts" / "build-c.sh"), program, str(out)],
                   check=True)
    return out
