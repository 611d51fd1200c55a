"""A command's stdin written in pieces: what the command reads, how it fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from netplane.proxy.command import (
    ApplyError,
    BufferedInput,
    CommandResult,
    PipedInput,
    open_input,
    run_command,
)


def test_the_command_reads_every_piece_in_order(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stdin = PipedInput(["sh", "-c", f"cat > {out}"])
    pieces = [f"line {i}\n" for i in range(5000)]
    for piece in pieces:
        stdin.write(piece)
    stdin.close()
    assert out.read_text() == "".join(pieces)


def test_a_failing_command_reports_its_own_words() -> None:
    stdin = PipedInput(["sh", "-c", "read line; echo \"bad input: $line\" >&2; exit 3"])
    stdin.write("x" * 200_000 + "\n")  # more than a pipe holds, after it stopped reading
    stdin.write("more\n")
    with pytest.raises(ApplyError, match=r"failed \(3\): bad input: x+"):
        stdin.close()


def test_abort_stops_the_command_before_it_reads_the_end(tmp_path: Path) -> None:
    done = tmp_path / "done"
    stdin = PipedInput(["sh", "-c", f"cat > /dev/null && touch {done}"])
    stdin.write("half of it\n")
    stdin.abort()
    assert not done.exists()


def test_a_test_runner_gets_the_whole_text_at_close() -> None:
    seen: list[tuple[list[str], str | None]] = []

    def runner(argv: list[str], stdin: str | None) -> CommandResult:
        seen.append((argv, stdin))
        return CommandResult(0, "", "")

    stdin = open_input(runner, "ns-1", ["iptables-restore"])
    assert isinstance(stdin, BufferedInput)
    stdin.write("*nat\n")
    stdin.write("COMMIT\n")
    assert seen == []
    stdin.close()
    assert seen == [(["ip", "netns", "exec", "ns-1", "iptables-restore"], "*nat\nCOMMIT\n")]


def test_the_real_runner_gets_a_live_pipe() -> None:
    real = open_input(run_command, None, ["cat"])
    assert isinstance(real, PipedInput)
    real.write("x\n")
    real.close()
