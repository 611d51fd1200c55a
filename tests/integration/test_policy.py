"""NetworkPolicy in a real kernel, in each mode: packets from pod namespaces
meet the rules a PolicyEnforcer puts into the node namespace.

Address plan (all inside throwaway namespaces):
    node netns   np0 10.244.1.1/24, silent uplink
    pod-a netns  10.244.1.2  labels app=db      TCP :8080 and UDP :5353 answer "pod-a"
    pod-b netns  10.244.1.3  labels app=web     same, "pod-b"
    client netns 10.244.1.4  labels app=client
    default/db   ClusterIP 10.96.0.50: 80/TCP -> pod-a:8080 (iptables mode test)
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from netplane.proxy.config import ProxyConfig
from netplane.proxy.iptables import policy as ipt_policy
from netplane.proxy.iptables.apply import Backend, IptablesApplier, tool
from netplane.proxy.iptables.policy import PolicyApplier
from netplane.proxy.iptables.proxier import Proxier
from netplane.proxy.iptables.trace import trace_steps
from netplane.proxy.nftables.policy import NftPolicyApplier
from netplane.proxy.policyloop import PolicyEnforcer
from tests.integration.topology import Topology, sh, single_node

pytestmark = pytest.mark.root

PODS = {"pod-a": "10.244.1.2", "pod-b": "10.244.1.3"}
CLIENT_IP = "10.244.1.4"
LABELS = {"pod-a": {"app": "db"}, "pod-b": {"app": "web"}, "client": {"app": "client"}}
IPS = {**PODS, "client": CLIENT_IP}
VIP = "10.96.0.50"


@pytest.fixture
def topo(make_netns: Callable[[str], str]) -> Iterator[Topology]:
    with single_node(make_netns, pods=PODS, client_ip=CLIENT_IP, probe_timeout=1.0) as t:
        yield t


def pod(name: str, labels: dict[str, str] | None = None) -> dict:
    return {"metadata": {"name": name, "namespace": "default",
                         "labels": LABELS[name] if labels is None else labels},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": IPS[name]}}


def netpol(name: str, spec: dict) -> dict:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


DENY_DB = netpol("deny-db", {"podSelector": {"matchLabels": {"app": "db"}}})
DB_FROM_CLIENT = netpol("db-from-client", {
    "podSelector": {"matchLabels": {"app": "db"}},
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                 "ports": [{"port": "http"}]}]})


MODES = ["iptables-nft", "iptables-legacy", "nftables"]


def enforcer(t: Topology, mode: str) -> PolicyEnforcer:
    if mode == "nftables":
        backend: object = NftPolicyApplier(netns=t.node)
    else:
        backend = PolicyApplier(tool=tool(Backend(mode.split("-")[1])), netns=t.node)
    e = PolicyEnforcer(node_name="node-1", backend=backend, netns=t.node)  # type: ignore[arg-type]
    e.set_up()
    for name in IPS:
        e.on_pod(None, pod(name))
    e.on_namespace(None, {"metadata": {"name": "default"}})
    return e


def ok(answers: list[str], name: str) -> bool:
    return all(a.split()[0] == name for a in answers)


@pytest.mark.parametrize("mode", MODES)
async def test_isolated_pod_takes_only_what_a_policy_allows(topo: Topology, mode: str) -> None:
    e = enforcer(topo, mode)
    assert await e.sync(full=True)
    assert ok(topo.probe("tcp", PODS["pod-a"], 8080), "pod-a")

    e.on_policy(None, DENY_DB)
    assert await e.sync()
    assert topo.probe("tcp", PODS["pod-a"], 8080) == ["ERR:EHOSTUNREACH"]
    assert topo.probe("udp", PODS["pod-a"], 5353)[0].startswith("ERR:")
    assert e.dropped_packets() >= 2  # the TCP SYN and the datagram
    counted = e.dropped_packets()
    assert await e.sync(full=True)  # rewrites the reject rule, zeroing the kernel's counter
    assert e.dropped_packets() >= counted  # a counter: it never goes back
    assert ok(topo.probe("tcp", PODS["pod-b"], 8080), "pod-b")  # not selected: open
    assert ok(topo.probe("tcp", PODS["pod-a"], 8080, src=topo.pods["pod-a"]), "pod-a")  # itself

    e.on_policy(None, DB_FROM_CLIENT)  # a union: the named port, from the client only
    assert await e.sync()
    assert ok(topo.probe("tcp", PODS["pod-a"], 8080), "pod-a")
    assert topo.probe("udp", PODS["pod-a"], 5353)[0].startswith("ERR:")
    assert topo.probe("tcp", PODS["pod-a"], 8080, src=topo.pods["pod-b"]) == ["ERR:EHOSTUNREACH"]

    # The pod-b gets the client's label: a set element changes, and it gets in.
    e.on_pod(pod("pod-b"), pod("pod-b", {"app": "client"}))
    assert await e.sync()
    assert ok(topo.probe("tcp", PODS["pod-a"], 8080, src=topo.pods["pod-b"]), "pod-a")

    e.on_policy(DENY_DB, None)
    e.on_policy(DB_FROM_CLIENT, None)
    assert await e.sync()
    assert ok(topo.probe("udp", PODS["pod-a"], 5353), "pod-a")
    e.clean_up()
    assert "NPOL" not in sh("iptables-save", netns=topo.node)
    assert "netplane-policy" not in sh("nft", "list", "ruleset", netns=topo.node)


@pytest.mark.parametrize("mode", MODES)
async def test_default_deny_egress(topo: Topology, mode: str) -> None:
    e = enforcer(topo, mode)
    e.on_policy(None, netpol("no-egress", {"podSelector": {"matchLabels": {"app": "client"}},
                                           "policyTypes": ["Egress"]}))
    assert await e.sync(full=True)
    assert topo.probe("tcp", PODS["pod-a"], 8080) == ["ERR:EHOSTUNREACH"]
    assert ok(topo.probe("tcp", PODS["pod-a"], 8080, src=topo.pods["pod-b"]), "pod-a")
    e.clean_up()


@pytest.mark.parametrize("mode", ["iptables-nft", "iptables-legacy"])
async def test_a_flushed_dispatch_chain_is_noticed_and_written_again(topo: Topology,
                                                                     mode: str) -> None:
    e = enforcer(topo, mode)
    e.on_policy(None, netpol("no-egress", {"podSelector": {"matchLabels": {"app": "client"}},
                                           "policyTypes": ["Egress"]}))
    assert await e.sync(full=True)
    assert e.backend.intact()
    sh(mode, "-F", "NPOL-FILTER",
       netns=topo.node)
    assert ok(topo.probe("tcp", PODS["pod-a"], 8080), "pod-a")  # nothing isolates it now
    assert await e.check() is False
    assert await e.sync(full=True)
    assert e.backend.intact()
    assert topo.probe("tcp", PODS["pod-a"], 8080) == ["ERR:EHOSTUNREACH"]
    e.clean_up()


@pytest.mark.parametrize("mode", ["iptables-nft", "iptables-legacy"])
async def test_a_dispatch_through_address_blocks_judges_alike(topo: Topology, mode: str,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    monkeypatch.setattr(ipt_policy, "FLAT_DISPATCH", 0)  # blocks from the first pod on
    e = enforcer(topo, mode)
    e.on_policy(None, DB_FROM_CLIENT)
    e.on_policy(None, netpol("no-egress", {"podSelector": {"matchLabels": {"app": "web"}},
                                           "policyTypes": ["Egress"]}))
    assert await e.sync(full=True)
    assert "NPOL-DI-" in sh(f"{mode}-save", netns=topo.node)
    assert ok(topo.probe("tcp", PODS["pod-a"], 8080), "pod-a")
    assert topo.probe("tcp", PODS["pod-a"], 8080, src=topo.pods["pod-b"]) == ["ERR:EHOSTUNREACH"]
    assert ok(topo.probe("tcp", PODS["pod-b"], 8080), "pod-b")  # isolated for egress only
    e.clean_up()
    assert "NPOL" not in sh(f"{mode}-save", netns=topo.node)


async def test_service_traffic_is_judged_on_the_backend_after_dnat(topo: Topology) -> None:
    applier = IptablesApplier(netns=topo.node, backend=Backend.NFT)
    proxier = Proxier(node_name="node-1", applier=applier, config=ProxyConfig())
    proxier.set_up()
    proxier.on_service(None, {"metadata": {"namespace": "default", "name": "db"},
                              "spec": {"clusterIP": VIP, "ports": [
                                  {"name": "http", "port": 80, "protocol": "TCP"}]}})
    proxier.on_endpoints(None, {"metadata": {"namespace": "default", "name": "db"},
                                "subsets": [{"addresses": [{"ip": PODS["pod-a"],
                                                            "nodeName": "node-1"}],
                                             "ports": [{"name": "http", "port": 8080,
                                                        "protocol": "TCP"}]}]})
    assert await proxier.sync()
    e = enforcer(topo, "iptables-nft")
    e.on_policy(None, DB_FROM_CLIENT)
    assert await e.sync(full=True)
    # The service proxy repairs its own jumps after ours: ours must stay first.
    proxier.clean_up()
    proxier.set_up()
    assert await proxier.sync(full=True)
    assert not e.backend.intact()
    assert await e.check() is False
    assert await e.sync(full=True)
    assert e.backend.intact()
    assert ok(topo.probe("tcp", VIP, 80), "pod-a")
    assert topo.probe("tcp", VIP, 80, src=topo.pods["pod-b"]) == ["ERR:EHOSTUNREACH"]
    e.clean_up()
    proxier.clean_up()


# A client that keeps one connection open, sends a line whenever it reads one
# on stdin and prints the echo or the error.
HOLDER = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.settimeout(float(sys.argv[3]))
print("connected", flush=True)
for line in sys.stdin:
    try:
        s.sendall(line.encode())
        print(s.recv(100).decode().strip() or "closed", flush=True)
    except OSError as e:
        print("ERR:" + type(e).__name__, flush=True)
"""
ECHO = r"""
import socket, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 7000))
srv.listen(8)
print("ready", flush=True)
def serve(c):
    while data := c.recv(100):
        c.sendall(data)
while True:
    threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()
"""


