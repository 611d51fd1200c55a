"""Runs the commands that put rules into the kernel, in a named network
namespace when given, behind a seam that tests replace."""

from __future__ import annotations

import contextlib
import queue
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

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


class Input(Protocol):
    """A command's standard input, written in pieces while the caller is
    still producing them; ``close`` ends it and waits for the command."""

    def write(self, text: str) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class BufferedInput:
    """Gathers the pieces and hands the whole text to ``run`` at ``close``
    (a test's fake, or a runner that cannot stream)."""

    def __init__(self, run: Callable[[str], object]) -> None:
        self._run = run
        self._parts: list[str] = []

    def write(self, text: str) -> None:
        self._parts.append(text)

    def close(self) -> None:
        self._run("".join(self._parts))

    def abort(self) -> None:
        self._parts.clear()


class PipedInput:
    """Runs ``argv`` now and feeds its stdin from a thread.

    The caller only queues text, so it never waits for the command to
    read; the command (iptables-restore parses line by line) works through
    the text on another CPU while the caller is still rendering the rest.
    """

    def __init__(self, argv: list[str]) -> None:
        self._argv = argv
        # A file, not a pipe, for errors: it can never fill up and stall the command.
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close/abort)
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=self._errors, bufsize=0)
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._pump = threading.Thread(target=self._feed, name="command-input", daemon=True)
        self._pump.start()

    def write(self, text: str) -> None:
        self._queue.put(text)

    def _feed(self) -> None:
        stdin, get = self._proc.stdin, self._queue.get
        assert stdin is not None
        try:
            while True:
                parts = [get()]
                while parts[-1] is not None and len(parts) < 256 and not self._queue.empty():
                    parts.append(get())  # fewer, larger writes
                end = parts[-1] is None
                if end:
                    parts.pop()
                data = memoryview("".join(cast("list[str]", parts)).encode())
                while data:  # an unbuffered pipe may take part of a write
                    data = data[stdin.write(data) or 0:]
                if end:
                    return
        except (BrokenPipeError, ValueError):
            return  # the command exited (or was stopped): ``close`` reports why
        finally:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()

    def close(self) -> None:
        self._queue.put(None)
        self._pump.join()
        try:
            code = self._proc.wait(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.abort()
            raise ApplyError(f"{' '.join(self._argv)} timed out") from None
        self._errors.seek(0)
        stderr = self._errors.read().decode(errors="replace")
        self._errors.close()
        if code != 0:
            raise ApplyError(f"{' '.join(self._argv)} failed ({code}): {stderr.strip()}")

    def abort(self) -> None:
        """Stops the command before it read the end of its input (so an
        ``iptables-restore`` commits nothing more)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._queue.put(None)
        self._pump.join()
        self._proc.wait()
        self._errors.close()


def open_input(runner: Runner, netns: str | None, argv: list[str]) -> Input:
    """``argv``'s stdin to write in pieces: a live pipe with the real runner;
    with any other (a test's) the whole text goes through it at close."""
    if runner is run_command:
        prefix = ["ip", "netns", "exec", netns] if netns else []
        return PipedInput([*prefix, *argv])
    return BufferedInput(lambda text: run_in(runner, netns, argv, text))
