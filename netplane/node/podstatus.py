"""A pod's status as the agent reports it: phase, IPs, conditions and one
status per container (init containers apart), computed from what the
runtime says and what the agent remembers of each container."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.node.cgrouplimits import qos_class
from netplane.node.runtime.process import ContainerState, ContainerStatus


@dataclass(frozen=True)
class ContainerView:
    container: Obj
    state: ContainerState
    ready: bool
    restarts: int
    waiting_reason: str = ""
    waiting_message: str = ""
    last_state: Obj = field(default_factory=dict)
    # The startup probe passed (or there is none) and the container runs.
    started: bool | None = None


def stamp(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def container_id(state: ContainerState) -> str:
    if state.container_id:
        return state.container_id
    return f"process://{state.pid}" if state.pid else ""


def terminated(state: ContainerState, *, reason: str = "") -> Obj:
    """A ``terminated`` state block, for ``state`` or ``lastState``."""
    code = state.exit_code if state.exit_code is not None else 137
    reason = reason or state.reason or ("Completed" if code == 0 else "Error")
    out: Obj = {"exitCode": code, "reason": reason}
    if (started := stamp(state.started_at)) is not None:
        out["startedAt"] = started
    if (finished := stamp(state.finished_at or state.started_at)) is not None:
        out["finishedAt"] = finished
    if state.pid or state.container_id:
        out["containerID"] = container_id(state)
    return out


def _state(view: ContainerView) -> Obj:
    st = view.state
    if view.waiting_reason:
        waiting = {"reason": view.waiting_reason}
        if view.waiting_message:
            waiting["message"] = view.waiting_message
        return {"waiting": waiting}
    if st.status is ContainerStatus.RUNNING:
        started = stamp(st.started_at)
        return {"running": {"startedAt": started} if started else {}}
    if st.status is ContainerStatus.EXITED:
        return {"terminated": terminated(st)}
    return {"waiting": {"reason": "ContainerCreating"}}


def container_status(view: ContainerView) -> Obj:
    c = view.container
    running = view.state.status is ContainerStatus.RUNNING
    out: Obj = {"name": c["name"], "image": c.get("image", ""),
                "imageID": view.state.image_id,
                "ready": view.ready, "restartCount": view.restarts,
                "started": running if view.started is None else running and view.started,
                "state": _state(view)}
    if view.last_state:
        out["lastState"] = view.last_state
    if view.state.pid or view.state.container_id:
        out["containerID"] = container_id(view.state)
    return out


def is_sidecar(container: Obj) -> bool:
    """An init container that keeps running beside the app (Kubernetes 1.29+)."""
    return container.get("restartPolicy") == "Always"


def phase(pod: Obj, views: list[ContainerView], *, initialized: bool = True,
          init_failed: bool = False) -> str:
    if init_failed:
        return "Failed"
    if not initialized:
        return "Pending"
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
          started_at: str, init_views: list[ContainerView] | None = None,
          initialized: bool = True, init_failed: bool = False) -> Obj:
    init_views = init_views or []
    ph = phase(pod, views, initialized=initialized, init_failed=init_failed)
    sidecars = [v for v in init_views if is_sidecar(v.container)]
    ready = ph == "Running" and all(v.ready for v in (*views, *sidecars))
    status: Obj = {"phase": ph, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                   "startTime": started_at, "qosClass": qos_class(pod).value,
                   "containerStatuses": [container_status(v) for v in views]}
    if init_views:
        status["initContainerStatuses"] = [container_status(v) for v in init_views]
    if pod_ip:
        status["podIP"], status["podIPs"] = pod_ip, [{"ip": pod_ip}]
    # Copies: the pod is the informer's, and set_condition changes them in place.
    holder: Obj = {"status": {"conditions": [
        dict(c) for c in pod.get("status", {}).get("conditions") or []]}}
    meta.set_condition(holder, "PodScheduled", True)
    meta.set_condition(holder, "Initialized", initialized,
                       "" if initialized else "ContainersNotInitialized")
    reason = "" if ready else ("PodCompleted" if ph in ("Succeeded", "Failed")
                               else "ContainersNotReady")
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
