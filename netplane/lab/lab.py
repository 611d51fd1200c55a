"""``netplane lab up|down``: a whole cluster on one machine, inside network
namespaces. Every step checks what is already there, so ``up`` can be run
again to repair or finish a lab, or with more ``--nodes`` to add workers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import AlreadyExists, ApiError, Client, Connection
from netplane.lab import options as labopts
from netplane.lab import processes, topology
from netplane.lab.paths import CONTROL, LabPaths
from netplane.mesh.manifests import mesh_crds
from netplane.net import netns, routes
from netplane.node import cgroups, registration
from netplane.node.runtime.dockerd import DOCKER_DIR, Engine, remove_cgroups
from netplane.node.runtime.process import unmount_under

Say = Callable[[str], None]
API_PORT = 6443
# LoadBalancer addresses: the top of the underlay, announced by the nodes.
LB_POOL = "192.168.56.200-192.168.56.250"


class LabError(Exception):
    pass


def worker_names(n: int) -> list[str]:
    return [f"node-{i}" for i in range(1, n + 1)]


def recorded_nodes(lab: LabPaths) -> list[str]:
    """The lab's workers, as its state has them."""
    return _recorded_nodes(lab)


def _recorded_nodes(lab: LabPaths) -> list[str]:
    nodes_dir = lab.state_dir / "nodes"
    if not nodes_dir.is_dir():
        return []
    return sorted(p.name for p in nodes_dir.iterdir() if p.name != CONTROL)


def _loopback_listener(lab: LabPaths) -> socket.socket:
    """A TLS listener on 127.0.0.1 of the root namespace, handed to the server
    in the control namespace: kubectl reaches the API without any route."""
    port_file = lab.state_dir / "loopback-port"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", int(port_file.read_text()) if port_file.exists() else 0))
    except OSError:
        sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port_file.write_text(str(sock.getsockname()[1]))
    return sock


def start_server(lab: LabPaths, say: Say, *, flags: list[str] | None = None) -> None:
    pidfile = lab.state_dir / "server.pid"
    if processes.alive(pidfile):
        return
    say("starting the API server in the control node")
    listener = _loopback_listener(lab)
    try:
        processes.start(
            netns=lab.node_netns(CONTROL), log=lab.state_dir / "logs" / "server.log",
            pidfile=pidfile, pass_fds=(listener.fileno(),),
            argv=[sys.executable, "-m", "netplane.cli.main", "server",
                  "--data-dir", str(lab.data_dir), "--socket-path", str(lab.socket),
                  "--bind-address", lab.node_ip(CONTROL),
                  "--advertise-address", lab.node_ip(CONTROL), "--port", str(API_PORT),
                  "--listen-fd", str(listener.fileno()),
                  "--load-balancer-pool", LB_POOL, *(flags or [])])
    finally:
        listener.close()


def start_agent(lab: LabPaths, node: str, *, proxy_mode: str, say: Say,
                runtime: str = "process") -> None:
    pidfile = lab.node_dir(node) / "agent.pid"
    if processes.alive(pidfile):
        return
    say(f"starting the agent on {node}")
    token = (lab.data_dir / "pki" / "join.token").read_text().strip()
    processes.start(
        netns=lab.node_netns(node), log=lab.state_dir / "logs" / f"{node}.log",
        pidfile=pidfile, env={"NETPLANE_TOKEN": token},
        argv=[sys.executable, "-m", "netplane.cli.main", "agent",
              "--server", f"https://{lab.node_ip(CONTROL)}:{API_PORT}",
              "--ca-file", str(lab.data_dir / "pki" / "ca.crt"),
              "--node-name", node, "--node-ip", lab.node_ip(node),
              "--state-dir", str(lab.node_dir(node)), "--netns-prefix", lab.prefix,
              "--proxy-mode", proxy_mode, "--upstream", "none",
              "--cgroup-root", lab.cgroup_root(node), "--runtime", runtime])


def write_kubeconfig(lab: LabPaths) -> Path:
    port = (lab.state_dir / "loopback-port").read_text().strip()
    token = (lab.data_dir / "pki" / "admin.token").read_text().strip()
    ca = lab.data_dir / "pki" / "ca.crt"
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: netplane-{lab.name}
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority: {ca}
users:
- name: netplane-{lab.name}-admin
  user:
    token: {token}
