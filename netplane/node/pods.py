"""The pod lifecycle on one node: network namespace, address, veth and pod
files, then the containers, their restarts and readiness, and the status
written back; on deletion, the same in reverse."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import ApiError, Client, Informer, NotFound
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.events import Reason, Recorder, Source
from netplane.net import netns
from netplane.net.ipam import HostLocalIPAM
from netplane.net.podnet import NodeNetwork
from netplane.node import podstatus
from netplane.node.probes import ProbeState
from netplane.node.runtime import command, podfiles
from netplane.node.runtime.process import ContainerStatus, ImageNotRunnable, ProcessRuntime

log = logging.getLogger(__name__)
RESYNC_SECONDS = 1.0
BACKOFF_START, BACKOFF_MAX = 2.0, 60.0


@dataclass(frozen=True)
class NodeContext:
    node_name: str
    node_ip: str
    netns_prefix: str
    dns_ip: str
    cluster_domain: str = "cluster.local"
    api_ip: str = "10.96.0.1"
    node_resolv_conf: str = ""  # the node's own resolv.conf, for dnsPolicy Default
    ca_cert: str = ""  # the cluster CA, for pods' service account folder

    def pod_netns(self, uid: str) -> str:
        return f"{self.netns_prefix}pod-{uid.replace('-', '')[:12]}"


@dataclass
class PodRecord:
    """What the agent knows of a pod it runs, beyond the runtime's state."""

    ip: str = ""
    # The pod's resolv.conf and hosts: written once (the pod spec is immutable).
    files: tuple[Path, Path] | None = None
    started_at: str = field(default_factory=meta.now)
    probes: dict[str, ProbeState] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    next_start: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    reported: Obj = field(default_factory=dict)
    # The service account folder, and when its token is to be refreshed.
    service_account: Path | None = None
    token_refresh: float = 0.0


def node_resolv(text: str) -> tuple[list[str], list[str], list[str]]:
    """nameservers, searches and options of a resolv.conf."""
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            servers.append(words[1])
        elif words[0] in ("search", "domain"):
            searches = words[1:]
        elif words[0] == "options":
            options += words[1:]
    return servers, searches, options


def _merge_options(base: list[str], extra: list[Obj]) -> list[str]:
    """dnsConfig options replace same-named ones (ndots:2 over ndots:5)."""
    named = {o.split(":", 1)[0]: o for o in base}
    for opt in extra:
        named[opt["name"]] = f"{opt['name']}:{opt['value']}" if opt.get("value") \
            else opt["name"]
    return list(named.values())


def resolv_settings(pod: Obj, ctx: NodeContext, *,
                    node_resolv_conf: str = "") -> tuple[list[str], list[str], list[str]]:
    """nameservers, searches and options for the pod's ``dnsPolicy`` (and
    ``dnsConfig``), as the kubelet writes them: ClusterFirst uses cluster DNS
    and the namespace's search path; Default inherits the node's resolver;
    None only what dnsConfig says."""
    spec = pod.get("spec", {})
    policy = spec.get("dnsPolicy", "ClusterFirst")
    cfg = spec.get("dnsConfig") or {}
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        servers = [ctx.dns_ip]
        searches = podfiles.cluster_searches(meta.namespace(pod), domain=ctx.cluster_domain)
        options = ["ndots:5"]
    elif policy == "Default":
        servers, searches, options = node_resolv(node_resolv_conf)
    servers += [s for s in cfg.get("nameservers") or [] if s not in servers]
    searches += [s for s in cfg.get("searches") or [] if s not in searches]
    return servers, searches, _merge_options(options, cfg.get("options") or [])


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_SECONDS = 3607  # the kubelet's default for projected service account tokens


def service_account_name(pod: Obj) -> str:
    spec = pod.get("spec", {})
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


def automounts_token(pod: Obj) -> bool:
    return pod.get("spec", {}).get("automountServiceAccountToken") is not False


def _field(container: str) -> str:
    return f"spec.containers{{{container}}}"


def _pod_ref(pod: Obj) -> str:
    return f"{meta.name(pod)}_{meta.namespace(pod)}({meta.uid(pod)})"


