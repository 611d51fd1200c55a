"""``netplane trace --from POD DEST[:PORT]``: the path of a connection from a
pod, step by step, from what is really in the kernel of the client's node.

1. DEST as a name is resolved inside the pod (its resolv.conf: cluster DNS).
2. The rules are read back from the client node's kernel (``iptables-save``)
   and the first packet is walked through them: every chain it jumps to,
   the chance of each endpoint from the random-statistic rules, DNAT,
   masquerade or not, and whether it is rejected or dropped and where.
   In nftables and IPVS modes the programmed elements are shown instead,
   with the agent's check that the kernel still holds them.
3. For each destination: the node's route to it and the target pod's veth.

In nftables mode the same walk runs over ``nft -j list table ip netplane``;
in IPVS mode the programmed virtual servers are shown instead.
"""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cli.objects import CliError
from netplane.cli.routes import format_port, node_state
from netplane.cluster.client import Client, NotFound
from netplane.lab.paths import LabPaths
from netplane.net import netns as nsutil
from netplane.net.podnet import host_veth_name
from netplane.node.pods import NodeContext
from netplane.proxy.iptables.render import PLUMBING
from netplane.proxy.iptables.trace import parse, trace_steps
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
                protocol: str, port: int) -> list[str]:
    from netplane.cli.podexec import container_pid

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
    if _is_ip(host):
        ip = host
    else:
        pid = container_pid(pod, None, lab)
        ip, canonical = await asyncio.to_thread(resolve_in_pod, pid, host)
        out.append(f"1. DNS (in the pod, cluster DNS): {host} -> {canonical} -> {ip}")
    state = await node_state(lab, node)
    if state is None:
        raise CliError(f"error: no agent status on this machine for node {node}")
    pods = _pods_by_ip((await client.list(resources.POD)).get("items", []))
    netns = lab.node_netns(node)
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
    out.append("3. delivery:")
    for target in targets:
        out += await asyncio.to_thread(_target_lines, lab, netns, src, target, pods)
    return out


def _kernel_steps(state: Obj, netns: str, pkt: Packet) -> list[Step]:
    """The packet walked through the rules read back from the node's kernel."""
    local_ips = [*(state.get("nodeIPs") or ()), DNS_IP]
    if state["mode"] == "iptables":
        rules = parse(_ours(_in_netns(netns, ["iptables-save"]))).with_jumps(PLUMBING)
        return trace_steps(rules, pkt, local_ips=local_ips)
    listing = _in_netns(netns, ["nft", "-j", "list", "table", "ip", "netplane"])
    try:
        return trace_nft(listing, pkt, local_ips=local_ips)
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
        if line.startswith(("*", "COMMIT")) or line.startswith(":NP-") or line.startswith("-A NP-"):
            keep.append(line)
        elif line.startswith(":"):
            keep.append(line.split()[0] + " ACCEPT [0:0]")
    return "\n".join(keep) + "\n"