class Holder:
    def __init__(self, netns: str, ip: str, timeout: float = 2.0) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c",
                                      HOLDER, ip, "7000", str(timeout)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.read() == "connected"

    def read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def say(self, text: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.mark.parametrize("mode", ["iptables-nft", "nftables"])
async def test_open_connections_that_a_new_policy_denies_are_cut(topo: Topology,
                                                                  mode: str) -> None:
    server = subprocess.Popen(["ip", "netns", "exec", topo.pods["pod-a"], sys.executable, "-c",
                               ECHO], stdout=subprocess.PIPE, text=True)
    topo.servers.append(server)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    e = enforcer(topo, mode)
    assert await e.sync(full=True)
    client = Holder(topo.client, PODS["pod-a"])
    other = Holder(topo.pods["pod-b"], PODS["pod-a"])
    try:
        assert client.say("one") == "one" and other.say("one") == "one"
        # Only the client may still reach pod-a: pod-b's open connection goes.
        e.on_policy(None, netpol("db-from-client-only", {
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}))
        assert await e.sync()
        assert e.cut_connections >= 1
        assert client.say("two") == "two"
        assert other.say("two").startswith("ERR:")
    finally:
        client.close()
        other.close()
        e.clean_up()



@pytest.mark.parametrize("mode", MODES)
async def test_the_trace_reads_the_kernel_rules_back_as_the_model_decides(
        topo: Topology, mode: str) -> None:
    from netplane.cli import tracecmd
    from netplane.proxy import policy as model_of
    from netplane.proxy.trace import Packet, Verdict

    e = enforcer(topo, mode)
    e.on_policy(None, DENY_DB)
    e.on_policy(None, DB_FROM_CLIENT)
    e.on_policy(None, netpol("client-out", {
        "podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.244.1.0/24",
                                        "except": ["10.244.1.3/32"]}}]}]}))
    assert await e.sync(full=True)
    try:
        for src in IPS.values():
            for dst in PODS.values():
                for proto, port in (("tcp", 8080), ("tcp", 9), ("udp", 8080)):
                    pkt = Packet(src, proto, dst, port)
                    if mode == "nftables":
                        steps = tracecmd._nft_steps(topo.node, pkt, [])
                    else:
                        save = tool(Backend(mode.split("-")[1]), "-save")
                        rules, sets = tracecmd._iptables_rules(topo.node, save=save)
                        steps = trace_steps(rules, pkt, sets=sets)
                    kernel = {s.flow.verdict for s in steps} == {Verdict.ACCEPT}
                    want = model_of.evaluate(e.model, src, dst, proto.upper(), port).allowed
                    assert kernel == want, (pkt, [s.path for s in steps])
    finally:
        e.clean_up()