class PodManager:
    """Runs the pods bound to this node. ``pods`` is the agent's informer of
    all pods (cluster DNS needs them all too); the caller runs it."""

    def __init__(self, *, client: Client, pods: Informer, runtime: ProcessRuntime,
                 network: NodeNetwork, ipam: HostLocalIPAM, ctx: NodeContext) -> None:
        self.client, self.runtime, self.network, self.ipam = client, runtime, network, ipam
        self.ctx = ctx
        self.events = Recorder(client, Source("kubelet", host=ctx.node_name))
        self.informer = pods
        pods.add_handler(self._on_pod)
        self.queue = WorkQueue()
        self.records: dict[str, PodRecord] = {}
        self.by_uid: dict[str, Obj] = {}
        self.stopping: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def _on_pod(self, prev: Obj | None, cur: Obj | None) -> None:
        obj = cur or prev
        # spec.nodeName never changes once set: one look tells whose pod it is.
        if obj is None or obj.get("spec", {}).get("nodeName") != self.ctx.node_name:
            return
        if cur is None:
            self.by_uid.pop(meta.uid(obj), None)
        else:
            self.by_uid[meta.uid(cur)] = cur
        self.queue.add(meta.uid(obj))

    async def reconcile(self, uid: str) -> None:
        pod = self.by_uid.get(uid)
        if pod is None and uid not in self.records and uid not in self.runtime.known_pods():
            return  # already torn down
        if pod is None or meta.is_deleting(pod):
            if uid not in self.stopping:
                # Stopping waits out the grace period: other pods go on meanwhile.
                self.stopping.add(uid)
                task = asyncio.create_task(self._terminate(uid, pod))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            return
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") \
                and uid not in self.records:
            return  # finished before this agent started: nothing to run
        await self._ensure(pod)
        await self._report(pod)

    # -- start --

    async def _ensure(self, pod: Obj) -> None:
        uid = meta.uid(pod)
        rec = self.records.get(uid)
        if rec is None:
            rec = PodRecord(ip=await asyncio.to_thread(self._set_up_network, pod))
            self.records[uid] = rec
        if rec.files is None:
            rec.files = self._pod_files(pod, rec)
        resolv, hosts = rec.files
        if automounts_token(pod) and time.time() >= rec.token_refresh \
                and not await self._service_account(pod, rec) and rec.service_account is None:
            return  # containers start once their token can be mounted
        mounts = ((rec.service_account, SERVICE_ACCOUNT_DIR),) if rec.service_account else ()
        for c in pod["spec"].get("containers") or []:
            await self._ensure_container(pod, rec, c, resolv, hosts, mounts)

    async def _service_account(self, pod: Obj, rec: PodRecord) -> bool:
        """A token bound to this pod (TokenRequest), written with the CA and
        namespace where in-cluster clients look for them; refreshed at 80% of
        its life, as the kubelet does."""
        name = service_account_name(pod)
        ns = meta.namespace(pod)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": TOKEN_SECONDS,
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                            "name": meta.name(pod), "uid": meta.uid(pod)}}}
        try:
            out = await self.client.request(
                "POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{name}/token", body=body)
        except ApiError as e:
            self.events.warning(pod, Reason.FAILED_MOUNT, "MountVolume.SetUp failed for "
                                f"the service account token: {e.message}")
            return False
        rec.service_account = await asyncio.to_thread(
            self.runtime.write_service_account, meta.uid(pod), token=out["status"]["token"],
            ca_cert=self.ctx.ca_cert, namespace=ns)
        rec.token_refresh = time.time() + 0.8 * TOKEN_SECONDS
        return True

    def _set_up_network(self, pod: Obj) -> str:
        uid = meta.uid(pod)
        ns = self.ctx.pod_netns(uid)
        netns.add(ns)
        alloc = self.ipam.allocate(uid)
        self.network.attach_pod(netns=ns, ip=alloc.ip, prefixlen=alloc.prefixlen,
                                gateway=alloc.gateway)
        log.info("pod %s: netns %s, ip %s", meta.namespaced_name(pod), ns, alloc.ip)
        return alloc.ip

    def _hostname(self, pod: Obj) -> str:
        return str(pod["spec"].get("hostname") or meta.name(pod))

    def _pod_files(self, pod: Obj, rec: PodRecord) -> tuple[Path, Path]:
        servers, searches, options = resolv_settings(
            pod, self.ctx, node_resolv_conf=self.ctx.node_resolv_conf)
        return self.runtime.write_pod_files(meta.uid(pod), nameservers=servers,
                                            searches=searches, options=options,
                                            hostname=self._hostname(pod), pod_ip=rec.ip)

    async def _ensure_container(self, pod: Obj, rec: PodRecord, c: Obj, resolv: Path,
                                hosts: Path, mounts: tuple[tuple[Path, str], ...]) -> None:
        uid, name = meta.uid(pod), c["name"]
        state = self.runtime.container_state(uid, name)
        if state.status is ContainerStatus.RUNNING:
            return
        policy = pod["spec"].get("restartPolicy", "Always")
        if state.status is ContainerStatus.EXITED:
            if policy == "Never" or (policy == "OnFailure" and state.exit_code == 0):
                return
            if time.monotonic() < rec.next_start.get(name, 0.0):
                self.events.warning(pod, Reason.BACK_OFF, f"Back-off restarting failed "
                                    f"container {name} in pod {_pod_ref(pod)}",
                                    field_path=_field(name))
                return
            rec.restarts[name] = rec.restarts.get(name, 0) + 1
            delay = min(BACKOFF_START * 2 ** (rec.restarts[name] - 1), BACKOFF_MAX)
            rec.next_start[name] = time.monotonic() + delay
        env = {"POD_NAME": meta.name(pod), "POD_NAMESPACE": meta.namespace(pod),
               "POD_IP": rec.ip, "NODE_NAME": self.ctx.node_name,
               "KUBERNETES_SERVICE_HOST": self.ctx.api_ip, "KUBERNETES_SERVICE_PORT": "443"}
        field = _field(name)
        try:
            await asyncio.to_thread(
                self.runtime.start_container, pod_uid=uid, pod_name=meta.name(pod),
                namespace=meta.namespace(pod), container=c, netns=self.ctx.pod_netns(uid),
                hostname=self._hostname(pod), resolv_conf=resolv, hosts=hosts, env=env,
                mounts=mounts, fields=command.pod_fields(pod))
            rec.errors.pop(name, None)
            rec.probes[name] = ProbeState()
        except (ImageNotRunnable, OSError) as e:
            if rec.errors.get(name) != str(e):
                self.events.warning(pod, Reason.FAILED, f"Error: {e}", field_path=field)
            rec.errors[name] = str(e)
            return
        self.events.normal(pod, Reason.PULLED, f'Container image "{c.get("image", "")}" '
                           "already present on machine", field_path=field)
        self.events.normal(pod, Reason.CREATED, f"Created container: {name}", field_path=field)
        self.events.normal(pod, Reason.STARTED, f"Started container {name}", field_path=field)

    # -- report --

    async def _report(self, pod: Obj) -> None:
        uid = meta.uid(pod)
        rec = self.records[uid]
        views = []
        for c in pod["spec"].get("containers") or []:
            state = self.runtime.container_state(uid, c["name"])
            probe = rec.probes.setdefault(c["name"], ProbeState())
            was_ready = probe.ready
            ready = state.status is ContainerStatus.RUNNING and await probe.update(c, rec.ip)
            if was_ready and not ready and state.status is ContainerStatus.RUNNING:
                self.events.warning(pod, Reason.UNHEALTHY, "Readiness probe failed",
                                    field_path=_field(c["name"]))
            err = rec.errors.get(c["name"], "")
            views.append(podstatus.ContainerView(
                c, state, ready, rec.restarts.get(c["name"], 0),
                "ErrImagePull" if err else "", err))
        status = podstatus.build(pod, views, pod_ip=rec.ip, host_ip=self.ctx.node_ip,
                                 started_at=rec.started_at)
        if podstatus.same(status, rec.reported) or podstatus.same(status, pod.get("status", {})):
            rec.reported = status
            return
        try:
            await self.client.patch(resources.POD, meta.name(pod), {"status": status},
                                    meta.namespace(pod), subresource="status")
            rec.reported = status
        except NotFound:
            pass

    # -- stop --

    async def _terminate(self, uid: str, pod: Obj | None) -> None:
        grace = float(meta.meta(pod).get("deletionGracePeriodSeconds", 30)) if pod else 2.0
        if pod is not None:
            for c in pod["spec"].get("containers") or []:
                if self.runtime.container_state(uid, c["name"]).status is \
                        ContainerStatus.RUNNING:
                    self.events.normal(pod, Reason.KILLING, f"Stopping container {c['name']}",
                                       field_path=_field(c["name"]))
        try:
            await asyncio.to_thread(self._tear_down, uid, grace)
            self.records.pop(uid, None)
            if pod is not None:
                try:
                    await self.client.delete(resources.POD, meta.name(pod), meta.namespace(pod),
                                             grace_period=0)
                except NotFound:
                    pass
        except (ApiError, OSError) as e:
            log.warning("stopping pod %s failed: %s", uid, e)
        finally:
            self.stopping.discard(uid)

    def _tear_down(self, uid: str, grace: float) -> None:
        ns = self.ctx.pod_netns(uid)
        self.runtime.stop_pod(uid, grace)
        if netns.exists(ns):
            self.network.detach_pod(netns=ns)
            netns.delete(ns)
        self.ipam.release(uid)
        log.info("pod %s stopped and removed", uid)

    def clean_orphans(self) -> None:
        """After a restart: tear down what belongs to pods no longer bound here."""
        live = set(self.by_uid)
        for uid in self.runtime.known_pods() | set(self.ipam.allocations()):
            if uid not in live:
                self._tear_down(uid, 2.0)

    async def run(self) -> None:
        await self.informer.synced.wait()
        await asyncio.to_thread(self.clean_orphans)
        worker = asyncio.create_task(drain("pods", self.queue, self.reconcile))
        try:
            while not worker.done():
                for uid in list(self.by_uid):
                    self.queue.add(uid)
                await asyncio.sleep(RESYNC_SECONDS)
        finally:
            worker.cancel()
