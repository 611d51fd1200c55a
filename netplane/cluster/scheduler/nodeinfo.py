"""What the plugins know of a node: the node, the pods on it (bound or
assumed) with their requests, host ports and pod-affinity terms parsed once,
and its allocatable. A snapshot is built once per scheduling pass; a pod
assumed on a node is added to that node's entry, so the next decision of
the pass sees it without rebuilding anything (kube's NodeInfo and cache)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.api.quantity import quantity
from netplane.cluster.scheduler.ranking import ChangeFeed

CPU, MEMORY, EPHEMERAL_STORAGE, PODS = "cpu", "memory", "ephemeral-storage", "pods"
# What a container that requests nothing counts for when nodes are ranked
# (kube's DefaultMilliCPURequest, DefaultMemoryRequest): without these,
# best-effort pods would all look free and pile onto one node.
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 2**20
WILDCARD_IP = "0.0.0.0"


@dataclass(frozen=True)
class Resource:
    """Requested or allocatable amounts: cpu in millicores, bytes otherwise."""

    milli_cpu: int = 0
    memory: int = 0
    ephemeral_storage: int = 0

    def __add__(self, other: Resource) -> Resource:
        return Resource(self.milli_cpu + other.milli_cpu, self.memory + other.memory,
                        self.ephemeral_storage + other.ephemeral_storage)

    def __sub__(self, other: Resource) -> Resource:
        return Resource(self.milli_cpu - other.milli_cpu, self.memory - other.memory,
                        self.ephemeral_storage - other.ephemeral_storage)

    def max(self, other: Resource) -> Resource:
        return Resource(max(self.milli_cpu, other.milli_cpu), max(self.memory, other.memory),
                        max(self.ephemeral_storage, other.ephemeral_storage))

    @property
    def zero(self) -> bool:
        return not (self.milli_cpu or self.memory or self.ephemeral_storage)


def resource_list(amounts: Obj | None) -> Resource:
    """A ResourceList (``{"cpu": "500m", "memory": "64Mi"}``) as a Resource."""
    amounts = amounts or {}

    def read(name: str, scale: int) -> int:
        text = amounts.get(name)
        return 0 if text is None else round(quantity(str(text)) * scale)
    return Resource(read(CPU, 1000), read(MEMORY, 1), read(EPHEMERAL_STORAGE, 1))


def _container_requests(c: Obj, *, non_zero: bool) -> Resource:
    res = c.get("resources") or {}
    # Requests default to limits, as the API server's defaulting does.
    given = {**(res.get("limits") or {}), **(res.get("requests") or {})}
    r = resource_list(given)
    if non_zero:
        r = Resource(r.milli_cpu if CPU in given else DEFAULT_MILLI_CPU,
                     r.memory if MEMORY in given else DEFAULT_MEMORY, r.ephemeral_storage)
    return r


# pod_requests by the spec object it read: one cycle asks for a pod's
# requests several times (filters, scores, the cache), and the scheduler's
# pods, from its informers, are never changed in place.
_REQUESTS: dict[tuple[int, bool], tuple[Obj, Resource]] = {}
_REQUESTS_SIZE = 4096


def pod_requests(pod: Obj, *, non_zero: bool = False) -> Resource:
    """kube's PodRequests: the containers' sum, raised to any one init
    container's need (sidecar init containers, restartPolicy Always, run on
    beside the others and add to both), plus the pod's overhead."""
    spec = pod.get("spec") or {}
    key = (id(spec), non_zero)
    seen = _REQUESTS.get(key)
    if seen is not None and seen[0] is spec:
        return seen[1]
    if len(_REQUESTS) >= _REQUESTS_SIZE:
        _REQUESTS.clear()
    out = _REQUESTS[key] = (spec, _pod_requests(spec, non_zero))
    return out[1]


def _pod_requests(spec: Obj, non_zero: bool) -> Resource:
    total = Resource()
    for c in spec.get("containers") or []:
        total += _container_requests(c, non_zero=non_zero)
    sidecars, init_peak = Resource(), Resource()
    for c in spec.get("initContainers") or []:
        need = _container_requests(c, non_zero=non_zero)
        if c.get("restartPolicy") == "Always":
            total += need
            sidecars += need
            need = sidecars
        else:
            need += sidecars
        init_peak = init_peak.max(need)
    return total.max(init_peak) + resource_list(spec.get("overhead"))


@dataclass(frozen=True)
class HostPort:
    ip: str
    protocol: str
    port: int


def host_ports(pod: Obj) -> tuple[HostPort, ...]:
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if int(p.get("hostPort") or 0) > 0:
                out.append(HostPort(str(p.get("hostIP") or WILDCARD_IP),
                                    str(p.get("protocol") or "TCP"), int(p["hostPort"])))
    return tuple(out)


