"""``netplane trace --from POD DEST[:PORT]``: the path of a connection from a
pod, step by step, from what is really in the kernel of the client's node.

1. DEST as a name is resolved inside the pod (its resolv.conf: cluster DNS).
2. The rules are read back from the client node's kernel (``iptables-save``)
   and the first packet is walked through them: every chain it jumps to,
   the chance of each endpoint from the random-statistic rules, DNAT,
   masquerade or not, and whether it is rejected or dropped and where.
   In nftables and IPVS modes the programmed elements are shown instead,
   with the agent's check that the kernel still holds them.
3. Network policy, for each destination: whether the first packet passes
   the egress rules of the client's node and the ingress rules of the
   target's node, from the same walk over their kernels' rules and ipsets
   (or policy table), and the model's words for why: which policies
   isolate either end and which rule allows it.
4. For each destination: the node's route to it and the target pod's veth.

From a pod of an enrolled namespace to a destination its node captures for
the mesh, the node's proxy decides instead (tracemesh.py): for HTTP
(``DEST`` as ``http://NAME[:PORT]/PATH``, headers with ``-H``), one real
request and the proxy's spans for it: route, rule, backend, endpoint, each
try, and the mutual-TLS tunnel when it crosses nodes.

In nftables mode the same walk runs over ``nft -j list table ip netplane``
and the policy table beside it; in IPVS mode the programmed virtual servers
are shown instead.
"""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import urllib.parse

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cli.objects import CliError
from netplane.cli.routes import format_port, node_state
from netplane.cluster.client import Client, NotFound
from netplane.lab.paths import LabPaths
from netplane.mesh.identity import spiffe_id
from netplane.net import netns as nsutil
from netplane.net.podnet import host_veth_name
from netplane.node.pods import NodeContext
from netplane.proxy import policy
from netplane.proxy.iptables.policy import JUMPS as POLICY_JUMPS
from netplane.proxy.iptables.render import PLUMBING
from netplane.proxy.iptables.trace import Ruleset, parse, trace_steps
from netplane.proxy.nftables import policy as nft_policy
from netplane.proxy.nftables.eval import NftTable, load_table, merge
from netplane.proxy.nftables.layout import TABLE as NFT_TABLE
from netplane.proxy.nftables.trace import NftTraceError, trace_nft
from netplane.proxy.trace import Packet, Step, Verdict

DNS_IP = "10.96.0.10"  # node-local: traffic to it stays on the node


def _in_netns(netns: str, argv: list[str]) -> str:
    return nsutil.run(argv, netns=netns, check=False)


def split_dest(dest: str, default_port: int) -> tuple[str, int]:
    host, sep, port = dest.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    return dest, default_port


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def resolve_in_pod(pid: int, name: str) -> tuple[str, str]:
    """(address, canonical name) the pod's resolver gives for ``name``."""
    out = subprocess.run(["nsenter", "-t", str(pid), "--net", "--mount", "--uts", "--",
                          "getent", "ahostsv4", name], capture_output=True, text=True,
                         timeout=15).stdout
    lines = [line.split() for line in out.splitlines() if line.strip()]
    if not lines:
        raise CliError(f"error: {name} does not resolve from the pod (cluster DNS says "
                       f"nothing): try `netplane dns {name} --from POD`")
    canonical = next((parts[2] for parts in lines if len(parts) > 2), name)
    return lines[0][0], canonical


def _step_lines(step: Step) -> list[str]:
    f = step.flow
    head = f"  p={step.chance:.3f}  "
    if f.verdict is not Verdict.ACCEPT:
        head += f"{f.verdict.value}: the connection fails here"
    elif f.dnat:
        head += f"DNAT to {f.dnat}" + (", masqueraded (source becomes the node's address)"
                                       if f.masquerade else ", source address kept")
    else:
        head += "no DNAT: routed to the address as it is"
        head += ", masqueraded" if f.masquerade else ""
    return [head, *(f"      {hop}" for hop in step.path)]


def _pods_by_ip(pods: list[Obj]) -> dict[str, Obj]:
    return {p["status"]["podIP"]: p for p in pods if p.get("status", {}).get("podIP")}


def _target_lines(lab: LabPaths, node_netns: str, src: str, ip: str,
                  pods: dict[str, Obj]) -> list[str]:
    route = _in_netns(node_netns, ["ip", "route", "get", ip, "from", src, "iif", "np0"])
    lines = [f"  to {ip}: route on the client's node: {' '.join(route.split()) or '(none)'}"]
    pod = pods.get(ip)
    if pod is not None:
        ctx = NodeContext(node_name="", node_ip="", netns_prefix=lab.prefix, dns_ip="")
        veth = host_veth_name(ctx.pod_netns(meta.uid(pod)))
        lines.append(f"      pod {meta.namespaced_name(pod)} on {pod['spec'].get('nodeName')}, "
                     f"behind veth {veth} on that node's bridge np0")
    return lines


