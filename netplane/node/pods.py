"""The pod lifecycle on one node: network namespace, address, veth and pod
files, then the containers, their restarts and readiness, and the status
written back; on deletion, the same in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import ApiError, Client, Informer, NotFound
from netplane.cluster.events import Reason, Recorder, Source
from netplane.net import netns
from netplane.net.ipam import HostLocalIPAM
from netplane.net.podnet import NodeNetwork
from netplane.node import actions, envvars, podstatus
from netplane.node.cgrouplimits import PodCgroup
from netplane.node.containers import BACKOFF_START, Backoff, ContainerRecord, should_restart
from netplane.node.podstatus import is_sidecar
from netplane.node.runtime import podfiles
from netplane.node.runtime.base import (
    ContainerStatus,
    ImageNotRunnable,
    ImagePullError,
    Mount,
    Runtime,
)
from netplane.node.volumes import TOKEN_SECONDS, NodeFacts, PodVolumes, Sources, VolumeError

log = logging.getLogger(__name__)
RESYNC_SECONDS = 1.0
# How often a pod waiting for an init container to finish looks again.
INIT_POLL = 0.1
STARTING_AT_ONCE = 3
# postStart has no timeout in the kubelet; a bound here keeps a hung hook
# from holding the pod's worker for ever.
POST_START_TIMEOUT = 120.0
# What the kubelet grants a container after its preStop hook used up the
# grace period, and the grace of a pod whose object is already gone.
MINIMUM_GRACE = 2.0
TARGET_UID_INDEX = "target-uid"
# What the image step says when a container may start.
PRESENT, PULLED = "present", "pulled"


def endpoint_pods(slice_: Obj) -> Iterable[str]:
    """Uids of the pods an EndpointSlice lists (its index function)."""
    return [ref["uid"] for ep in slice_.get("endpoints") or []
            if (ref := ep.get("targetRef") or {}).get("kind") == "Pod" and ref.get("uid")]


def still_ready_in(slices: Iterable[Obj], uid: str) -> list[str]:
    """Names of the slices that still send new connections to the pod."""
    return [meta.name(s) for s in slices for ep in s.get("endpoints") or []
            if (ep.get("targetRef") or {}).get("uid") == uid
            and (ep.get("conditions") or {}).get("ready") is not False]


def pod_netns_name(netns_prefix: str, uid: str) -> str:
    """The network namespace of the pod of ``uid`` (the lab finds a node's
    pods by it too)."""
    return f"{netns_prefix}pod-{uid.replace('-', '')[:12]}"


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
        return pod_netns_name(self.netns_prefix, uid)


@dataclass
class PodRecord:
    """What the agent knows of a pod it runs, beyond the runtime's state."""

    ip: str = ""
    # The pod's resolv.conf and hosts: written once (the pod spec is immutable).
    files: tuple[Path, Path] | None = None
    started_at: str = field(default_factory=meta.now)
    containers: dict[str, ContainerRecord] = field(default_factory=dict)
    # All init containers completed (sidecars: started); or one failed for good.
    initialized: bool = False
    init_failed: bool = False
    # The soonest monotonic time a probe or a restart is due.
    next_due: float = 0.0
    volumes: PodVolumes | None = None
    # A source of a projection (or the pod's labels) may have changed.
    stale_volumes: bool = False
    ipc: Path | None = None
    # "own" (a PID namespace per container) or the pod's shared one.
    pid_ns: str = ""
    reported: Obj = field(default_factory=dict)
    # The pod's resourceVersion that our last status write made.
    reported_version: int = 0
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


def service_account_name(pod: Obj) -> str:
    spec = pod.get("spec", {})
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


def automounts_token(pod: Obj) -> bool:
    return pod.get("spec", {}).get("automountServiceAccountToken") is not False


def _grace(pod: Obj) -> float:
    return float(pod["spec"].get("terminationGracePeriodSeconds", 30))


