"""Docker's wording for ps, stats and top (go-units' durations and sizes,
the docker CLI's columns), as the docker CLI prints them."""

from __future__ import annotations

import pytest

from netplane.cli import dockerviews as dv


@pytest.mark.parametrize(("seconds", "words"), [
    (0.4, "Less than a second"), (1, "1 second"), (47, "47 seconds"),
    (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"),
    (59 * 60, "59 minutes"), (60 * 60, "About an hour"), (89 * 60, "About an hour"),
    (90 * 60, "2 hours"), (3 * 3600, "3 hours"), (47 * 3600, "47 hours"),
    (48 * 3600, "2 days"), (13 * 86400, "13 days"), (14 * 86400, "2 weeks"),
    (59 * 86400, "8 weeks"), (60 * 86400, "2 months"), (729 * 86400, "24 months"),
    (730 * 86400, "2 years"),
])
def test_durations_in_docker_words(seconds: float, words: str) -> None:
    assert dv.human_duration(seconds) == words


def test_states_as_docker_ps_words_them() -> None:
    assert dv.up(5 * 60) == "Up 5 minutes"
    assert dv.up(3 * 3600) == "Up 3 hours"
    assert dv.exited(137, 120) == "Exited (137) 2 minutes ago"
    assert dv.exited(0, 0.2) == "Exited (0) Less than a second ago"
    assert dv.restarting(1, 70) == "Restarting (1) About a minute ago"
    assert dv.created_ago(60) == "About a minute ago"


@pytest.mark.parametrize(("size", "text"), [
    (0, "0B"), (1023, "1023B"), (1024, "1KiB"), (1536 * 1024, "1.5MiB"),
    (64 * 1024 ** 2, "64MiB"), (int(7.634 * 1024 ** 3), "7.634GiB"),
    (1234567, "1.177MiB"), (1024 ** 4, "1TiB"),
])
def test_sizes_in_binary_units(size: int, text: str) -> None:
    assert dv.bytes_size(size) == text


def test_cpu_percent_is_a_share_of_all_cpus_times_their_number() -> None:
    # Half a CPU on a 2-CPU machine over one second: 0.5 s of 2 s, times 2.
    assert dv.cpu_percent(0.5, 2.0, 2) == pytest.approx(50.0)
    assert dv.cpu_percent(0.0, 2.0, 2) == 0.0
    assert dv.cpu_percent(1.0, 0.0, 2) == 0.0
    assert dv.memory_percent(32, 64) == 50.0
    assert dv.memory_percent(32, 0) == 0.0


def test_short_ids_and_commands() -> None:
    assert dv.short_id("docker://0123456789abcdef0123") == "0123456789ab"
    assert dv.short_id("process://4242") == "4242"
    assert dv.short_id("") == ""
    assert dv.command(["sleep", "600"]) == '"sleep 600"'
    assert dv.command(["sh", "-c", "head -c 200m /dev/zero | tail"]) == '"sh -c head -c 200m …"'
    assert dv.command([]) == '""'


def test_tables_pad_three_spaces_after_the_widest_cell() -> None:
    assert dv.table(["CONTAINER ID", "NAME"], [["4242", "web"], ["17", "a-long-name"]]) == (
        "CONTAINER ID   NAME\n"
        "4242           web\n"
        "17             a-long-name")
