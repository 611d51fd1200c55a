"""Admission: what the API server adds to or checks on an object beyond its
schema. Services get a ClusterIP, Nodes a pod CIDR; both are released when
the object goes, and immutable once set. New Pods get the default
tolerations of the not-ready and unreachable taints (tolerations.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from netplane.api import batch, meta, priority, resources
from netplane.api.meta import Obj
from netplane.api.resources import Resource
from netplane.api.validation import FieldError
from netplane.cluster.apiserver import status
from netplane.cluster.apiserver.allocators import (
    AllocationError,
    ClusterIPAllocator,
    PodCIDRAllocator,
    PortAllocator,
)
from netplane.cluster.apiserver.tolerations import (
    KUBE_DEFAULTS,
    DefaultTolerationSeconds,
    add_default_tolerations,
)

Undo = Callable[[], None]


@dataclass
class Allocators:
    cluster_ips: ClusterIPAllocator
    pod_cidrs: PodCIDRAllocator
    node_ports: PortAllocator = field(default_factory=PortAllocator)


def _noop() -> None:
    pass


def wants_node_ports(spec: Obj) -> bool:
    return spec.get("type") == "NodePort" or (
        spec.get("type") == "LoadBalancer"
        and spec.get("allocateLoadBalancerNodePorts", True) is not False)


def wants_health_check(spec: Obj) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def service_node_ports(svc: Obj) -> set[int]:
    spec = svc.get("spec") or {}
    ports = {int(p["nodePort"]) for p in spec.get("ports") or []
             if isinstance(p, dict) and p.get("nodePort")}
    if spec.get("healthCheckNodePort"):
        ports.add(int(spec["healthCheckNodePort"]))
    return ports


class Admission:
    def __init__(self, allocators: Allocators, *,
                 toleration_seconds: DefaultTolerationSeconds = KUBE_DEFAULTS,
                 ) -> None:
        self.alloc, self.toleration_seconds = allocators, toleration_seconds

    def recover(self, services: list[Obj], nodes: list[Obj]) -> None:
        """Rebuild allocator state from the stored objects."""
        for svc in services:
            ip = svc.get("spec", {}).get("clusterIP")
            if ip and ip != "None" and self.alloc.cluster_ips.contains(ip):
                self.alloc.cluster_ips.allocate_specific(ip)
            for port in service_node_ports(svc):
                try:
                    self.alloc.node_ports.allocate_specific(port)
                except AllocationError:
                    pass  # outside today's range: kept, as Kubernetes does
        for node in nodes:
            cidr = node.get("spec", {}).get("podCIDR")
            if cidr:
                self.alloc.pod_cidrs.allocate_specific(cidr)

    def on_create(self, res: Resource, obj: Obj) -> Callable[[], None]:
        """Admit ``obj``; returns what undoes it if the store write fails."""
        if res is resources.SERVICE:
            undo, _ = self.service_update(None, obj)
            return undo
        if res is resources.NODE:
            return self._node_cidr(obj)
        if res is resources.POD:
            add_default_tolerations(obj, self.toleration_seconds)
        if res.kind in APPS_SETS:
            _new_set(obj)
        return _noop

    def on_update(self, res: Resource, old: Obj, new: Obj) -> None:
        if res is resources.SERVICE:
            self._service_immutable(old, new)
        elif res is resources.NODE:
            cidr = old.get("spec", {}).get("podCIDR")
            if cidr:
                spec = new.setdefault("spec", {})
                if spec.get("podCIDR") not in (None, "", cidr):
                    raise _immutable("Node", new, "spec.podCIDR", cidr)
                spec["podCIDR"], spec["podCIDRs"] = cidr, [cidr]
        elif res is resources.POD:
            priority.keep_on_update(old, new)
            self._pod_immutable(old, new)
        elif res.kind in ("RoleBinding", "ClusterRoleBinding") \
                and old.get("roleRef") != new.get("roleRef"):
            raise status.invalid(res.kind, meta.name(new), [FieldError(
                "roleRef", f"Invalid value: {new.get('roleRef')!r}: cannot change roleRef")])
        elif res.kind in ("ConfigMap", "Secret"):
            self._data_immutable(res, old, new)
        elif res.kind == "Job" and (errs := batch.job_update_errors(old, new)):
            raise status.invalid("Job", meta.name(new), errs)
        elif res.kind in APPS_SETS or res.kind == "ControllerRevision":
            _set_update(res.kind, old, new)

    def service_update(self, old: Obj | None, new: Obj) -> tuple[Undo, Undo]:
        """(undo, commit) of a Service's allocations, when it is created
        (``old`` None) or updated: a ClusterIP when it had none (new, or no
        longer ExternalName), its node ports; commit frees what the old
        Service held and the new one does not."""
        old_ip = (old or {}).get("spec", {}).get("clusterIP")
        new_spec = new.setdefault("spec", {})
        undo_ip: Undo = _noop
        if not old_ip or old_ip == "None":
            undo_ip = self._service_ip(new)
        try:
            undo_ports, commit_ports = self.node_ports(old, new)
        except BaseException:
            undo_ip()
            raise

        def undo() -> None:
            undo_ports()
            undo_ip()

        def commit() -> None:
            commit_ports()
            if old_ip and old_ip != "None" and new_spec.get("clusterIP") != old_ip \
                    and self.alloc.cluster_ips.contains(old_ip):
                self.alloc.cluster_ips.release(old_ip)
        return undo, commit

    def node_ports(self, old: Obj | None, new: Obj) -> tuple[Undo, Undo]:
        """Gives ``new`` its node ports: kept from ``old`` where the port is the
        same, requested ones checked, the rest allocated. Returns (undo, commit):
        undo frees what was taken; commit frees what ``old`` held and ``new``
        no longer does."""
        spec = new.setdefault("spec", {})
        old_spec = (old or {}).get("spec") or {}
        held = service_node_ports(old) if old else set()
        taken: list[int] = []

        def undo() -> None:
            for port in taken:
                self.alloc.node_ports.release(port)

        try:
            self._assign_node_ports(spec, old_spec, held, taken, new)
        except BaseException:
            undo()
            raise

        def commit() -> None:
            for port in held - service_node_ports(new):
                self.alloc.node_ports.release(port)
        return undo, commit

    def _assign_node_ports(self, spec: Obj, old_spec: Obj, held: set[int], taken: list[int],
                           svc: Obj) -> None:
        def take(port: int | None, path: str) -> int:
            try:
                if port is None:
                    port = self.alloc.node_ports.allocate()
                elif port in held:
                    return port
                else:
                    self.alloc.node_ports.allocate_specific(port)
            except AllocationError as e:
                raise status.invalid("Service", meta.name(svc), [
                    FieldError(path, f"Invalid value: {port}: {e}")]) from None
            taken.append(port)
            return port

        old_by_port = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                       for p in old_spec.get("ports") or [] if isinstance(p, dict)}
        for i, p in enumerate(spec.get("ports") or []):
            if not isinstance(p, dict):
                continue
            if not wants_node_ports(spec):
                if p.get("nodePort") and spec.get("type") != "LoadBalancer":
                    raise status.invalid("Service", meta.name(svc), [FieldError(
                        f"spec.ports[{i}].nodePort", "Forbidden: may not be used when `type` "
                        f"is '{spec.get('type', 'ClusterIP')}'", "FieldValueForbidden")])
                continue
            wanted = p.get("nodePort") or old_by_port.get((p.get("port"),
                                                            p.get("protocol", "TCP")))
            p["nodePort"] = take(int(wanted) if wanted else None,
                                 f"spec.ports[{i}].nodePort")
        if wants_health_check(spec):
            wanted = spec.get("healthCheckNodePort") or old_spec.get("healthCheckNodePort")
            spec["healthCheckNodePort"] = take(int(wanted) if wanted else None,
                                               "spec.healthCheckNodePort")
        else:
            spec.pop("healthCheckNodePort", None)

    def on_delete(self, res: Resource, obj: Obj) -> None:
        if res is resources.SERVICE:
            ip = obj.get("spec", {}).get("clusterIP")
            if ip and ip != "None" and self.alloc.cluster_ips.contains(ip):
                self.alloc.cluster_ips.release(ip)
            for port in service_node_ports(obj):
                self.alloc.node_ports.release(port)
        elif res is resources.NODE and obj.get("spec", {}).get("podCIDR"):
            self.alloc.pod_cidrs.release(obj["spec"]["podCIDR"])

    # -- per kind --

    def _service_ip(self, svc: Obj) -> Callable[[], None]:
        spec = svc.get("spec", {})
        if spec.get("type") == "ExternalName" or spec.get("clusterIP") == "None":
            spec.pop("clusterIPs", None)
            if spec.get("clusterIP") == "None":
                spec["clusterIPs"] = ["None"]
            return _noop
        try:
            if spec.get("clusterIP"):
                self.alloc.cluster_ips.allocate_specific(spec["clusterIP"])
            else:
                spec["clusterIP"] = self.alloc.cluster_ips.allocate()
        except AllocationError as e:
            raise status.invalid("Service", meta.name(svc), [
                FieldError("spec.clusterIP", f'Invalid value: "{spec.get("clusterIP")}": {e}')
            ]) from None
        spec["clusterIPs"] = [spec["clusterIP"]]
        ip = spec["clusterIP"]
        return lambda: self.alloc.cluster_ips.release(ip)

    def _node_cidr(self, node: Obj) -> Callable[[], None]:
        spec = node.setdefault("spec", {})
        try:
            if spec.get("podCIDR"):
                self.alloc.pod_cidrs.allocate_specific(spec["podCIDR"])
            else:
                spec["podCIDR"] = self.alloc.pod_cidrs.allocate()
        except (AllocationError, ValueError) as e:
            raise status.invalid("Node", meta.name(node), [
                FieldError("spec.podCIDR", str(e))]) from None
        spec["podCIDRs"] = [spec["podCIDR"]]
        cidr = spec["podCIDR"]
        return lambda: self.alloc.pod_cidrs.release(cidr)

    @staticmethod
    def _service_immutable(old: Obj, new: Obj) -> None:
        old_ip = old.get("spec", {}).get("clusterIP")
        spec = new.setdefault("spec", {})
        if spec.get("type") == "ExternalName" or old.get("spec", {}).get("type") == \
                "ExternalName":
            if spec.get("type") == "ExternalName":
                spec.pop("clusterIP", None)  # released when the update is written
                spec.pop("clusterIPs", None)
            return  # to or from ExternalName: the address comes or goes
        if old_ip and spec.get("clusterIP") in (None, ""):
            spec["clusterIP"], spec["clusterIPs"] = old_ip, old["spec"].get("clusterIPs")
        elif old_ip and spec.get("clusterIP") != old_ip:
            raise _immutable("Service", new, "spec.clusterIP", spec.get("clusterIP"))

    @staticmethod
    def _data_immutable(res: Resource, old: Obj, new: Obj) -> None:
        if res.kind == "Secret" and old.get("type") != new.get("type"):
            raise _immutable("Secret", new, "type", new.get("type"))
        if not old.get("immutable"):
            return
        errs = [FieldError(k, "Forbidden: field is immutable when `immutable` is set",
                           "FieldValueForbidden")
                for k in ("data", "binaryData", "immutable") if old.get(k) != new.get(k)]
        if errs:
            raise status.invalid(res.kind, meta.name(new), errs)

    @staticmethod
    def _pod_immutable(old: Obj, new: Obj) -> None:
        def strip(spec: Obj) -> Obj:
            spec = dict(spec)
            spec["containers"] = [{k: v for k, v in c.items() if k != "image"}
                                  for c in spec.get("containers") or []]
            return spec

        if strip(old.get("spec", {})) != strip(new.get("spec", {})):
            raise status.invalid("Pod", meta.name(new), [FieldError(
                "spec", "Forbidden: pod updates may not change fields other than "
                "`spec.containers[*].image`", "FieldValueForbidden")])


APPS_SETS = ("DaemonSet", "StatefulSet")
# kube's DaemonSet strategy counts template changes in this annotation (the
# v1 form of spec.templateGeneration); pods carry it as pod-template-generation.
TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"
# What a StatefulSet update may change (kube's ValidateStatefulSetUpdate).
STATEFULSET_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy",
                       "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
# Status fields kube always writes (non-omitempty), so a new set shows zeros.
ZERO_STATUS = {"DaemonSet": ("currentNumberScheduled", "numberMisscheduled",
                             "desiredNumberScheduled", "numberReady"),
               "StatefulSet": ("replicas", "availableReplicas")}


def _new_set(obj: Obj) -> None:
    """PrepareForCreate of DaemonSets and StatefulSets: the status starts
    empty; a DaemonSet's template is generation 1."""
    obj["status"] = {k: 0 for k in ZERO_STATUS[str(obj["kind"])]}
    if obj["kind"] == "DaemonSet":
        meta.meta(obj).setdefault("annotations", {})[TEMPLATE_GENERATION] = "1"