async def trace(client: Client, dest: str, *, from_pod: str, namespace: str, lab: LabPaths,
                protocol: str, port: int, headers: list[str] | None = None) -> list[str]:
    from netplane.cli import tracemesh
    from netplane.cli.podexec import container_pid

    path = "/"
    if dest.startswith("http://"):
        url = urllib.parse.urlsplit(dest)
        dest = f"{url.hostname}:{url.port or 80}"
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")

    try:
        pod = await client.get(resources.POD, from_pod, namespace)
    except NotFound:
        raise CliError(f'error: pods "{from_pod}" not found in namespace {namespace}') from None
    node, src = pod["spec"].get("nodeName"), pod.get("status", {}).get("podIP")
    if not node or not src:
        raise CliError(f"error: pod {from_pod} has no node or address yet")
    host, dport = split_dest(dest, port)
    out = [f"from pod {namespace}/{from_pod} ({src}) on {node}, {protocol.upper()} to "
           f"{host}:{dport}"]
    pid = container_pid(pod, None, lab)
    if _is_ip(host):
        ip = host
    else:
        ip, canonical = await asyncio.to_thread(resolve_in_pod, pid, host)
        out.append(f"1. DNS (in the pod, cluster DNS): {host} -> {canonical} -> {ip}")
    state = await node_state(lab, node)
    if state is None:
        raise CliError(f"error: no agent status on this machine for node {node}")
    pods = _pods_by_ip((await client.list(resources.POD)).get("items", []))
    netns = lab.node_netns(node)
    meshed = tracemesh.captured(await node_state(lab, node, "mesh"), src, ip, dport) \
        if protocol == "tcp" else None
    if meshed is not None:
        out.append(f"2. {node}'s mesh: the nft table ip netplane-mesh redirects "
                   f"{src} -> {ip}:{dport} to the node's "
                   + ("L7 proxy (:15001)" if meshed == "http" else "L4 proxy (:15002)")
                   + ", before any Service rule; its decision:")
        if meshed == "http":
            out += await tracemesh.http_lines(client, lab, node=node, pod=pod, pid=pid,
                                              host=host, ip=ip, port=dport, path=path,
                                              headers=headers or [], pods=pods)
        else:
            who = spiffe_id(namespace, pod["spec"].get("serviceAccountName") or "default")
            out += await tracemesh.stream_lines(lab, node=node, ip=ip, port=dport, pods=pods,
                                                source=who)
        return out
    out.append(f"2. {node}'s proxy ({state['mode']} mode):")
    if state["mode"] in ("iptables", "nftables"):
        steps = await asyncio.to_thread(_kernel_steps, state, netns,
                                        Packet(src, protocol, ip, dport))
        for step in steps:
            out += _step_lines(step)
        targets = sorted({(s.flow.dnat or f"{ip}:{dport}").rpartition(":")[0]
                          for s in steps if s.flow.verdict is Verdict.ACCEPT})
    else:
        matching = [p for p in state.get("ports") or [] if _serves(p, ip, dport, protocol)]
        kernel = {True: "yes", False: "NO", None: "not checked"}[state.get("kernelMatches")]
        out.append(f"  programmed elements (kernel holds what was applied: {kernel}):")
        for p in matching:
            out += ["  " + line for line in format_port(p)]
        if not matching:
            out.append("  no service matches: the packet is routed as it is")
        targets = sorted({e["address"].rpartition(":")[0] for p in matching
                          for e in p.get("endpoints") or [] if e["probability"] > 0}) \
            if matching else [ip]
    if targets:
        out.append("3. network policy:")
        out += await _policy_lines(client, lab, state, node, pod, pods, steps_by_target(
            state, steps if state["mode"] in ("iptables", "nftables") else [], ip, dport),
            protocol)
    out.append("4. delivery:")
    for target in targets:
        out += await asyncio.to_thread(_target_lines, lab, netns, src, target, pods)
    return out


def steps_by_target(state: Obj, steps: list[Step], ip: str, dport: int) -> dict[str, int]:
    """Where the first packet goes after DNAT: address -> port."""
    out: dict[str, int] = {}
    for s in steps:
        if s.flow.verdict is Verdict.ACCEPT:
            host, _, port = (s.flow.dnat or f"{ip}:{dport}").rpartition(":")
            out[host] = int(port)
    if not steps:
        for p in state.get("ports") or []:
            for e in p.get("endpoints") or []:
                if e["probability"] > 0:
                    host, _, port = e["address"].rpartition(":")
                    out[host] = int(port)
        out = out or {ip: dport}
    return out


