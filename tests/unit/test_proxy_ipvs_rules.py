"""IPVS mode's ipset and iptables text: golden documents and a constant rule count.

Address plan:
    pod network (cluster CIDR)   10.244.0.0/16
    this node                    node-1, underlay 192.168.56.11
    default/web   ClusterIP 10.96.0.50:80/TCP -> 10.244.1.2:8080 (node-1)
    default/empty ClusterIP 10.96.0.51:80/TCP, no endpoints
    default/np    NodePort 10.96.0.60:53/UDP -> 30053, Local policy, endpoint on node-2
"""

from __future__ import annotations

from netplane.proxy.config import ProxyConfig
from netplane.proxy.ipvs.plan import IPSetName, plan
from netplane.proxy.ipvs.rules import (
    PLUMBING,
    render_ipset_destruction,
    render_ipsets,
    render_iptables,
)
from netplane.proxy.model import EndpointInfo, Protocol, ServicePortInfo, ServiceType

CONFIG = ProxyConfig()


def _map() -> dict[object, tuple[ServicePortInfo, list[EndpointInfo]]]:
    web = ServicePortInfo("default", "web", "", "10.96.0.50", 80, Protocol.TCP)
    empty = ServicePortInfo("default", "empty", "", "10.96.0.51", 80, Protocol.TCP)
    np = ServicePortInfo("default", "np", "", "10.96.0.60", 53, Protocol.UDP,
                         service_type=ServiceType.NODE_PORT, node_port=30053,
                         external_policy_local=True)
    return {web.key: (web, [EndpointInfo("10.244.1.2", 8080, node_name="node-1")]),
            empty.key: (empty, []),
            np.key: (np, [EndpointInfo("10.244.2.3", 5353, node_name="node-2")])}


IPSET_GOLDEN = """\
create NP-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 262144 -exist
create NP-CLUSTER-IP-T hash:ip,port family inet hashsize 1024 maxelem 262144 -exist
flush NP-CLUSTER-IP-T
add NP-CLUSTER-IP-T 10.96.0.50,tcp:80
add NP-CLUSTER-IP-T 10.96.0.51,tcp:80
add NP-CLUSTER-IP-T 10.96.0.60,udp:53
swap NP-CLUSTER-IP-T NP-CLUSTER-IP
destroy NP-CLUSTER-IP-T
create NP-IPVS-IPS hash:ip family inet hashsize 1024 maxelem 262144 -exist
create NP-IPVS-IPS-T hash:ip family inet hashsize 1024 maxelem 262144 -exist
flush NP-IPVS-IPS-T
add NP-IPVS-IPS-T 10.96.0.50
add NP-IPVS-IPS-T 10.96.0.51
add NP-IPVS-IPS-T 10.96.0.60
swap NP-IPVS-IPS-T NP-IPVS-IPS
destroy NP-IPVS-IPS-T
create NP-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 262144 -exist
create NP-LOOP-BACK-T hash:ip,port,ip family inet hashsize 1024 maxelem 262144 -exist
flush NP-LOOP-BACK-T
add NP-LOOP-BACK-T 10.244.1.2,tcp:8080,10.244.1.2
swap NP-LOOP-BACK-T NP-LOOP-BACK
destroy NP-LOOP-BACK-T
create NP-NO-ENDPOINTS hash:ip,port family inet hashsize 1024 maxelem 262144 -exist
create NP-NO-ENDPOINTS-T hash:ip,port family inet hashsize 1024 maxelem 262144 -exist
flush NP-NO-ENDPOINTS-T
add NP-NO-ENDPOINTS-T 10.96.0.51,tcp:80
swap NP-NO-ENDPOINTS-T NP-NO-ENDPOINTS
destroy NP-NO-ENDPOINTS-T
create NP-NO-LOCAL-ENDPOINTS hash:ip,port family inet hashsize 1024 maxelem 262144 -exist
create NP-NO-LOCAL-ENDPOINTS-T hash:ip,port family inet hashsize 1024 maxelem 262144 -exist
flush NP-NO-LOCAL-ENDPOINTS-T
add NP-NO-LOCAL-ENDPOINTS-T 127.0.0.1,udp:30053
add NP-NO-LOCAL-ENDPOINTS-T 192.168.56.11,udp:30053
swap NP-NO-LOCAL-ENDPOINTS-T NP-NO-LOCAL-ENDPOINTS
destroy NP-NO-LOCAL-ENDPOINTS-T
create NP-NODE-PORT-LOCAL-UDP bitmap:port range 0-65535 -exist
create NP-NODE-PORT-LOCAL-UDP-T bitmap:port range 0-65535 -exist
flush NP-NODE-PORT-LOCAL-UDP-T
add NP-NODE-PORT-LOCAL-UDP-T 30053
swap NP-NODE-PORT-LOCAL-UDP-T NP-NODE-PORT-LOCAL-UDP
destroy NP-NODE-PORT-LOCAL-UDP-T
"""