def _set_update(kind: str, old: Obj, new: Obj) -> None:
    """PrepareForUpdate and ValidateUpdate of the apps sets and their
    revisions: what may not change, and the DaemonSet template generation."""
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if kind == "ControllerRevision":
        if old.get("data") != new.get("data"):
            raise _immutable(kind, new, "data", "...")
        return
    if old_spec.get("selector") != new_spec.get("selector"):
        raise _immutable(kind, new, "spec.selector", new_spec.get("selector"))
    if kind == "StatefulSet":
        def fixed(spec: Obj) -> Obj:
            return {k: v for k, v in spec.items() if k not in STATEFULSET_MUTABLE}
        if fixed(old_spec) != fixed(new_spec):
            raise status.invalid(kind, meta.name(new), [FieldError(
                "spec", "Forbidden: updates to statefulset spec for fields other than "
                "'replicas', 'ordinals', 'template', 'updateStrategy', "
                "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                "FieldValueForbidden")])
        return
    noted = str((meta.meta(old).get("annotations") or {}).get(TEMPLATE_GENERATION, ""))
    generation = int(noted) if noted.isdigit() else 1
    if old_spec.get("template") != new_spec.get("template"):
        generation += 1
    meta.meta(new).setdefault("annotations", {})[TEMPLATE_GENERATION] = str(generation)


def _immutable(kind: str, obj: Obj, path: str, value: object) -> status.ApiError:
    return status.invalid(kind, meta.name(obj), [
        FieldError(path, f'Invalid value: "{value}": field is immutable')])
