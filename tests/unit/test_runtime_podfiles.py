"""A pod's resolv.conf and hosts as the process runtime writes them."""

from __future__ import annotations

from pathlib import Path

from netplane.node.runtime import podfiles
from netplane.node.runtime.process import ProcessRuntime


def test_resolv_conf_of_a_cluster_first_pod() -> None:
    text = podfiles.resolv_conf(nameservers=["10.96.0.10"],
                                searches=podfiles.cluster_searches("shop"),
                                options=["ndots:5"])
    assert text == ("nameserver 10.96.0.10\n"
                    "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
                    "options ndots:5\n")


def test_resolv_conf_without_search_or_options() -> None:
    assert podfiles.resolv_conf(nameservers=["10.96.0.10"], searches=[], options=[]) == (
        "nameserver 10.96.0.10\n")


def test_hosts_names_localhost_and_the_pod() -> None:
    lines = podfiles.hosts(hostname="web-0", pod_ip="10.244.1.7").splitlines()
    assert "127.0.0.1\tlocalhost" in lines
    assert lines[-1] == "10.244.1.7\tweb-0"


def test_runtime_writes_both_files_in_the_pod_state_dir(tmp_path: Path) -> None:
    rt = ProcessRuntime(state_dir=tmp_path)
    resolv, hosts = rt.write_pod_files(
        "uid-1", nameservers=["10.96.0.10"], searches=podfiles.cluster_searches("default"),
        options=["ndots:5"], hostname="web-0", pod_ip="10.244.1.7")
    assert resolv == tmp_path / "pods" / "uid-1" / "resolv.conf"
    assert hosts.parent == resolv.parent
    assert resolv.read_text().startswith("nameserver 10.96.0.10\nsearch default.svc.")
    assert "10.244.1.7\tweb-0" in hosts.read_text()