async def _policy_lines(client: Client, lab: LabPaths, state: Obj, node: str, pod: Obj,
                        pods: dict[str, Obj], targets: dict[str, int],
                        protocol: str) -> list[str]:
    from netplane.cli.policycmd import load

    model, infos = await load(client, list(pods.values()))
    names = {i.ip: i.key for i in infos}
    src = pod["status"]["podIP"]
    lines = []
    for target, port in sorted(targets.items()):
        dst_node = (pods.get(target) or {}).get("spec", {}).get("nodeName")
        nodes = list(dict.fromkeys(n for n in (node, dst_node) if n))
        pkt = Packet(src, protocol, target, port)
        kernel = []
        for n in nodes:
            n_state = state if n == node else await node_state(lab, n)
            if n_state is None or n_state["mode"] not in ("iptables", "nftables", "ipvs"):
                continue
            verdicts = await asyncio.to_thread(_policy_verdict, n_state, lab.node_netns(n), pkt)
            kernel.append(f"{n}: {verdicts}")
        d = policy.evaluate(model, src, target, protocol.upper(), port, names=names)
        who = names.get(target, target)
        if d.allowed:
            by = "; ".join(f"{direction.lower()} by {key} rule {rule}"
                           for direction, key, rule in d.allowed_by) or d.reason
            lines.append(f"  to {who} ({target}:{port}): allowed: {by}")
        else:
            lines.append(f"  to {who} ({target}:{port}): dropped: {d.reason}")
        lines += [f"      kernel on {k}" for k in kernel]
    return lines


def _policy_verdict(state: Obj, netns: str, pkt: Packet) -> str:
    """The kernel's verdict on the packet as it arrives on a node that
    forwards it (no NAT left to do), and the policy rule that decided."""
    if state["mode"] == "nftables":
        steps = _nft_steps(netns, pkt, [])
    else:
        rules, sets = _iptables_rules(netns)
        steps = trace_steps(rules, pkt, sets=sets)
    verdicts = sorted({s.flow.verdict.value for s in steps})
    hops = [h for s in steps for h in s.path if "NPOL" in h]
    return ", ".join(verdicts) + (f" ({hops[-1]})" if hops else " (no policy rule met)")


def _kernel_steps(state: Obj, netns: str, pkt: Packet) -> list[Step]:
    """The packet walked through the rules read back from the node's kernel."""
    local_ips = [*(state.get("nodeIPs") or ()), DNS_IP]
    if state["mode"] == "iptables":
        rules, sets = _iptables_rules(netns)
        return trace_steps(rules, pkt, local_ips=local_ips, sets=sets)
    return _nft_steps(netns, pkt, local_ips)


def _iptables_rules(netns: str, *, save: str = "iptables-save",
                    ) -> tuple[Ruleset, dict[str, frozenset[str]]]:
    """The node's rules (ours) with their fixed jumps, and the policy ipsets."""
    rules = parse(_ours(_in_netns(netns, [save]))).with_jumps(
        (*POLICY_JUMPS, *PLUMBING))
    return rules, ipset_contents(_in_netns(netns, ["ipset", "save"]))


def ipset_contents(saved: str) -> dict[str, frozenset[str]]:
    """Our policy sets' members from ``ipset save``."""
    out: dict[str, set[str]] = {}
    for line in saved.splitlines():
        words = line.split()
        if len(words) >= 2 and words[1].startswith(policy.PREFIX):
            members = out.setdefault(words[1], set())
            if words[0] == "add" and len(words) >= 3:
                members.add(words[2] if "/" in words[2] else f"{words[2]}/32")
    return {k: frozenset(v) for k, v in out.items()}


def _nft_steps(netns: str, pkt: Packet, local_ips: list[str]) -> list[Step]:
    tables: list[NftTable] = []
    try:
        for name in (NFT_TABLE, nft_policy.TABLE):
            listing = _in_netns(netns, ["nft", "-j", "list", "table", "ip", name])
            if listing.strip():  # a table that is not there lists nothing
                tables.append(load_table(listing, name=name))
        if not tables:
            raise NftTraceError("the node has neither the proxy's table nor the policy one")
        return trace_nft(merge(*tables), pkt, local_ips=local_ips)
    except NftTraceError as e:
        raise CliError(f"error: cannot trace the nftables rules of this node: {e}") from None


def _serves(port: Obj, ip: str, dport: int, protocol: str) -> bool:
    if port["protocol"].lower() != protocol.lower():
        return False
    vips = [port["clusterIP"], *(port.get("loadBalancerIPs") or []),
            *(port.get("externalIPs") or [])]
    return (ip in vips and port["port"] == dport) or port.get("nodePort") == dport


def _ours(saved: str) -> str:
    """The tables of ``iptables-save`` with only our chains and the jumps the
    tracer adds itself: others' rules are outside what the tracer models."""
    keep: list[str] = []
    for line in saved.splitlines():
        if line.startswith(("*", "COMMIT", ":NP-", "-A NP-", ":NPOL-", "-A NPOL-")):
            keep.append(line)
        elif line.startswith(":"):
            keep.append(line.split()[0] + " ACCEPT [0:0]")
    return "\n".join(keep) + "\n"
