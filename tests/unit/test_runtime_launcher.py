"""The launcher's command line: options before ``--``, the command after.
The C launcher (launcher.c, built here from the source) must take it
exactly as the Python one does: the same errors in the same words, and the
same hand-over to the Python launcher where a container needs a root of
its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from netplane.node.runtime.command import package_root
from netplane.node.runtime.launcher import (
    DEFAULT_PATH,
    Bind,
    ExitCode,
    LaunchSpec,
    exec_env,
    parse_args,
)
from netplane.node.runtime.process import (
    LAUNCHER_BINARY,
    PYTHON_ENV,
    default_launcher,
    python_launcher,
)


def test_full_command_line() -> None:
    spec = parse_args([
        "--netns", "pod-1", "--hostname", "web-0",
        "--bind", "/state/resolv.conf:/etc/resolv.conf", "--bind", "/state/hosts:/etc/hosts",
        "--env", "A=1", "--env", "B=x=y", "--env", "EMPTY=", "--cwd", "/tmp",
        "--", "sh", "-c", "echo --netns $A",
    ])
    assert spec == LaunchSpec(
        command=["sh", "-c", "echo --netns $A"], netns="pod-1", hostname="web-0",
        binds=[Bind("/state/resolv.conf", "/etc/resolv.conf"),
               Bind("/state/hosts", "/etc/hosts")],
        env={"A": "1", "B": "x=y", "EMPTY": ""}, cwd="/tmp")


def test_options_are_optional() -> None:
    assert parse_args(["--", "true"]) == LaunchSpec(command=["true"])


def test_a_second_double_dash_belongs_to_the_command() -> None:
    assert parse_args(["--", "cmd", "--", "x"]).command == ["cmd", "--", "x"]


def test_exec_env_is_defaults_plus_given_pairs() -> None:
    env = exec_env(LaunchSpec(command=["x"], hostname="web-0", env={"PATH": "/bin", "A": "1"}))
    assert env == {"PATH": "/bin", "HOME": "/root", "HOSTNAME": "web-0", "A": "1"}


def run(launcher: list[str], argv: list[str],
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The launcher as the runtime starts it (its environment, not ours)."""
    base = {"PATH": DEFAULT_PATH, "PYTHONPATH": package_root(), "COLUMNS": "80"}
    return subprocess.run([*launcher, *argv], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=30, check=False)


# None of these gets as far as a namespace: no root needed.
BAD = [
    ["--netns", "p"],
    ["--netns", "p", "--"],
    ["--bind", "no-colon", "--", "true"],
    ["--bind", ":/etc/hosts", "--", "true"],
    ["--bind", "/a::ro", "--", "true"],
    ["--bind", "it's\t\"quoted\"", "--", "true"],
    ["--env", "=v", "--", "true"],
    ["--env", "NOVALUE", "--", "true"],
    ["--unknown", "--", "true"],
    ["stray", "words", "--netns", "p", "--nope=1", "--", "true"],
    ["--netns", "--hostname", "h", "--", "true"],
    ["--env", "A=1", "--env", "--", "true"],
    ["--h", "x", "--", "true"],       # --help or --hostname?
    ["--=x", "--", "true"],
    ["--help=3", "--", "true"],
    ["-hx", "--", "true"],
    ["-x", "-", "--", "true"],
    ["--net", "p", "--bogus", "--", "true"],  # an abbreviation is fine, the rest is not
    ["--bind", "bad", "--h", "--", "true"],   # the ambiguity is found first
    ["--bind", "bad", "-h", "--", "true"],
]


@pytest.mark.parametrize("argv", BAD)
def test_bad_command_lines_exit_125(launcher: list[str], argv: list[str]) -> None:
    out = run(launcher, argv)
    assert out.returncode == ExitCode.SETUP_FAILED
    assert out.stdout == ""
    usage, message = out.stderr.splitlines()
    assert usage == "usage: netplane-launcher [options] -- CMD [ARGS...]"
    assert message.startswith("netplane-launcher: ")


@pytest.mark.parametrize("argv", [*BAD, ["-h", "--", "true"], ["--hel", "--", "true"],
                                  ["--netns", "-5", "-h", "--", "true"]])
def test_the_c_launcher_says_what_the_python_one_says(c_launcher: Path,
                                                      argv: list[str]) -> None:
    python, c = run(python_launcher(sys.executable), argv), run([str(c_launcher)], argv)
    assert (c.returncode, c.stdout, c.stderr) == (python.returncode, python.stdout,
                                                  python.stderr)


def test_python_module_errors_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--bind", "no-colon", "--", "true"])
    assert exc.value.code == ExitCode.SETUP_FAILED
    assert "--bind wants SRC:DST[:ro], got 'no-colon'" in capsys.readouterr().err


def fake_python(tmp_path: Path) -> Path:
    """Stands in for the interpreter: prints the arguments it was given."""
    script = tmp_path / "python"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    script.chmod(0o755)
    return script


def test_a_root_of_its_own_is_the_python_launchers_job(c_launcher: Path,
                                                        tmp_path: Path) -> None:
    """A bind target missing on the node (outside /run) with --root: the C
    launcher execs the interpreter the runtime named, with the very same
    arguments, before it changes anything."""
    argv = ["--netns", "no-such-netns", "--root", str(tmp_path / "root"),
            "--bind", "/etc/hosts:/etc/hosts", "--bind", f"{tmp_path}:/no/such/folder:ro",
            "--env", "A=1", "--", "sh", "-c", "exit 3"]
    out = run([str(c_launcher)], argv, env={PYTHON_ENV: str(fake_python(tmp_path))})
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.splitlines() == ["-S", "-m", "netplane.node.runtime.launcher", *argv]


@pytest.mark.parametrize("argv", [
    ["--root", "/r", "--bind", "/etc/hosts:/run/no/such", "--", "true"],  # /run is its own
    ["--bind", "/etc/hosts:/no/such/folder", "--", "true"],  # no --root
    ["--root", "", "--bind", "/etc/hosts:/no/such/folder", "--", "true"],
])
def test_otherwise_the_c_launcher_does_it_all(c_launcher: Path, tmp_path: Path,
                                              argv: list[str]) -> None:
    # --netns names no namespace: the set-up stops at once, in C.
    out = run([str(c_launcher)], ["--netns", "no-such-netns", *argv],
              env={PYTHON_ENV: str(fake_python(tmp_path))})
    assert out.returncode == ExitCode.SETUP_FAILED
    assert out.stdout == ""
    assert out.stderr == (
        "netplane-launcher: container set-up failed: entering namespaces of pod netns "
        "'no-such-netns': [Errno 2] No such file or directory: '/run/netns/no-such-netns'\n")


def test_the_runtime_starts_the_c_launcher_where_it_is_built(tmp_path: Path) -> None:
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    binary = python.with_name(LAUNCHER_BINARY)
    module = [str(python), "-S", "-m", "netplane.node.runtime.launcher"]
    assert default_launcher(str(python)) == module
    binary.write_bytes(b"")  # there, but not executable: not built
    assert default_launcher(str(python)) == module
    binary.chmod(0o755)
    assert default_launcher(str(python)) == [str(binary)]