contexts:
- name: netplane-{lab.name}
  context:
    cluster: netplane-{lab.name}
    user: netplane-{lab.name}-admin
    namespace: default
current-context: netplane-{lab.name}
"""
    fd = os.open(lab.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return lab.kubeconfig


def pod_cidr(node: str) -> str:
    return f"10.244.{node.rsplit('-', 1)[1]}.0/24"


def route_control_to_pods(lab: LabPaths, workers: list[str]) -> None:
    """The control node runs no agent, so it gets the host-gw routes here:
    pods reach the API server through the ``kubernetes`` Service (10.96.0.1),
    and the replies must find their way back to the pods' addresses."""
    routes.sync_routes({pod_cidr(n): lab.node_ip(n) for n in workers},
                       netns=lab.node_netns(CONTROL))


async def _declare_nodes(lab: LabPaths, workers: list[str]) -> None:
    """Node objects made before their agents start, so that node-N gets pod
    CIDR 10.244.N.0/24 whatever order the agents register in (the lab's
    address plan stays readable); agents take them over as they register."""
    async with Client(Connection(socket=str(lab.socket))) as c:
        for node in workers:
            body = registration.node_object(node, lab.node_ip(node))
            body["spec"]["podCIDR"] = pod_cidr(node)
            try:
                await c.create(resources.NODE, body)
            except AlreadyExists:
                pass


async def _install_crds(lab: LabPaths) -> None:
    """The mesh's kinds (the Gateway API's, AuthorizationPolicy), so that
    routes and policies apply in the lab as they would on a cluster with
    the Gateway API installed."""
    async with Client(Connection(socket=str(lab.socket))) as c:
        for crd in mesh_crds():
            with contextlib.suppress(AlreadyExists):
                await c.create(resources.CUSTOMRESOURCEDEFINITION, crd)


async def _wait_api(lab: LabPaths, deadline: float) -> None:
    while time.monotonic() < deadline:
        if lab.socket.exists() and (lab.data_dir / "pki" / "join.token").exists():
            try:
                async with Client(Connection(socket=str(lab.socket))) as c:
                    await c.request("GET", "/readyz")
                    return
            except (OSError, ApiError):
                pass
        await asyncio.sleep(0.1)
    raise LabError(f"the API server did not start; see {lab.state_dir}/logs/server.log")


def _heard_since(node: Obj, since: float) -> bool:
    """Whether the node's agent posted Ready at ``since`` or later (Times
    are whole seconds)."""
    beat = meta.timestamp((meta.condition(node, "Ready") or {}).get("lastHeartbeatTime"))
    return beat is not None and beat >= int(since)


async def wait_nodes_ready(lab: LabPaths, nodes: list[str], say: Say, *,
                           timeout: float = 60.0, since: float | None = None) -> list[Obj]:
    """Waits until every node is Ready, as posted at ``since`` or later."""
    deadline = time.monotonic() + timeout
    last = ""
    async with Client(Connection(socket=str(lab.socket))) as c:
        while True:
            items = (await c.list(resources.NODE)).get("items", [])
            ready = {meta.name(n) for n in items if meta.node_ready(n)
                     and (since is None or _heard_since(n, since))}
            line = ", ".join(f"{n} {'Ready' if n in ready else 'NotReady'}" for n in nodes)
            if line != last:
                say(f"nodes: {line}")
                last = line
            if all(n in ready for n in nodes):
                return [n for n in items if meta.name(n) in nodes]
            if time.monotonic() > deadline:
                raise LabError(f"nodes not Ready after {timeout:.0f}s; see "
                               f"{lab.state_dir}/logs/")
            await asyncio.sleep(0.2)