IPTABLES_GOLDEN = """\
*raw
:NP-NOTRACK - [0:0]
COMMIT
*nat
:NP-SERVICES - [0:0]
:NP-POSTROUTING - [0:0]
:NP-MARK-MASQ - [0:0]
:NP-NODE-PORT - [0:0]
:NP-LOAD-BALANCER - [0:0]
-A NP-SERVICES -m comment --comment "netplane service load-balancer IP" -m set --match-set NP-LOAD-BALANCER dst,dst -j NP-LOAD-BALANCER
-A NP-SERVICES -m comment --comment "netplane service cluster IP from off-cluster" ! -s 10.244.0.0/16 -m set --match-set NP-CLUSTER-IP dst,dst -j NP-MARK-MASQ
-A NP-SERVICES -m comment --comment "netplane service external IP" -m set --match-set NP-EXTERNAL-IP dst,dst -j NP-MARK-MASQ
-A NP-SERVICES -m comment --comment "netplane service node ports" -m addrtype --dst-type LOCAL -j NP-NODE-PORT
-A NP-NODE-PORT -m comment --comment "netplane node port tcp Local from loopback" -p tcp -s 127.0.0.0/8 -m set --match-set NP-NODE-PORT-LOCAL-TCP dst -j NP-MARK-MASQ
-A NP-NODE-PORT -m comment --comment "netplane node port tcp" -p tcp -m set --match-set NP-NODE-PORT-TCP dst -j NP-MARK-MASQ
-A NP-NODE-PORT -m comment --comment "netplane node port udp Local from loopback" -p udp -s 127.0.0.0/8 -m set --match-set NP-NODE-PORT-LOCAL-UDP dst -j NP-MARK-MASQ
-A NP-NODE-PORT -m comment --comment "netplane node port udp" -p udp -m set --match-set NP-NODE-PORT-UDP dst -j NP-MARK-MASQ
-A NP-NODE-PORT -m comment --comment "netplane node port sctp Local from loopback" -p sctp -s 127.0.0.0/8 -m set --match-set NP-NODE-PORT-LOCAL-SCTP-HASH dst,dst -j NP-MARK-MASQ
-A NP-NODE-PORT -m comment --comment "netplane node port sctp" -p sctp -m set --match-set NP-NODE-PORT-SCTP-HASH dst,dst -j NP-MARK-MASQ
-A NP-LOAD-BALANCER -m comment --comment "netplane load-balancer Local policy" -m set --match-set NP-LOAD-BALANCER-LOCAL dst,dst -j RETURN
-A NP-LOAD-BALANCER -m comment --comment "netplane load-balancer Cluster policy" -j NP-MARK-MASQ
-A NP-POSTROUTING -m comment --comment "netplane endpoint reaching itself (hairpin)" -m set --match-set NP-LOOP-BACK dst,dst,src -j MASQUERADE
-A NP-POSTROUTING -m comment --comment "netplane service traffic requiring SNAT" -m mark ! --mark 0x4000/0x4000 -j RETURN
-A NP-POSTROUTING -m comment --comment "netplane service traffic requiring SNAT" -j MARK --xor-mark 0x4000
-A NP-POSTROUTING -m comment --comment "netplane service traffic requiring SNAT" -j MASQUERADE
-A NP-MARK-MASQ -m comment --comment "netplane mark for masquerade" -j MARK --or-mark 0x4000
COMMIT
*filter
:NP-IPVS-FILTER - [0:0]
-A NP-IPVS-FILTER -m comment --comment "netplane ipvs service without endpoints" -m set --match-set NP-NO-ENDPOINTS dst,dst -j REJECT
-A NP-IPVS-FILTER -m comment --comment "netplane ipvs Local policy without local endpoints" -m set --match-set NP-NO-LOCAL-ENDPOINTS dst,dst -j DROP
-A NP-IPVS-FILTER -m comment --comment "netplane ipvs load-balancer source ranges" -m set --match-set NP-LOAD-BALANCER-FW dst,dst -m set ! --match-set NP-LOAD-BALANCER-SOURCE-CIDR dst,dst,src -j DROP
-A NP-IPVS-FILTER -m comment --comment "netplane ipvs service port" -m set --match-set NP-CLUSTER-IP dst,dst -j RETURN
-A NP-IPVS-FILTER -m comment --comment "netplane ipvs service port" -m set --match-set NP-LOAD-BALANCER dst,dst -j RETURN
-A NP-IPVS-FILTER -m comment --comment "netplane ipvs service port" -m set --match-set NP-EXTERNAL-IP dst,dst -j RETURN
-A NP-IPVS-FILTER -m comment --comment "netplane ipvs service port" -m set --match-set NP-EXTERNAL-IP-LOCAL dst,dst -j RETURN
-A NP-IPVS-FILTER -m comment --comment "netplane ipvs health check node port" -m set --match-set NP-HEALTH-CHECK-NODE-PORT dst -j ACCEPT
-A NP-IPVS-FILTER -m comment --comment "netplane ipvs other ports of service addresses" -m set --match-set NP-IPVS-IPS dst -j REJECT
COMMIT
"""  # noqa: E501