def ports_conflict(used: Iterable[HostPort], wanted: HostPort) -> bool:
    """0.0.0.0 takes the port on every address, so it conflicts with any."""
    for u in used:
        if u.protocol == wanted.protocol and u.port == wanted.port and (
                u.ip == wanted.ip or WILDCARD_IP in (u.ip, wanted.ip)):
            return True
    return False


def _pod_affinity(pod: Obj, kind: str) -> Obj:
    return ((pod.get("spec") or {}).get("affinity") or {}).get(kind) or {}


@dataclass(frozen=True)
class PodInfo:
    pod: Obj
    requests: Resource
    non_zero: Resource
    ports: tuple[HostPort, ...]
    required_affinity: tuple[Obj, ...]
    required_anti_affinity: tuple[Obj, ...]
    preferred_affinity: tuple[Obj, ...]
    preferred_anti_affinity: tuple[Obj, ...]

    @classmethod
    def of(cls, pod: Obj) -> PodInfo:
        aff, anti = _pod_affinity(pod, "podAffinity"), _pod_affinity(pod, "podAntiAffinity")
        req = "requiredDuringSchedulingIgnoredDuringExecution"
        pref = "preferredDuringSchedulingIgnoredDuringExecution"
        return cls(pod, pod_requests(pod), pod_requests(pod, non_zero=True), host_ports(pod),
                   tuple(aff.get(req) or ()), tuple(anti.get(req) or ()),
                   tuple(aff.get(pref) or ()), tuple(anti.get(pref) or ()))

    @property
    def has_affinity(self) -> bool:
        return bool(self.required_affinity or self.required_anti_affinity
                    or self.preferred_affinity or self.preferred_anti_affinity)


@dataclass
class NodeInfo:
    node: Obj
    pods: list[PodInfo] = field(default_factory=list)
    requested: Resource = Resource()
    non_zero_requested: Resource = Resource()
    used_ports: list[HostPort] = field(default_factory=list)
    # Kept apart so that affinity checks walk only the pods that have terms.
    pods_with_affinity: list[PodInfo] = field(default_factory=list)

    # Bumped whenever any node gains or loses a pod with affinity terms, so
    # that a snapshot's list of such nodes is known to be current.
    affinity_changes: ClassVar[int] = 0
    # Told of every change, for the scheduler cache's own NodeInfos.
    feed: ChangeFeed | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # An order-free sum over the pods' uids: with the node's
        # resourceVersion, it tells whether anything a node-local plugin
        # reads has changed since a pod of the same shape was judged here.
        self._pods_sum = 0
        self.set_node(self.node)
        pods, self.pods = self.pods, []
        for p in pods:
            self.add_pod(p)

    def set_node(self, node: Obj) -> None:
        """The node object as it is now; its pods stay."""
        alloc = (node.get("status") or {}).get("allocatable") or {}
        self.node, self.name = node, meta.name(node)
        self.allocatable = resource_list(alloc)
        self.allowed_pods = int(quantity(str(alloc.get(PODS, "0"))))
        self._rv = meta.meta(node).get("resourceVersion")
        self.version: tuple[object, int, int] = (self._rv, len(self.pods), self._pods_sum)
        self._images: dict[str, int] | None = None
        if self.feed is not None:
            self.feed.touch(self.name)

    @property
    def images(self) -> dict[str, int]:
        """The images the node reports, by every name of each, with their sizes."""
        if self._images is None:
            self._images = {}
            for image in (self.node.get("status") or {}).get("images") or []:
                for n in image.get("names") or []:
                    self._images[str(n)] = int(image.get("sizeBytes") or 0)
        return self._images

    def clone(self) -> NodeInfo:
        """A copy whose pods can change without touching this one."""
        return NodeInfo(self.node, list(self.pods))

    def add_pod(self, info: PodInfo) -> None:
        self.pods.append(info)
        self._pods_sum += hash(meta.uid(info.pod))
        self.version = (self._rv, len(self.pods), self._pods_sum)
        if self.feed is not None:
            self.feed.touch(self.name)
        self.requested += info.requests
        self.non_zero_requested += info.non_zero
        self.used_ports.extend(info.ports)
        if info.has_affinity:
            self.pods_with_affinity.append(info)
            NodeInfo.affinity_changes += 1

    def remove_pod(self, uid: str) -> None:
        for i, info in enumerate(self.pods):
            if meta.uid(info.pod) == uid:
                del self.pods[i]
                self._pods_sum -= hash(uid)
                self.version = (self._rv, len(self.pods), self._pods_sum)
                if self.feed is not None:
                    self.feed.touch(self.name)
                self.requested -= info.requests
                self.non_zero_requested -= info.non_zero
                for port in info.ports:
                    self.used_ports.remove(port)
                if info in self.pods_with_affinity:
                    self.pods_with_affinity.remove(info)
                    NodeInfo.affinity_changes += 1
                return