def up(lab: LabPaths, *, nodes: int, proxy_mode: str | None = None,
       node_grace: float | None = None, toleration_seconds: int | None = None,
       scheduler_config: Path | None = None, runtime: str | None = None,
       say: Say) -> list[str]:
    """Brings the lab up; options not given are those of the lab's first ``up``."""
    if os.geteuid() != 0:
        raise LabError("netplane lab needs root: it creates network namespaces")
    workers = sorted(set(worker_names(nodes)) | set(_recorded_nodes(lab)), key=_number)
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    saved = labopts.load(lab)
    copied = _copy_scheduler_config(lab, scheduler_config) if scheduler_config else None
    opts = labopts.merged(saved, proxy_mode=proxy_mode, node_grace=node_grace,
                          toleration_seconds=toleration_seconds, scheduler_config=copied,
                          runtime=runtime)
    if (opts.server_flags() != saved.server_flags() or copied is not None) and \
            processes.alive(lab.state_dir / "server.pid"):
        say("restarting the API server with the new options")
        processes.stop(lab.state_dir / "server.pid")
    labopts.save(lab, opts)
    say(f"lab {lab.name!r}: underlay bridge {topology.BRIDGE} in netns {lab.underlay_netns}")
    topology.underlay(lab)
    for node in [CONTROL, *workers]:
        topology.node(lab, node)
        lab.node_dir(node).mkdir(parents=True, exist_ok=True)
    start_server(lab, say, flags=opts.server_flags())
    asyncio.run(_wait_api(lab, time.monotonic() + 30))
    write_kubeconfig(lab)
    asyncio.run(_declare_nodes(lab, workers))
    asyncio.run(_install_crds(lab))
    route_control_to_pods(lab, workers)
    for node in workers:
        start_agent(lab, node, proxy_mode=opts.proxy_mode, runtime=opts.runtime, say=say)
    asyncio.run(wait_nodes_ready(lab, workers, say))
    return workers


def _copy_scheduler_config(lab: LabPaths, given: Path) -> str:
    """The file checked as the server will read it, then kept in the lab's
    state, so that a later ``up`` or repair runs the same profiles."""
    from netplane.cluster.scheduler import config as scheduler_config

    try:
        scheduler_config.load(given)
    except (OSError, scheduler_config.ConfigError) as e:
        raise LabError(f"--scheduler-config: {e}") from None
    kept = lab.state_dir / "scheduler-config.yaml"
    kept.write_text(given.read_text())
    return str(kept)


def _number(node: str) -> int:
    return int(node.rsplit("-", 1)[1])


def down(lab: LabPaths, *, say: Say) -> None:
    nodes = [CONTROL, *_recorded_nodes(lab)]
    for node in nodes:
        processes.stop(lab.node_dir(node) / "agent.pid")
        # A docker node's engine: its containers, mounts and cgroups go too.
        engine = Engine(state=lab.node_dir(node) / DOCKER_DIR, netns=None)
        if engine.pidfile.exists():
            engine.stop()
    processes.stop(lab.state_dir / "server.pid")
    pods = [ns for ns in topology.netns_list() if ns.startswith(lab.pod_netns_prefix)]
    every = [*pods, *(lab.node_netns(n) for n in nodes), lab.underlay_netns]
    for ns in every:
        processes.kill_netns_processes(ns)
    for node in nodes:
        cgroups.remove_recorded(lab.node_dir(node) / cgroups.RECORD_FILE)
    # Docker nodes' cgroups sit at one path in every hierarchy, the engine's
    # own ones (blkio, devices...) among them.
    remove_cgroups("/" + lab.cgroup_root(CONTROL).rsplit("/", 1)[0])
    topology.remove(every)
    if lab.state_dir.exists():
        # Pods still running kept their IPC namespace binds and tmpfs volumes.
        unmount_under(lab.state_dir)
        shutil.rmtree(lab.state_dir)
    if lab.socket.exists():
        lab.socket.unlink()
    for d in (lab.state_dir.parent, lab.state_dir.parent.parent):
        with contextlib.suppress(OSError):
            d.rmdir()  # only when empty: other labs may still be there
    say(f"lab {lab.name!r} removed ({len(pods)} pod namespaces, {len(nodes)} nodes)")


def node_exec(lab: LabPaths, node: str, command: list[str]) -> None:
    if not netns.exists(lab.node_netns(node)):
        raise LabError(f"no node {node!r} in lab {lab.name!r}")
    os.execvp("nsenter", ["nsenter", f"--net=/run/netns/{lab.node_netns(node)}", "--",
                          *command])