def _nonempty(sets: dict[IPSetName, set[str]]) -> dict[IPSetName, set[str]]:
    return {name: members for name, members in sets.items() if members}


def test_ipset_restore_text_matches_golden() -> None:
    desired = plan(_map(), CONFIG, node_name="node-1", node_ips=["192.168.56.11"])  # type: ignore[arg-type]
    assert render_ipsets(_nonempty(desired.ipsets)) == IPSET_GOLDEN


def test_ipset_text_is_sorted_whatever_the_input_order() -> None:
    members = {IPSetName.CLUSTER_IP: {"10.96.0.9,tcp:80", "10.96.0.1,tcp:443"}}
    lines = render_ipsets(members).splitlines()
    assert [line for line in lines if line.startswith("add")] == [
        "add NP-CLUSTER-IP-T 10.96.0.1,tcp:443", "add NP-CLUSTER-IP-T 10.96.0.9,tcp:80"]


def test_iptables_restore_text_matches_golden() -> None:
    assert render_iptables(CONFIG) == IPTABLES_GOLDEN


def test_every_jump_targets_a_declared_chain() -> None:
    text = render_iptables(CONFIG)
    declared = {line[1:].split()[0] for line in text.splitlines() if line.startswith(":")}
    assert {j.chain for j in PLUMBING} <= declared
    targets = {line.split(" -j ")[1].split()[0] for line in text.splitlines()
               if line.startswith("-A ")}
    assert {t for t in targets if t.startswith("NP-")} <= declared


def test_clean_up_destroys_only_our_sets() -> None:
    text = render_ipset_destruction(["NP-CLUSTER-IP", "KUBE-CLUSTER-IP", "NP-LOOP-BACK-T",
                                     "NP-SOMETHING-ELSE"])
    assert text == "destroy NP-CLUSTER-IP\ndestroy NP-LOOP-BACK-T\n"
