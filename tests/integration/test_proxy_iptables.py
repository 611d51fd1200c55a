"""iptables-mode proxy in a real kernel: curl a ClusterIP from a pod namespace.

Address plan (all inside throwaway namespaces):
    node netns   br0 10.244.1.1/24; default route via 169.254.0.2 on veth up0,
                 a gateway that never answers (so a packet nobody handles
                 vanishes and times out, it does not bounce);
                 node-local DNS 10.96.0.10 on lo
    pod-a netns  eth0 10.244.1.2/24   HTTP :8080, UDP echo :5353, answers "pod-a"
    pod-b netns  eth0 10.244.1.3/24   same, answers "pod-b"
    client netns eth0 10.244.1.4/24
    every pod:   default via 10.244.1.1
    default/web  ClusterIP 10.96.0.50: http 80/TCP -> 8080, echo 9000/UDP -> 5353
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest

from netplane.api.meta import Obj
from netplane.proxy.config import ProxyConfig
from netplane.proxy.iptables import proxier as proxier_module
from netplane.proxy.iptables.apply import Backend, IptablesApplier
from netplane.proxy.iptables.proxier import Proxier
from netplane.proxy.iptables.render import endpoint_chain, service_chain
from netplane.proxy.model import Protocol, ServicePortName
from tests.integration.topology import Topology, sh, single_node

pytestmark = pytest.mark.root

VIP = "10.96.0.50"
DNS_IP = "10.96.0.10"
PODS = {"pod-a": "10.244.1.2", "pod-b": "10.244.1.3"}
CLIENT_IP = "10.244.1.4"
HTTP = ServicePortName("default", "web", "http", Protocol.TCP)


@pytest.fixture
def topo(make_netns: Callable[[str], str]) -> Iterator[Topology]:
    with single_node(make_netns, pods=PODS, client_ip=CLIENT_IP, bridge="br0",
                     node_local_ip=DNS_IP) as t:
        yield t


def nat_rules(t: Topology, backend: Backend = Backend.NFT) -> str:
    return sh(f"iptables-{backend}-save", "-t", "nat", netns=t.node)


def web_service() -> Obj:
    return {"metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": VIP, "ports": [
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "echo", "port": 9000, "protocol": "UDP"}]}}


def web_endpoints(*pods: str) -> Obj:
    return {"metadata": {"namespace": "default", "name": "web"},
            "subsets": [{"addresses": [{"ip": PODS[p], "nodeName": "node-1"} for p in pods],
                         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                                   {"name": "echo", "port": 5353, "protocol": "UDP"}]}]
            if pods else []}


def proxier_for(t: Topology, backend: Backend | None = None,
                config: ProxyConfig | None = None) -> Proxier:
    p = Proxier(node_name="node-1", applier=IptablesApplier(netns=t.node, backend=backend),
                config=config)
    p.set_up()
    p.on_service(None, web_service())
    return p


@pytest.mark.parametrize("backend", [Backend.NFT, Backend.LEGACY])
async def test_cluster_ip_balances_tcp_and_udp(topo: Topology, backend: Backend) -> None:
    proxier = proxier_for(topo, backend)
    proxier.on_endpoints(None, web_endpoints("pod-a", "pod-b"))
    assert await proxier.sync()
    assert f":{service_chain(HTTP)} " in nat_rules(topo, backend)
    answers = [topo.curl(f"http://{VIP}/") for _ in range(30)]
    assert all(a.returncode == 0 for a in answers), [a.stderr for a in answers]
    assert {a.stdout for a in answers} == {"pod-a", "pod-b"}
    assert set(topo.probe("udp", VIP, 9000, 30)) == {"pod-a", "pod-b"}
    proxier.clean_up()


async def test_removed_endpoint_loses_its_chain_and_traffic(topo: Topology) -> None:
    proxier = proxier_for(topo)
    proxier.on_endpoints(None, web_endpoints("pod-a", "pod-b"))
    await proxier.sync()
    gone = endpoint_chain(HTTP, f"{PODS['pod-a']}:8080")
    assert f":{gone} " in nat_rules(topo)
    proxier.on_endpoints(web_endpoints("pod-a", "pod-b"), web_endpoints("pod-b"))
    assert await proxier.sync()
    assert gone not in nat_rules(topo)
    assert set(topo.probe("tcp", VIP, 80, 15)) == {"pod-b"}
    assert set(topo.probe("udp", VIP, 9000, 15)) == {"pod-b"}


async def test_service_without_endpoints_refuses_at_once(topo: Topology) -> None:
    proxier = proxier_for(topo)
    proxier.on_endpoints(None, web_endpoints("pod-a"))
    await proxier.sync()
    proxier.on_endpoints(web_endpoints("pod-a"), web_endpoints())
    assert await proxier.sync()
    # Refused, not dropped: curl's 7 is "could not connect" (a drop would be
    # 28, a timeout), the probes' ECONNREFUSED a reject that came back.
    result = topo.curl(f"http://{VIP}/")
    assert result.returncode == 7, (result.returncode, result.stderr)
    assert topo.probe("tcp", VIP, 80, 1) == ["ERR:ECONNREFUSED"]
    assert topo.probe("udp", VIP, 9000, 1) == ["ERR:ECONNREFUSED"]


async def test_hairpin_pod_reaches_itself_through_its_service(topo: Topology) -> None:
    proxier = proxier_for(topo)
    proxier.on_endpoints(None, web_endpoints("pod-a", "pod-b"))
    await proxier.sync()
    answers = topo.probe("tcp", VIP, 80, 30, src=topo.pods["pod-a"])
    assert set(answers) == {"pod-a", "pod-b"}


async def test_node_local_dns_is_not_tracked(topo: Topology) -> None:
    topo.serve(topo.node, "dns", udp_address=DNS_IP, udp_port=53, tcp_port=8053)
    proxier = proxier_for(topo, config=ProxyConfig(notrack_dns_ips=(DNS_IP,)))
    await proxier.sync()
    assert topo.probe("udp", DNS_IP, 53, 3) == ["dns"] * 3
    tracked = subprocess.run(["ip", "netns", "exec", topo.node, "conntrack", "-L", "-p", "udp",
                              "--orig-dst", DNS_IP], capture_output=True, text=True, check=False)
    assert DNS_IP not in tracked.stdout


async def test_clean_up_leaves_no_chain_or_jump_of_ours(topo: Topology) -> None:
    proxier = proxier_for(topo)
    proxier.on_endpoints(None, web_endpoints("pod-a", "pod-b"))
    await proxier.sync()
    assert "NP-" in sh("iptables-save", netns=topo.node)
    proxier.clean_up()
    assert "NP-" not in sh("iptables-save", netns=topo.node)
    assert "NP-" not in sh("iptables-legacy-save", netns=topo.node)


@pytest.mark.parametrize("backend", [Backend.NFT, Backend.LEGACY])
async def test_full_sync_streamed_over_a_previous_run_leaves_what_a_document_would(
        topo: Topology, backend: Backend) -> None:
    old = proxier_for(topo, backend)
    old.on_endpoints(None, web_endpoints("pod-a", "pod-b"))
    assert await old.sync()
    gone = endpoint_chain(HTTP, f"{PODS['pod-b']}:8080")
    # A new proxier (an agent restart) knows nothing of the chains left in
    # the kernel; its first full sync streams the rules while rendering.
    new = proxier_for(topo, backend)
    new.on_endpoints(None, web_endpoints("pod-a"))
    assert await new.sync(full=True)
    assert new.kernel_mismatches() == []
    assert gone not in nat_rules(topo, backend)
    assert set(topo.probe("tcp", VIP, 80, 6)) == {"pod-a"}


async def test_a_full_sync_that_fails_while_rendering_changes_nothing(
        topo: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    proxier = proxier_for(topo)
    proxier.on_endpoints(None, web_endpoints("pod-a"))
    assert await proxier.sync()
    before = nat_rules(topo)
    proxier.on_endpoints(web_endpoints("pod-a"), web_endpoints("pod-b"))

    def broken(*args: object, **kw: object) -> None:
        raise RuntimeError("a bug while rendering")

    monkeypatch.setattr(proxier_module, "render_port", broken)
    assert not await proxier.sync(full=True)  # the restore was open and is stopped
    assert nat_rules(topo) == before
    monkeypatch.undo()
    assert await proxier.sync()
    assert set(topo.probe("tcp", VIP, 80, 6)) == {"pod-b"}
