"""Which node announces a LoadBalancer address, and local endpoint counts."""

from __future__ import annotations

from netplane.api.meta import Obj
from netplane.node.services import announcer, local_ready_endpoints


def slice_(svc: str, *eps: tuple[str, str, bool]) -> Obj:
    return {"metadata": {"name": f"{svc}-x", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc}},
            "endpoints": [{"addresses": [ip], "nodeName": node,
                           "conditions": {"ready": ready}} for ip, node, ready in eps]}


def test_announcer_is_the_same_whatever_the_order() -> None:
    nodes = ["node-1", "node-2", "node-3"]
    chosen = announcer("192.168.56.200", nodes)
    assert chosen in nodes
    assert announcer("192.168.56.200", list(reversed(nodes))) == chosen
    assert announcer("192.168.56.200", []) is None


def test_announcers_spread_over_nodes() -> None:
    nodes = ["node-1", "node-2", "node-3"]
    chosen = {announcer(f"192.168.56.{i}", nodes) for i in range(200, 230)}
    assert chosen == set(nodes)


def test_local_ready_endpoints_counts_only_this_nodes_ready_ones() -> None:
    slices = [slice_("web", ("10.244.1.2", "node-1", True), ("10.244.1.3", "node-1", False),
                     ("10.244.2.2", "node-2", True)),
              slice_("other", ("10.244.1.9", "node-1", True))]
    assert local_ready_endpoints(slices, "default", "web", "node-1") == 1
    assert local_ready_endpoints(slices, "default", "web", "node-2") == 1
    assert local_ready_endpoints(slices, "default", "web", "node-3") == 0
    assert local_ready_endpoints(slices, "other-ns", "web", "node-1") == 0


def test_a_heartbeat_is_not_a_node_change() -> None:
    from netplane.api.meta import node_changed

    def node(ready: str, beat: str, cidr: str = "10.244.1.0/24") -> Obj:
        return {"spec": {"podCIDR": cidr},
                "status": {"addresses": [{"type": "InternalIP", "address": "192.168.56.11"}],
                           "conditions": [{"type": "Ready", "status": ready,
                                           "lastHeartbeatTime": beat}]}}

    assert not node_changed(node("True", "t1"), node("True", "t2"))
    assert node_changed(node("True", "t1"), node("False", "t2"))
    assert node_changed(node("True", "t1"), node("True", "t1", "10.244.2.0/24"))
    assert node_changed(None, node("True", "t1")) and node_changed(node("True", "t1"), None)