class Snapshot(list[NodeInfo]):
    """The nodes of one scheduling pass, with what plugins work out once
    for all of them (``memo``); pods assumed in the pass change no node
    property kept there. The cache's snapshots, in name order, carry its
    change feed and the feed's epoch then: rankings kept across passes
    hold while the epoch does."""

    def __init__(self, infos: Iterable[NodeInfo] = (), feed: ChangeFeed | None = None) -> None:
        super().__init__(infos)
        self.memo: dict[str, Any] = {}
        self.feed = feed
        self.epoch = feed.epoch if feed is not None else 0


def with_affinity_pods(nodes: Sequence[NodeInfo]) -> list[NodeInfo]:
    """The nodes holding pods with affinity terms: for a snapshot, worked
    out once and again only after such a pod came or went anywhere."""
    memo = nodes.memo if isinstance(nodes, Snapshot) else {}
    seen = memo.get("with-affinity")
    if seen is None or seen[0] != NodeInfo.affinity_changes:
        seen = memo["with-affinity"] = (NodeInfo.affinity_changes,
                                        [n for n in nodes if n.pods_with_affinity])
    return list(seen[1])


def snapshot(nodes: Iterable[Obj], pods: Iterable[Obj],
             assumed: dict[str, str] | None = None) -> Snapshot:
    """One NodeInfo per node, holding the pods bound to it or assumed there."""
    infos = {meta.name(n): NodeInfo(n) for n in nodes}
    assumed = assumed or {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName") or assumed.get(meta.uid(pod))
        if node in infos and (pod.get("status") or {}).get("phase") not in ("Succeeded",
                                                                             "Failed"):
            infos[node].add_pod(PodInfo.of(pod))
    return Snapshot(infos.values())


def counted(pod: Obj) -> str | None:
    """The node whose room ``pod`` takes: bound, and not done (a pod being
    deleted holds its share until it is gone)."""
    node = (pod.get("spec") or {}).get("nodeName")
    if not node or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return None
    return str(node)


class NodeCache:
    """The scheduler's cache (kube's): a NodeInfo per node, kept up to date
    from node and pod events rather than built again for every pass, with
    the pods this scheduler has assumed on a node before their binding is
    seen. Pods bound to a node not seen yet wait for it."""

    def __init__(self) -> None:
        self.infos: dict[str, NodeInfo] = {}
        self.names: list[str] = []  # in order, for a stable snapshot
        self.where: dict[str, str] = {}  # pod uid -> node
        self.waiting: dict[str, dict[str, PodInfo]] = {}  # node not seen -> its pods
        self.last_snapshot: Snapshot | None = None
        self.feed = ChangeFeed()

    def snapshot(self) -> Snapshot:
        """The cache's own NodeInfos, in name order: what assume() changes."""
        self.last_snapshot = Snapshot((self.infos[n] for n in self.names), self.feed)
        return self.last_snapshot

    def set_node(self, node: Obj) -> None:
        name = meta.name(node)
        old = self.infos.get(name)
        if old is None:
            bisect.insort(self.names, name)
            info = self.infos[name] = NodeInfo(node, list(self.waiting.pop(name, {}).values()))
            info.feed = self.feed
            self.feed.epoch += 1
        else:
            # Changed in place: a pass under way holds this NodeInfo.
            old.set_node(node)

    def remove_node(self, name: str) -> None:
        info = self.infos.pop(name, None)
        if info is None:
            return
        info.feed = None
        self.feed.epoch += 1
        self.names.remove(name)
        # Its pods wait: a node deleted and made again keeps counting them.
        self.waiting[name] = {meta.uid(p.pod): p for p in info.pods}

    def _drop(self, uid: str) -> None:
        node = self.where.pop(uid, None)
        if node is None:
            return
        if node in self.infos:
            self.infos[node].remove_pod(uid)
        else:
            self.waiting.get(node, {}).pop(uid, None)

    def _put(self, info: PodInfo, node: str) -> None:
        uid = meta.uid(info.pod)
        self.where[uid] = node
        if node in self.infos:
            self.infos[node].add_pod(info)
        else:
            self.waiting.setdefault(node, {})[uid] = info

    def set_pod(self, pod: Obj) -> None:
        """A pod as the API says it is now (bound or not, running or done)."""
        uid = meta.uid(pod)
        self._drop(uid)
        node = counted(pod)
        if node is not None:
            self._put(PodInfo.of(pod), node)

    def assume(self, pod: Obj, node: str) -> None:
        """Counted on ``node`` from now, before the binding is seen."""
        self._drop(meta.uid(pod))
        self._put(PodInfo.of(pod), node)

    def forget(self, pod: Obj) -> None:
        """An assumed pod whose binding failed: counted nowhere again."""
        self._drop(meta.uid(pod))

    def remove_pod(self, uid: str) -> None:
        self._drop(uid)
