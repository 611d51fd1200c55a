"""Host ports, the way the CNI ``portmap`` plugin gives them to Kubernetes
pods: a container port with a ``hostPort`` answers on the node's own
addresses (or on ``hostIP`` only) through a DNAT to the pod, whatever the
proxy mode, since kube-proxy has no part in it either.

Rules, in the nat table of the node's namespace:

* ``PREROUTING`` and ``OUTPUT`` send traffic for a local address to
  ``NPHOSTPORT-DNAT``, one DNAT rule per mapped port;
* ``POSTROUTING`` sends everything to ``NPHOSTPORT-MASQ``, which
  masquerades the two cases whose replies would not come back through the
  node's conntrack: a pod reaching itself through its host port (hairpin),
  and the node reaching it from 127.0.0.1 (``route_localnet``).

The chain names stay off the proxy's ``NP-`` prefix: its full sync deletes
every ``NP-`` chain it did not write."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.cluster.client import Informer
from netplane.proxy.command import Runner, run_command, run_in
from netplane.proxy.iptables.apply import detect_backend, tool

log = logging.getLogger(__name__)

DNAT_CHAIN = "NPHOSTPORT-DNAT"
MASQ_CHAIN = "NPHOSTPORT-MASQ"
COMMENT = "netplane host ports"
# (built-in chain, our chain, match before the jump)
JUMPS = (("PREROUTING", DNAT_CHAIN, ("-m", "addrtype", "--dst-type", "LOCAL")),
         ("OUTPUT", DNAT_CHAIN, ("-m", "addrtype", "--dst-type", "LOCAL")),
         ("POSTROUTING", MASQ_CHAIN, ()))
# Also catches what the jumps' absence would hide: a flushed nat table.
RESYNC_PERIOD = 30.0


@dataclass(frozen=True, order=True)
class Mapping:
    protocol: str  # tcp, udp or sctp
    host_port: int
    host_ip: str  # "" for every local address
    pod_ip: str
    container_port: int
    pod: str  # namespace/name, for the rule's comment

    @property
    def key(self) -> tuple[str, int, str]:
        return self.protocol, self.host_port, self.host_ip


def _bound_here(pod: Obj, node: str) -> bool:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    return spec.get("nodeName") == node and not spec.get("hostNetwork") \
        and status.get("phase") not in ("Succeeded", "Failed") and bool(status.get("podIP"))


def pod_mappings(pod: Obj) -> list[Mapping]:
    ip = str(pod["status"]["podIP"])
    if ipaddress.ip_address(ip).version != 4:
        return []
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if not p.get("hostPort"):
                continue
            host_ip = str(p.get("hostIP") or "")
            out.append(Mapping(str(p.get("protocol") or "TCP").lower(), int(p["hostPort"]),
                               "" if host_ip in ("0.0.0.0", "::") else host_ip, ip,
                               int(p["containerPort"]), meta.namespaced_name(pod)))
    return out


def mappings(pods: list[Obj], node: str) -> list[Mapping]:
    """Every host port of the pods running on ``node``. Two pods claiming
    one port (the scheduler keeps them apart; a pod bound by ``nodeName``
    skips it) leave the port to the older one, as the first rule would."""
    taken: dict[tuple[str, int, str], Mapping] = {}
    ordered = sorted((p for p in pods if _bound_here(p, node)),
                     key=lambda p: (p["metadata"].get("creationTimestamp", ""), meta.uid(p)))
    for pod in ordered:
        for m in pod_mappings(pod):
            taken.setdefault(m.key, m)
    return sorted(taken.values())


def _quoted(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def render(wanted: list[Mapping]) -> str:
    """An ``iptables-restore --noflush`` document that replaces both chains."""
    lines = ["*nat", f":{DNAT_CHAIN} - [0:0]", f":{MASQ_CHAIN} - [0:0]"]
    for m in wanted:
        comment = _quoted(f"{m.pod} hostPort {m.host_port}/{m.protocol}")
        match = f"-p {m.protocol} -m {m.protocol} --dport {m.host_port}"
        dst = f"-d {m.host_ip}/32 " if m.host_ip else ""
        lines.append(f"-A {DNAT_CHAIN} {dst}{match} -m comment --comment {comment} "
                     f"-j DNAT --to-destination {m.pod_ip}:{m.container_port}")
    for m in wanted:
        back = f"-d {m.pod_ip}/32 -p {m.protocol} -m {m.protocol} --dport {m.container_port}"
        for src, why in ((m.pod_ip + "/32", "hairpin"), ("127.0.0.0/8", "localhost")):
            comment = _quoted(f"{m.pod} hostPort {m.host_port}/{m.protocol} {why}")
            lines.append(f"-A {MASQ_CHAIN} -s {src} {back} -m comment --comment {comment} "
                         f"-j MASQUERADE")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


class HostPortApplier:
    """Writes the chains and their jumps, in ``netns`` when given (tests)."""

    def __init__(self, *, netns: str | None = None, runner: Runner = run_command) -> None:
        self._netns, self._runner = netns, runner
        self._tool = tool(detect_backend(runner=runner))

    def _iptables(self, *args: str, check: bool = True) -> int:
        return run_in(self._runner, self._netns, [self._tool, "-w", "-t", "nat", *args],
                      check=check).returncode

    def apply(self, wanted: list[Mapping]) -> None:
        run_in(self._runner, self._netns, [f"{self._tool}-restore", "-w", "--noflush"],
               render(wanted))
        self.ensure_jumps()

    def ensure_jumps(self) -> None:
        for base, chain, match in JUMPS:
            rule = [*match, "-m", "comment", "--comment", COMMENT, "-j", chain]
            if self._iptables("-C", base, *rule, check=False) != 0:
                self._iptables("-A", base, *rule)

    def set_up(self) -> None:
        # 127.0.0.1:hostPort from the node: DNAT of loopback traffic needs it.
        run_in(self._runner, self._netns, ["sysctl", "-qw",
                                           "net.ipv4.conf.all.route_localnet=1"])

    def clean_up(self) -> None:
        for base, chain, match in JUMPS:
            rule = [*match, "-m", "comment", "--comment", COMMENT, "-j", chain]
            while self._iptables("-C", base, *rule, check=False) == 0:
                self._iptables("-D", base, *rule)
        for chain in (DNAT_CHAIN, MASQ_CHAIN):
            self._iptables("-F", chain, check=False)
            self._iptables("-X", chain, check=False)


class HostPorts:
    """Keeps the node's host-port rules equal to its pods' ports."""

    def __init__(self, *, node_name: str, pods: Informer,
                 applier: HostPortApplier | None = None) -> None:
        self.node, self.pods = node_name, pods
        self.applier = applier if applier is not None else HostPortApplier()
        self.wake = asyncio.Event()
        self.applied: list[Mapping] | None = None
        pods.add_handler(self._on_pod)

    def _on_pod(self, prev: Obj | None, cur: Obj | None) -> None:
        if any(o is not None and (o.get("spec") or {}).get("nodeName") == self.node
               for o in (prev, cur)):
            self.wake.set()

    def sync(self, *, force: bool = False) -> None:
        wanted = mappings(self.pods.items(), self.node)
        if wanted == self.applied and not force:
            return
        self.applier.apply(wanted)
        if wanted != self.applied:
            log.info("host ports: %s", ", ".join(
                f"{m.host_port}/{m.protocol} -> {m.pod}" for m in wanted) or "none")
        self.applied = wanted

    async def run(self) -> None:
        await self.pods.synced.wait()
        await asyncio.to_thread(self.applier.set_up)
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), RESYNC_PERIOD)
                force = False
            except TimeoutError:
                force = True
            self.wake.clear()
            try:
                await asyncio.to_thread(self.sync, force=force)
            except Exception as e:  # tried again on the next change or resync
                log.warning("host ports: %s", e)
                self.applied = None
