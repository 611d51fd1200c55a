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


NOW = 1_800_000_000.0


def _stamp(ago: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(NOW - ago, datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _pod(name: str, statuses: list[dict[str, object]]) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "shop", "creationTimestamp": _stamp(900)},
            "spec": {"nodeName": "node-1", "containers": [
                {"name": s["name"], "image": "busybox", "command": ["sleep", "600"]}
                for s in statuses]},
            "status": {"containerStatuses": statuses}}


def test_ps_rows_in_docker_words_running_first_unless_all() -> None:
    from netplane.cli import pscmd

    running = {"name": "web", "image": "busybox", "containerID": "process://4242",
               "state": {"running": {"startedAt": _stamp(300)}}}
    oom = {"name": "hog", "image": "busybox", "containerID": "process://4343",
           "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                                    "startedAt": _stamp(200), "finishedAt": _stamp(120)}}}
    backoff = {"name": "crash", "image": "busybox",
               "state": {"waiting": {"reason": "CrashLoopBackOff"}},
               "lastState": {"terminated": {"exitCode": 1, "containerID": "docker://abcdef0123456789",
                                            "startedAt": _stamp(80),
                                            "finishedAt": _stamp(70)}}}
    nodes = {"node-1": {"status": {"nodeInfo": {"containerRuntimeVersion": "process://0.1.0"}}}}
    pods = [_pod("a", [running, oom]), _pod("b", [backoff])]
    shown = [r.cells for r in pscmd.rows(pods, nodes, NOW, show_all=False)]
    assert shown == [
        ["abcdef012345", "busybox", '"sleep 600"', "About a minute ago",
         "Restarting (1) About a minute ago", "crash", "b", "shop", "node-1", "docker"],
        ["4242", "busybox", '"sleep 600"', "5 minutes ago", "Up 5 minutes", "web", "a",
         "shop", "node-1", "process"]]
    every = [r.cells for r in pscmd.rows(pods, nodes, NOW, show_all=True)]
    assert [c[4] for c in every] == ["Restarting (1) About a minute ago",
                                     "Exited (137) 2 minutes ago", "Up 5 minutes"]


WEB = 'container="web",id="/x",image="busybox",name="process://42",namespace="shop",pod="a"'
POD = 'container="",id="/p",image="",name="",namespace="shop",pod="a"'
CADVISOR = """\
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{{{web}}} {cpu} {ms}
container_cpu_usage_seconds_total{{{pod}}} 9 {ms}
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{{{web}}} 1572864 {ms}
# TYPE container_spec_memory_limit_bytes gauge
container_spec_memory_limit_bytes{{{web}}} {limit} {ms}
# TYPE container_threads gauge
container_threads{{{web}}} 3 {ms}
# TYPE machine_memory_bytes gauge
machine_memory_bytes 8589934592
# TYPE machine_cpu_cores gauge
machine_cpu_cores 2
"""


def test_stats_rows_from_two_cadvisor_reads() -> None:
    from netplane.cli import statscmd

    def read(cpu: float, ms: int, limit: int = 64 << 20) -> statscmd.NodeReading:
        return statscmd.parse(CADVISOR.format(web=WEB, pod=POD, cpu=cpu, ms=ms, limit=limit))

    before, after = read(10.0, 1_000_000), read(10.5, 1_001_000)
    assert list(after.containers) == [("shop", "a", "web")]  # not the pod's own cgroup
    assert statscmd.rows(before, after) == [
        ["42", "k8s_web_a_shop", "50.00%", "1.5MiB / 64MiB", "2.34%", "3"]]
    unlimited = read(10.5, 1_001_000, limit=0)
    assert statscmd.rows(before, unlimited)[0][3] == "1.5MiB / 8GiB"
