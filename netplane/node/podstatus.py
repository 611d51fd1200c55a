"""A pod's status as the agent reports it: phase, IPs, conditions and one
status per container, computed from what the runtime says."""

from __future__ import annotations

from dataclasses import dataclass

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.node.runtime.process import ContainerState, ContainerStatus


@dataclass(frozen=True)
class ContainerView:
    container: Obj
    state: ContainerState
    ready: bool
    restarts: int
    waiting_reason: str = ""
    waiting_message: str = ""


def _state(view: ContainerView) -> Obj:
    st = view.state
    if view.waiting_reason:
        return {"waiting": {"reason": view.waiting_reason, "message": view.waiting_message}}
    if st.status is ContainerStatus.RUNNING:
        return {"running": {}}
    if st.status is ContainerStatus.EXITED:
        code = st.exit_code if st.exit_code is not None else -1
        return {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}
    return {"waiting": {"reason": "ContainerCreating"}}


def container_status(view: ContainerView) -> Obj:
    c = view.container
    out: Obj = {"name": c["name"], "image": c.get("image", ""), "imageID": "",
                "ready": view.ready, "restartCount": view.restarts,
                "started": view.state.status is ContainerStatus.RUNNING,
                "state": _state(view)}
    if view.state.pid:
        out["containerID"] = f"process://{view.state.pid}"
    return out


def phase(pod: Obj, views: list[ContainerView]) -> str:
    states = [v.state.status for v in views]
    if any(s is ContainerStatus.RUNNING for s in states):
        return "Running"
    policy = pod.get("spec", {}).get("restartPolicy", "Always")
    if states and all(s is ContainerStatus.EXITED for s in states) and policy != "Always":
        codes = [v.state.exit_code for v in views]
        if all(c == 0 for c in codes):
            return "Succeeded"
        if policy == "Never":
            return "Failed"
    if any(s is ContainerStatus.EXITED for s in states) and policy == "Always":
        return "Running"
    return "Pending"


def build(pod: Obj, views: list[ContainerView], *, pod_ip: str, host_ip: str,
          started_at: str) -> Obj:
    ph = phase(pod, views)
    ready = ph == "Running" and all(v.ready for v in views)
    status: Obj = {"phase": ph, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                   "startTime": started_at,
                   "containerStatuses": [container_status(v) for v in views]}
    if pod_ip:
        status["podIP"], status["podIPs"] = pod_ip, [{"ip": pod_ip}]
    holder: Obj = {"status": {"conditions": list(pod.get("status", {}).get("conditions") or [])}}
    meta.set_condition(holder, "PodScheduled", True)
    meta.set_condition(holder, "Initialized", True)
    reason = "" if ready else "ContainersNotReady"
    meta.set_condition(holder, "ContainersReady", ready, reason)
    meta.set_condition(holder, "Ready", ready, reason)
    status["conditions"] = holder["status"]["conditions"]
    return status


def same(a: Obj, b: Obj) -> bool:
    """Equal but for transition times."""
    def strip(st: Obj) -> Obj:
        out = dict(st)
        out["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                             for c in st.get("conditions") or []]
        return out
    return strip(a) == strip(b)
