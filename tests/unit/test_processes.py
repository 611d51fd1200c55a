"""The columns of ``ps -ef`` the agent's top answer is made of, from
/proc text."""

from __future__ import annotations

from netplane.node import processes


def test_stat_is_parsed_past_a_command_name_with_spaces() -> None:
    text = "42 (my (odd) cmd) S 1 42 42 34816 42 0 0 0 0 0 250 50 0 0 20 0 1 0 9000 0 0"
    comm, fields = processes.parse_stat(text)
    assert comm == "my (odd) cmd"
    assert (fields[0], fields[1], fields[4], fields[11], fields[12], fields[19]) == \
        ("S", "1", "34816", "250", "50", "9000")


def test_ttys_and_times_as_ps_writes_them() -> None:
    assert processes.tty_name(0) == "?"
    assert processes.tty_name(136 << 8 | 3) == "pts/3"
    assert processes.tty_name(4 << 8 | 1) == "tty1"
    assert processes.cpu_time(0) == "00:00:00"
    assert processes.cpu_time(3723) == "01:02:03"
    assert processes.cpu_time(90061) == "1-01:01:01"


def test_a_row_has_the_eight_columns_of_ps_ef() -> None:
    info = processes.ProcInfo(pid=42, ppid=1, uid=0, tty_nr=0, cpu_ticks=100,
                              start_ticks=0, cmd="sleep 600")
    row = processes.row(info, boot=1000.0, now=1004.0, hz=100)
    assert row[:4] == ["root", "42", "1", "25"]
    assert row[5:] == ["?", "00:00:01", "sleep 600"]
    assert processes.top([])["Titles"] == processes.TITLES
