"""Runs the commands that put rules into the kernel, in a named network
namespace when given, behind a seam that tests replace."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass

COMMAND_TIMEOUT = 60.0


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


# Seam for tests: runs argv with optional stdin and returns its result.
Runner = Callable[[list[str], str | None], CommandResult]


class ApplyError(RuntimeError):
    """A command failed; the message carries its stderr."""


def run_in(runner: Runner, netns: str | None, argv: list[str], stdin: str | None = None, *,
           check: bool = True) -> CommandResult:
    """Runs ``argv`` (in ``netns`` when given); a failure raises ApplyError
    with the command's own words when ``check``."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    result = runner([*prefix, *argv], stdin)
    if check and result.returncode != 0:
        raise ApplyError(f"{' '.join(argv)} failed ({result.returncode}): "
                         f"{result.stderr.strip()}")
    return result


def run_command(argv: list[str], stdin: str | None) -> CommandResult:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False,
                          timeout=COMMAND_TIMEOUT)
    return CommandResult(proc.returncode, proc.stdout, proc.stderr)
