"""The launcher's command line: options before ``--``, the command after."""

from __future__ import annotations

import pytest

from netplane.node.runtime.launcher import Bind, ExitCode, LaunchSpec, exec_env, parse_args


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


@pytest.mark.parametrize("argv", [
    ["--netns", "p"],
    ["--netns", "p", "--"],
    ["--bind", "no-colon", "--", "true"],
    ["--env", "=v", "--", "true"],
    ["--unknown", "--", "true"],
])
def test_bad_command_lines_exit_125(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == ExitCode.SETUP_FAILED
    assert capsys.readouterr().err


def test_exec_env_is_defaults_plus_given_pairs() -> None:
    env = exec_env(LaunchSpec(command=["x"], hostname="web-0", env={"PATH": "/bin", "A": "1"}))
    assert env == {"PATH": "/bin", "HOME": "/root", "HOSTNAME": "web-0", "A": "1"}
