"""Pod phase and conditions from container states."""

from __future__ import annotations

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.node import podstatus
from netplane.node.pods import NodeContext, resolv_settings
from netplane.node.runtime.process import ContainerState, ContainerStatus

RUNNING = ContainerState(ContainerStatus.RUNNING, pid=42)


def exited(code: int) -> ContainerState:
    return ContainerState(ContainerStatus.EXITED, exit_code=code)


def pod(policy: str = "Always") -> Obj:
    return {"metadata": {"name": "p", "namespace": "ns1"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": "i"}]}}


def view(state: ContainerState, ready: bool = False) -> podstatus.ContainerView:
    return podstatus.ContainerView({"name": "c", "image": "i"}, state, ready, 0)


def test_running_and_ready() -> None:
    st = podstatus.build(pod(), [view(RUNNING, True)], pod_ip="10.244.1.2",
                         host_ip="192.168.56.11", started_at="t")
    assert st["phase"] == "Running" and st["podIP"] == "10.244.1.2"
    assert meta.condition_true({"status": st}, "Ready")
    assert st["containerStatuses"][0]["state"] == {"running": {}}
    assert st["containerStatuses"][0]["containerID"] == "process://42"


def test_the_pod_given_is_left_as_it_was() -> None:
    """It is the informer's copy: changed in place, it would already look
    like the status to write, and a Ready=False set by someone else (the
    node lifecycle controller) would never be written over."""
    cached = pod()
    cached["status"] = {"conditions": [{"type": "Ready", "status": "False"}]}
    st = podstatus.build(cached, [view(RUNNING, True)], pod_ip="10.244.1.2",
                         host_ip="192.168.56.11", started_at="t")
    assert meta.condition_true({"status": st}, "Ready")
    assert cached["status"] == {"conditions": [{"type": "Ready", "status": "False"}]}
    assert not podstatus.same(st, cached["status"])


def test_running_but_not_ready() -> None:
    st = podstatus.build(pod(), [view(RUNNING, False)], pod_ip="x", host_ip="y",
                         started_at="t")
    assert st["phase"] == "Running"
    assert not meta.condition_true({"status": st}, "Ready")


def test_exit_is_reported_not_hidden() -> None:
    st = podstatus.build(pod("Never"), [view(exited(3))], pod_ip="x", host_ip="y",
                         started_at="t")
    assert st["phase"] == "Failed"
    assert st["containerStatuses"][0]["state"]["terminated"] == {"exitCode": 3,
                                                                  "reason": "Error"}
    done = podstatus.build(pod("OnFailure"), [view(exited(0))], pod_ip="x", host_ip="y",
                           started_at="t")
    assert done["phase"] == "Succeeded"


def test_same_ignores_transition_times() -> None:
    a = podstatus.build(pod(), [view(RUNNING, True)], pod_ip="x", host_ip="y", started_at="t")
    b = {**a, "conditions": [{**c, "lastTransitionTime": "later"} for c in a["conditions"]]}
    assert podstatus.same(a, b)
    assert not podstatus.same(a, {**a, "podIP": "z"})


CTX = NodeContext(node_name="node-1", node_ip="192.168.56.11", netns_prefix="np-",
                  dns_ip="10.96.0.10")


def test_cluster_first_dns_policy() -> None:
    servers, searches, options = resolv_settings(pod(), CTX)
    assert servers == ["10.96.0.10"]
    assert searches == ["ns1.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    assert options == ["ndots:5"]


def test_dns_policy_none_uses_dns_config() -> None:
    p = pod()
    p["spec"]["dnsPolicy"] = "None"
    p["spec"]["dnsConfig"] = {"nameservers": ["10.0.0.53"], "searches": ["example.test"],
                              "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}
    assert resolv_settings(p, CTX) == (["10.0.0.53"], ["example.test"], ["ndots:2", "edns0"])


def test_dns_policy_default_inherits_the_node_resolver() -> None:
    p = pod()
    p["spec"]["dnsPolicy"] = "Default"
    node = "# the node's\nnameserver 192.0.2.53\nsearch corp.example\noptions rotate\n"
    assert resolv_settings(p, CTX, node_resolv_conf=node) == (
        ["192.0.2.53"], ["corp.example"], ["rotate"])


def test_dns_config_adds_to_cluster_first() -> None:
    p = pod()
    p["spec"]["dnsConfig"] = {"nameservers": ["10.0.0.53"], "searches": ["extra.test"],
                              "options": [{"name": "ndots", "value": "2"}]}
    servers, searches, options = resolv_settings(p, CTX)
    assert servers == ["10.96.0.10", "10.0.0.53"]
    assert searches[-1] == "extra.test" and options == ["ndots:2"]


def test_pod_netns_name_is_short_and_prefixed() -> None:
    name = CTX.pod_netns("5af637ee-07c5-4b1e-9c2e-123456789abc")
    assert name == "np-pod-5af637ee07c5"


def _init_pod(*init: Obj) -> Obj:
    p = pod()
    p["spec"]["initContainers"] = list(init)
    return p


def test_init_containers_hold_the_pod_pending_then_initialized() -> None:
    first = {"name": "first", "image": "i"}
    p = _init_pod(first)
    waiting = podstatus.build(
        p, [podstatus.ContainerView({"name": "c", "image": "i"},
                                    ContainerState(ContainerStatus.UNKNOWN), False, 0)],
        pod_ip="x", host_ip="y", started_at="t", initialized=False,
        init_views=[podstatus.ContainerView(first, RUNNING, False, 0)])
    assert waiting["phase"] == "Pending"
    init = meta.condition({"status": waiting}, "Initialized")
    assert init is not None and (init["status"], init["reason"]) == (
        "False", "ContainersNotInitialized")
    assert [s["name"] for s in waiting["initContainerStatuses"]] == ["first"]
    done = podstatus.build(p, [view(RUNNING, True)], pod_ip="x", host_ip="y", started_at="t",
                           init_views=[podstatus.ContainerView(first, exited(0), False, 0)])
    assert done["phase"] == "Running" and meta.condition_true({"status": done}, "Ready")
    assert done["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_a_failed_init_container_fails_a_pod_that_never_restarts() -> None:
    st = podstatus.build(_init_pod({"name": "first", "image": "i"}), [], pod_ip="x",
                         host_ip="y", started_at="t", initialized=False, init_failed=True)
    assert st["phase"] == "Failed"


def test_a_sidecar_must_be_ready_for_the_pod_to_be() -> None:
    side = {"name": "side", "image": "i", "restartPolicy": "Always"}
    p = _init_pod(side)
    st = podstatus.build(p, [view(RUNNING, True)], pod_ip="x", host_ip="y", started_at="t",
                         init_views=[podstatus.ContainerView(side, RUNNING, False, 0)])
    assert not meta.condition_true({"status": st}, "Ready")
    st = podstatus.build(p, [view(RUNNING, True)], pod_ip="x", host_ip="y", started_at="t",
                         init_views=[podstatus.ContainerView(side, RUNNING, True, 0)])
    assert meta.condition_true({"status": st}, "Ready")


def test_crash_loop_shows_waiting_with_the_last_exit() -> None:
    last = {"terminated": {"exitCode": 2, "reason": "Error"}}
    v = podstatus.ContainerView({"name": "c", "image": "i"}, exited(2), False, 3,
                                "CrashLoopBackOff", "back-off 20s restarting failed", last)
    st = podstatus.build(pod(), [v], pod_ip="x", host_ip="y", started_at="t")
    cs = st["containerStatuses"][0]
    assert cs["state"] == {"waiting": {"reason": "CrashLoopBackOff",
                                       "message": "back-off 20s restarting failed"}}
    assert cs["lastState"] == last and cs["restartCount"] == 3 and cs["started"] is False


def test_status_carries_the_pods_qos_class() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}
    assert podstatus.build(pod, [], pod_ip="", host_ip="192.168.56.11",
                           started_at="")["qosClass"] == "Guaranteed"
    pod["spec"]["containers"][0]["resources"] = {}
    assert podstatus.build(pod, [], pod_ip="", host_ip="192.168.56.11",
                           started_at="")["qosClass"] == "BestEffort"
