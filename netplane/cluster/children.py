"""Processes ``netplane server`` keeps running beside itself (the
scheduler, the mesh controller): each started again when it ends, stopped
with the server, and killed by the kernel if the server dies outright."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal

log = logging.getLogger(__name__)
RESTART_DELAY = 1.0
STOP_GRACE = 5.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # A server killed outright (SIGKILL, as `lab stop --kill` does) takes its
    # children with it instead of leaving them to work for no one.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def supervise(argv: list[str], what: str) -> None:
    """``argv`` kept running until cancelled; then stopped."""
    while True:
        proc = await asyncio.create_subprocess_exec(*argv, preexec_fn=_die_with_parent)
        try:
            code = await proc.wait()
        except asyncio.CancelledError:
            await _stop(proc)
            raise
        log.warning("the %s exited with %s; starting it again", what, code)
        await asyncio.sleep(RESTART_DELAY)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), STOP_GRACE)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