def _field(container: str) -> str:
    return f"spec.containers{{{container}}}"


def _pod_ref(pod: Obj) -> str:
    return f"{meta.name(pod)}_{meta.namespace(pod)}({meta.uid(pod)})"


class PodManager:
    """Runs the pods bound to this node, each in a worker of its own (as the
    kubelet's pod workers), so that one pod's slow probe, hook or grace
    period holds up no other. ``pods`` is the agent's informer of all pods
    (cluster DNS needs them all too); ``slices`` its EndpointSlice informer,
    through which a terminating pod waits to leave its Services before its
    containers are signalled. The caller runs both."""

    def __init__(self, *, client: Client, pods: Informer, runtime: Runtime,
                 network: NodeNetwork, ipam: HostLocalIPAM, ctx: NodeContext,
                 slices: Informer | None = None, configmaps: Informer | None = None,
                 secrets: Informer | None = None, claims: Informer | None = None,
                 persistent_volumes: Informer | None = None) -> None:
        self.client, self.runtime, self.network, self.ipam = client, runtime, network, ipam
        self.ctx = ctx
        self.events = Recorder(client, Source("kubelet", host=ctx.node_name))
        self.informer = pods
        pods.add_handler(self._on_pod)
        self.slices = slices
        if slices is not None:
            slices.add_index(TARGET_UID_INDEX, endpoint_pods)
            slices.add_handler(self._on_slice)
        self.configmaps, self.secrets = configmaps, secrets
        self.claims, self.persistent_volumes = claims, persistent_volumes
        for inf in (configmaps, secrets, claims):
            if inf is not None:
                inf.add_handler(self._on_source)
        self.records: dict[str, PodRecord] = {}
        self.by_uid: dict[str, Obj] = {}
        self.workers: dict[str, asyncio.Task[None]] = {}
        self.wakes: dict[str, asyncio.Event] = {}
        # New pods set up in turn, a few at a time: when many arrive at once
        # they would otherwise share the worker threads step by step and all
        # become ready together at the end; in turn, the first are ready first.
        self.starting = asyncio.Semaphore(STARTING_AT_ONCE)
        self.in_turn: set[str] = set()
        self.hooks: dict[str, asyncio.Task[actions.Result]] = {}  # postStart, by pod
        self.running = False

    def _on_pod(self, prev: Obj | None, cur: Obj | None) -> None:
        obj = cur or prev
        # spec.nodeName never changes once set: one look tells whose pod it is.
        if obj is None or obj.get("spec", {}).get("nodeName") != self.ctx.node_name:
            return
        if cur is None:
            self.by_uid.pop(meta.uid(obj), None)
        else:
            self.by_uid[meta.uid(cur)] = cur
        if (cur is None or meta.is_deleting(cur)) and meta.uid(obj) in self.hooks:
            self.hooks[meta.uid(obj)].cancel()  # its termination need not wait for it
        if prev is not None and cur is not None and cur["spec"].get("volumes") and (
                meta.labels(prev) != meta.labels(cur)
                or meta.meta(prev).get("annotations") != meta.meta(cur).get("annotations")):
            self._stale(meta.uid(cur))  # what a downwardAPI volume shows
        self.wake(meta.uid(obj))

    def _on_slice(self, prev: Obj | None, cur: Obj | None) -> None:
        # Only terminating pods wait on slices.
        for uid in {*endpoint_pods(prev or {}), *endpoint_pods(cur or {})}:
            pod = self.by_uid.get(uid)
            if pod is not None and meta.is_deleting(pod):
                self.wake(uid)

    def _on_source(self, prev: Obj | None, cur: Obj | None) -> None:
        """A ConfigMap or Secret changed: the pods of its namespace that use
        one look again (their projections and, on restart, env)."""
        obj = cur or prev
        if obj is None:
            return
        ns = meta.namespace(obj)
        for uid, pod in list(self.by_uid.items()):
            if meta.namespace(pod) == ns and pod["spec"].get("volumes"):
                self._stale(uid)

    def _stale(self, uid: str) -> None:
        if (rec := self.records.get(uid)) is not None:
            rec.stale_volumes = True
        self.wake(uid)

    def wake(self, uid: str) -> None:
        """Has the pod's worker look at it now, starting one if it has none."""
        if not self.running:
            return
        event = self.wakes.get(uid)
        if event is None:
            event = self.wakes[uid] = asyncio.Event()
            self.workers[uid] = asyncio.create_task(self._work(uid, event))
        event.set()

    async def _work(self, uid: str, wake: asyncio.Event) -> None:
        failures = 0
        try:
            while True:
                wake.clear()
                try:
                    if await self.sync(uid):
                        return
                    failures = 0
                    pause = RESYNC_SECONDS
                except Exception as e:
                    failures += 1
                    pause = min(0.05 * 2 ** failures, 10.0)
                    log.debug("pod %s: sync failed (%s); retry %d", uid, e, failures)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await wake.wait()
        finally:
            self.workers.pop(uid, None)
            self.wakes.pop(uid, None)

    async def sync(self, uid: str) -> bool:
        """One look at the pod; True when it needs its worker no more."""
        pod = self.by_uid.get(uid)
        if pod is None and uid not in self.records and uid not in self.runtime.known_pods():
            return True  # already torn down
        if pod is None or meta.is_deleting(pod):
            await self._terminate(uid, pod)
            return True
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") \
                and uid not in self.records:
            return True  # finished before this agent started: nothing to run
        if uid in self.records:
            await self._ensure(pod)
        else:
            await self.starting.acquire()
            self.in_turn.add(uid)
            try:
                pod = self.by_uid.get(uid)
                if pod is None or meta.is_deleting(pod):
                    return False  # deleted while it waited: the next look ends it
                await self._ensure(pod)
            finally:
                self._end_turn(uid)
        await self._report(pod)
        return False

    def _end_turn(self, uid: str) -> None:
        if uid in self.in_turn:
            self.in_turn.discard(uid)
            self.starting.release()

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
        if rec.ipc is None:
            rec.ipc = await asyncio.to_thread(self.runtime.ipc_namespace, meta.uid(pod))
        if not rec.pid_ns:
            rec.pid_ns = await asyncio.to_thread(self.runtime.pid_namespace, meta.uid(pod)) \
                if pod["spec"].get("shareProcessNamespace") else "own"
        if not await self._volumes(pod, rec):
            return  # containers start once their volumes are there
        mounts: tuple[Mount, ...] = (
            ((rec.service_account, SERVICE_ACCOUNT_DIR, True),) if rec.service_account else ())
        policy = pod["spec"].get("restartPolicy", "Always")

        async def launch(c: Obj, policy: str) -> None:
            await self._ensure_container(pod, rec, c, policy, resolv, hosts, mounts)

        if not rec.initialized and not await self._initialize(pod, rec, launch):
            return
        sidecars = [c for c in pod["spec"].get("initContainers") or [] if is_sidecar(c)]
        apps = pod["spec"].get("containers") or []
        if policy != "Always" and self._all_done(pod, rec, apps, policy):
            # The app containers finished for good: sidecars stop, last first.
            for c in reversed(sidecars):
                await self._stop_container(pod, c, _grace(pod))
            return
        for c in sidecars:
            await launch(c, "Always")
        for c in apps:
            await launch(c, policy)

    def _sources(self, pod: Obj) -> Sources:
        async def token(src: Obj) -> str:
            seconds = int(src.get("expirationSeconds", TOKEN_SECONDS))
            return await self._token(pod, expiration=seconds, audience=src.get("audience"))
        volumes = self.persistent_volumes

        def volume(name: str) -> Obj | None:
            return volumes.get(name) if volumes is not None else None
        return Sources(configmaps=self._lookup(self.configmaps),
                       secrets=self._lookup(self.secrets), token=token,
                       claims=self._lookup(self.claims), volumes=volume)

    @staticmethod
    def _lookup(informer: Informer | None) -> Callable[[str, str], Obj | None]:
        def get(namespace: str, name: str) -> Obj | None:
            return informer.get(name, namespace) if informer is not None else None
        return get

    async def _volumes(self, pod: Obj, rec: PodRecord) -> bool:
        """Sets the pod's volumes up, and rewrites projections whose sources
        changed; False (with a FailedMount event) while one cannot be."""
        if rec.volumes is None:
            rec.volumes = PodVolumes(pod, self.runtime.volumes_dir(meta.uid(pod)),
                                     self._sources(pod),
                                     NodeFacts(pod_ip=rec.ip, host_ip=self.ctx.node_ip))
        rec.volumes.pod = pod  # labels and annotations change (downward API)
        try:
            if len(rec.volumes.paths) < len(pod["spec"].get("volumes") or []):
                await rec.volumes.set_up()
            elif rec.stale_volumes or time.time() >= rec.volumes.tokens_due:
                rec.stale_volumes = False
                await rec.volumes.refresh()
        except VolumeError as e:
            self.events.warning(pod, Reason.FAILED_MOUNT, f"MountVolume.SetUp failed: {e}")
            return False
        return True

    async def _initialize(self, pod: Obj, rec: PodRecord,
                          launch: Callable[[Obj, str], Awaitable[None]]) -> bool:
        """Init containers in order, each to completion (a sidecar: until it
        started) before the next; True once all are through."""
        uid = meta.uid(pod)
        # Init containers are retried on failure unless the pod never restarts.
        policy = "Never" if pod["spec"].get("restartPolicy") == "Never" else "OnFailure"
        for c in pod["spec"].get("initContainers") or []:
            crec = rec.containers.setdefault(c["name"], ContainerRecord())
            state = self.runtime.container_state(uid, c["name"])
            if is_sidecar(c):
                await launch(c, "Always")
                state = self.runtime.container_state(uid, c["name"])
                if state.status is ContainerStatus.RUNNING and not crec.probes.started:
                    await crec.probes.update(c, rec.ip, state.pid)
                if state.status is ContainerStatus.RUNNING and crec.probes.started:
                    continue
                rec.next_due = min(rec.next_due, time.monotonic() + INIT_POLL)
                return False
            if state.status is ContainerStatus.EXITED and state.exit_code == 0:
                continue
            if state.status is ContainerStatus.EXITED and policy == "Never":
                rec.init_failed = True
                return False
            await launch(c, policy)
            rec.next_due = min(rec.next_due, time.monotonic() + INIT_POLL)
            return False
        rec.initialized = True
        return True

    def _all_done(self, pod: Obj, rec: PodRecord, apps: list[Obj], policy: str) -> bool:
        """Every app container exited and none is to run again."""
        uid = meta.uid(pod)
        for c in apps:
            state = self.runtime.container_state(uid, c["name"])
            if state.status is not ContainerStatus.EXITED or \
                    should_restart(policy, state.exit_code):
                return False
        return bool(apps)

    async def _token(self, pod: Obj, *, expiration: int = TOKEN_SECONDS,
                     audience: str | None = None) -> str:
        """A service account token bound to this pod (TokenRequest)."""
        spec: Obj = {"expirationSeconds": expiration,
                     "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                        "name": meta.name(pod), "uid": meta.uid(pod)}}
        if audience:
            spec["audiences"] = [audience]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        try:
            out = await self.client.request(
                "POST", f"/api/v1/namespaces/{meta.namespace(pod)}/serviceaccounts/"
                f"{service_account_name(pod)}/token", body=body)
        except ApiError as e:
            raise VolumeError(f"requesting a service account token: {e.message}") from None
        return str(out["status"]["token"])

    async def _service_account(self, pod: Obj, rec: PodRecord) -> bool:
        """The token, written with the CA and namespace where in-cluster
        clients look for them; refreshed at 80% of its life, as the kubelet
        does."""
        try:
            token = await self._token(pod)
        except VolumeError as e:
            self.events.warning(pod, Reason.FAILED_MOUNT, "MountVolume.SetUp failed for "
                                f"the service account token: {e}")
            return False
        rec.service_account = await asyncio.to_thread(
            self.runtime.write_service_account, meta.uid(pod), token=token,
            ca_cert=self.ctx.ca_cert, namespace=meta.namespace(pod))
        rec.token_refresh = time.time() + 0.8 * TOKEN_SECONDS
        return True

    def _set_up_network(self, pod: Obj) -> str:
        uid = meta.uid(pod)
        ns = self.ctx.pod_netns(uid)
        # The runtime makes the namespace (the process runtime) or names its
        # sandbox's (docker's); attach_pod brings lo up with the rest.
        self.runtime.create_sandbox(pod, ns)
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

    async def _ensure_container(self, pod: Obj, rec: PodRecord, c: Obj, policy: str,
                                resolv: Path, hosts: Path, mounts: tuple[Mount, ...]) -> None:
        """Starts the container, or starts it again after an exit as
        ``policy`` says, once its crash-loop back-off allows."""
        uid, name = meta.uid(pod), c["name"]
        current = self.by_uid.get(uid)
        if current is None or meta.is_deleting(current):
            return  # deleted meanwhile (a hook was cut short): nothing more starts
        crec = rec.containers.setdefault(name, ContainerRecord())
        state = self.runtime.container_state(uid, name)
        if state.status is ContainerStatus.RUNNING:
            return
        if state.status is ContainerStatus.EXITED:
            again = should_restart(policy, state.exit_code) or \
                bool(crec.kill_reason and policy != "Never")
            if crec.exited(state) and again:
                crec.last_state = {"terminated": podstatus.terminated(state)}
            if not again:
                return
            now = time.monotonic()
            if not crec.backoff.ready(now):
                rec.next_due = min(rec.next_due, crec.backoff.not_before)
                if crec.waiting[0] != "CrashLoopBackOff":
                    self.events.warning(pod, Reason.BACK_OFF, f"Back-off restarting failed "
                                        f"container {name} in pod {_pod_ref(pod)}",
                                        field_path=_field(name))
                crec.waiting = ("CrashLoopBackOff",
                                f"back-off {crec.backoff.current:g}s restarting failed "
                                f"container={name} pod={_pod_ref(pod)}")
                return
            crec.restarts += 1
        image_step = await self._image_ready(pod, crec, c)
        if not image_step:
            return
        env = {"POD_NAME": meta.name(pod), "POD_NAMESPACE": meta.namespace(pod),
               "POD_IP": rec.ip, "NODE_NAME": self.ctx.node_name,
               "KUBERNETES_SERVICE_HOST": self.ctx.api_ip, "KUBERNETES_SERVICE_PORT": "443"}
        field = _field(name)
        try:
            assert rec.volumes is not None
            spec = envvars.resolve(pod, c, self._sources(pod), rec.volumes.facts)
            all_mounts = (*mounts, *rec.volumes.mounts(c))
        except (envvars.EnvError, VolumeError) as e:
            if crec.waiting != ("CreateContainerConfigError", str(e)):
                self.events.warning(pod, Reason.FAILED, f"Error: {e}", field_path=field)
            crec.waiting = ("CreateContainerConfigError", str(e))
            return
        try:
            pid = await asyncio.to_thread(
                self.runtime.start_container, pod_uid=uid, pod_name=meta.name(pod),
                namespace=meta.namespace(pod), container=spec, netns=self.ctx.pod_netns(uid),
                hostname=self._hostname(pod), resolv_conf=resolv, hosts=hosts, env=env,
                mounts=all_mounts, ipc=rec.ipc, pid_ns=rec.pid_ns,
                pod_cgroup=PodCgroup.of(pod))
        except (ImageNotRunnable, OSError) as e:
            if crec.waiting != ("ErrImagePull", str(e)):
                self.events.warning(pod, Reason.FAILED, f"Error: {e}", field_path=field)
            crec.waiting = ("ErrImagePull", str(e))
            return
        crec.started()
        if image_step == PRESENT:
            self.events.normal(pod, Reason.PULLED, f'Container image "{c.get("image", "")}" '
                               "already present on machine", field_path=field)
        self.events.normal(pod, Reason.CREATED, f"Created container: {name}", field_path=field)
        self.events.normal(pod, Reason.STARTED, f"Started container {name}", field_path=field)
        hook = (c.get("lifecycle") or {}).get("postStart")
        if hook:
            self._end_turn(uid)  # a hook may take long: other pods go on meanwhile
            result = await self._post_start(uid, hook, c, rec.ip, pid)
            if result is not None and not result.ok:
                self.events.warning(pod, Reason.FAILED_POST_START_HOOK,
                                    f"PostStartHook failed: {result.message}", field_path=field)
                crec.kill_reason = "FailedPostStartHook"
                await self._stop_container(pod, c, _grace(pod))

    async def _image_ready(self, pod: Obj, crec: ContainerRecord, c: Obj) -> str:
        """The kubelet's image step, by imagePullPolicy: Never wants the image
        there (ErrImageNeverPull); IfNotPresent pulls it when missing, Always
        every time; a failed pull is ErrImagePull, then ImagePullBackOff until
        its back-off lets the next try go. PRESENT or PULLED when the
        container may start; "" when it waits."""
        image, field = str(c.get("image", "")), _field(c["name"])
        policy = c.get("imagePullPolicy") or "IfNotPresent"
        present = await asyncio.to_thread(self.runtime.image_present, image)
        if policy == "Never" or (present and policy != "Always"):
            if present:
                return PRESENT
            message = f'Container image "{image}" is not present with pull policy of Never'
            if crec.waiting != ("ErrImageNeverPull", message):
                self.events.warning(pod, Reason.ERR_IMAGE_NEVER_PULL, message, field_path=field)
            crec.waiting = ("ErrImageNeverPull", message)
            return ""
        rec = self.records.get(meta.uid(pod))
        if not crec.pull_backoff.ready(time.monotonic()):
            message = f'Back-off pulling image "{image}"'
            if crec.waiting[0] != "ImagePullBackOff":
                self.events.normal(pod, Reason.BACK_OFF, message, field_path=field)
                self.events.warning(pod, Reason.FAILED, "Error: ImagePullBackOff",
                                    field_path=field)
            crec.waiting = ("ImagePullBackOff", message)
            if rec is not None:
                rec.next_due = min(rec.next_due, crec.pull_backoff.not_before)
            return ""
        self.events.normal(pod, Reason.PULLING, f'Pulling image "{image}"', field_path=field)
        began = time.monotonic()
        try:
            await asyncio.to_thread(self.runtime.pull_image, image)
        except ImagePullError as e:
            self.events.warning(pod, Reason.FAILED, f'Failed to pull image "{image}": {e}',
                                field_path=field)
            self.events.warning(pod, Reason.FAILED, "Error: ErrImagePull", field_path=field)
            crec.waiting = ("ErrImagePull", f'failed to pull image "{image}": {e}')
            crec.pull_backoff.after_exit(time.monotonic(), None)
            if rec is not None:
                rec.next_due = min(rec.next_due, crec.pull_backoff.not_before)
            return ""
        crec.pull_backoff = Backoff(delay=BACKOFF_START)
        self.events.normal(pod, Reason.PULLED, f'Successfully pulled image "{image}" in '
                           f"{time.monotonic() - began:.3f}s", field_path=field)
        return PULLED

    async def _post_start(self, uid: str, hook: Obj, c: Obj, ip: str,
                          pid: int) -> actions.Result | None:
        """The hook's result; None when the pod's deletion cut it short, as
        the kubelet cancels a pod's start when it is to be killed."""
        task = asyncio.create_task(actions.run_hook(hook, c, pod_ip=ip, pid=pid,
                                                    timeout=POST_START_TIMEOUT))
        self.hooks[uid] = task
        try:
            await asyncio.wait({task})
        finally:
            task.cancel()
            self.hooks.pop(uid, None)
        return None if task.cancelled() else task.result()

    # -- report --

    async def _report(self, pod: Obj) -> None:
        uid = meta.uid(pod)
        rec = self.records[uid]
        init_views = [await self._view(pod, rec, c)
                      for c in pod["spec"].get("initContainers") or []]
        views = [await self._view(pod, rec, c) for c in pod["spec"].get("containers") or []]
        status = podstatus.build(pod, views, pod_ip=rec.ip, host_ip=self.ctx.node_ip,
                                 started_at=rec.started_at, init_views=init_views,
                                 initialized=rec.initialized, init_failed=rec.init_failed)
        if podstatus.same(status, pod.get("status", {})):
            rec.reported = status
            return
        if podstatus.same(status, rec.reported) and _version(pod) <= rec.reported_version:
            return  # our last write is not in the cache yet
        # Written again when someone else changed it since (the node lifecycle
        # controller marks pods not ready on a silent node), as the kubelet's
        # status manager does.
        try:
            written = await self.client.patch(resources.POD, meta.name(pod),
                                              {"status": status}, meta.namespace(pod),
                                              subresource="status")
            rec.reported, rec.reported_version = status, _version(written)
        except NotFound:
            pass

    async def _view(self, pod: Obj, rec: PodRecord, c: Obj) -> podstatus.ContainerView:
        """Probes the container if a probe is due (restarting it when its
        liveness or startup probe failed) and says how it is."""
        uid, name = meta.uid(pod), c["name"]
        crec = rec.containers.setdefault(name, ContainerRecord())
        state = self.runtime.container_state(uid, name)
        if state.status is ContainerStatus.RUNNING:
            fatal = await crec.probes.update(c, rec.ip, state.pid)
            for probe in crec.probes.failed_now():
                self.events.warning(pod, Reason.UNHEALTHY,
                                    f"{probe.kind.label} probe failed: {probe.message}",
                                    field_path=_field(name))
            if fatal is not None:
                self.events.normal(pod, Reason.KILLING, f"Container {name} failed "
                                   f"{fatal.kind.label.lower()} probe, will be restarted",
                                   field_path=_field(name))
                crec.kill_reason = fatal.kind.label
                grace = (c.get(fatal.kind) or {}).get("terminationGracePeriodSeconds")
                await self._stop_container(pod, c, float(grace) if grace is not None
                                           else _grace(pod), announce=False)
                state = self.runtime.container_state(uid, name)
                rec.next_due = time.monotonic()
            else:
                rec.next_due = min(rec.next_due, crec.probes.due(c, time.monotonic()))
        running = state.status is ContainerStatus.RUNNING
        waiting = ("", "") if running else crec.waiting
        if state.status is ContainerStatus.EXITED and waiting[0] == "ErrImagePull":
            waiting = ("", "")
        return podstatus.ContainerView(
            c, state, running and crec.probes.ready, crec.restarts, waiting[0], waiting[1],
            crec.last_state, crec.probes.started)

    # -- stop --

    async def _terminate(self, uid: str, pod: Obj | None) -> None:
        """The kubelet's order, with one step before it: wait (within the grace
        period) until no EndpointSlice sends the pod new connections; stop the
        app containers (preStop hook, SIGTERM, SIGKILL when the grace is up),
        then the sidecars, last first; then take down the network and remove
        the pod object."""
        if pod is None:
            await asyncio.to_thread(self._tear_down, uid, MINIMUM_GRACE)
            self.records.pop(uid, None)
            return
        deadline = time.monotonic() + float(meta.meta(pod).get("deletionGracePeriodSeconds",
                                                             _grace(pod)))
        apps = [c for c in pod["spec"].get("containers") or [] if self._running(uid, c)]
        sidecars = [c for c in pod["spec"].get("initContainers") or []
                    if is_sidecar(c) and self._running(uid, c)]
        if apps or sidecars:
            await self._leave_endpoints(uid, deadline)
        await asyncio.gather(*(self._stop_container(pod, c, deadline - time.monotonic())
                               for c in apps))
        for c in reversed(sidecars):
            await self._stop_container(pod, c, deadline - time.monotonic())
        try:
            await asyncio.to_thread(self._tear_down, uid, MINIMUM_GRACE)
            self.records.pop(uid, None)
            await self.client.delete(resources.POD, meta.name(pod), meta.namespace(pod),
                                     grace_period=0)
        except NotFound:
            pass
        except (ApiError, OSError) as e:
            log.warning("stopping pod %s failed: %s", uid, e)

    def _running(self, uid: str, c: Obj) -> bool:
        return self.runtime.container_state(uid, c["name"]).status is ContainerStatus.RUNNING

    async def _stop_container(self, pod: Obj, c: Obj, grace: float, *,
                              announce: bool = True) -> None:
        """The container's preStop hook, then SIGTERM, then SIGKILL once
        ``grace`` seconds (hook included, at least MINIMUM_GRACE after it)
        are up."""
        uid, name = meta.uid(pod), c["name"]
        if not self._running(uid, c):
            return
        deadline = time.monotonic() + max(grace, 0.0)
        await self._pre_stop(pod, c, deadline)
        if announce:
            self.events.normal(pod, Reason.KILLING, f"Stopping container {name}",
                               field_path=_field(name))
        await asyncio.to_thread(self.runtime.stop_container, uid, name,
                                max(deadline - time.monotonic(), MINIMUM_GRACE))

    async def _leave_endpoints(self, uid: str, deadline: float) -> None:
        """Waits until every slice listing the pod has it not ready (the
        endpoint controllers saw the deletion, and proxies stop choosing it),
        so that the containers get SIGTERM only once new connections go
        elsewhere. Gives up at the deadline, or when the pod object is gone."""
        if self.slices is None:
            return
        wake = self.wakes.get(uid) or asyncio.Event()
        while time.monotonic() < deadline and uid in self.by_uid:
            if not still_ready_in(self.slices.by_index(TARGET_UID_INDEX, uid), uid):
                return
            wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - time.monotonic()):
                    await wake.wait()

    async def _pre_stop(self, pod: Obj, c: Obj, deadline: float) -> None:
        hook = (c.get("lifecycle") or {}).get("preStop")
        if not hook:
            return
        uid, name = meta.uid(pod), c["name"]
        state = self.runtime.container_state(uid, name)
        ip = self.records[uid].ip if uid in self.records else ""
        result = await actions.run_hook(hook, c, pod_ip=ip, pid=state.pid,
                                        timeout=max(deadline - time.monotonic(), 0.0))
        if not result.ok:
            self.events.warning(pod, Reason.FAILED_PRE_STOP_HOOK,
                                f"PreStopHook failed: {result.message}",
                                field_path=_field(name))

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
                self._tear_down(uid, MINIMUM_GRACE)

    async def run(self) -> None:
        await self.informer.synced.wait()
        await asyncio.to_thread(self.clean_orphans)
        self.running = True
        for uid in list(self.by_uid):
            self.wake(uid)
        try:
            await asyncio.Event().wait()
        finally:
            self.running = False
            workers = list(self.workers.values())
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)


def _version(obj: Obj) -> int:
    """The object's resourceVersion as a number (this store's revisions)."""
    rv = str(obj.get("metadata", {}).get("resourceVersion") or "0")
    return int(rv) if rv.isdigit() else 0
