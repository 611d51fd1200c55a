"""``netplane``: kubectl-like verbs, the one-machine lab and the daemons."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from netplane.cli import objects
from netplane.cli.objects import CliError
from netplane.cluster.client import ApiError, Client, Connection, load_connection
from netplane.lab.paths import lab_from_env


def connection(args: argparse.Namespace) -> Connection:
    if args.socket:
        return Connection(socket=args.socket)
    if args.kubeconfig:
        return load_connection(Path(args.kubeconfig))
    return Connection(socket=str(lab_from_env(args.lab).socket))


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


async def _with_client(args: argparse.Namespace, fn: Any, *a: Any, **kw: Any) -> Any:
    conn = connection(args)
    if conn.socket and not Path(conn.socket).exists():
        raise CliError(f"error: no API server at {conn.socket}: is a lab up? "
                       "(netplane lab up, or --lab NAME / --kubeconfig FILE)")
    async with Client(conn) as client:
        return await fn(client, *a, **kw)


def cmd_apply(args: argparse.Namespace) -> int:
    for line in _run(_with_client(args, objects.apply, args.filename, args.namespace)):
        print(line)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    print(_run(_with_client(args, objects.get, args.kind, args.names,
                            namespace=args.namespace, all_namespaces=args.all_namespaces,
                            selector=args.selector or "", output=args.output or "")))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    if args.filename:
        lines = _run(_with_client(args, objects.delete_files, args.filename, args.namespace,
                                  cascade=args.cascade))
    else:
        if not args.kind:
            raise CliError("error: give KIND NAME or -f FILE")
        lines = _run(_with_client(args, objects.delete, args.kind, args.names,
                                  namespace=args.namespace, grace_period=args.grace_period,
                                  cascade=args.cascade, everything=args.all,
                                  selector=args.selector or ""))
    for line in lines:
        print(line)
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    for line in _run(_with_client(args, objects.scale, args.kind, args.names,
                                  replicas=args.replicas, namespace=args.namespace)):
        print(line)
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    print("\n\n".join(_run(_with_client(args, objects.describe, args.kind, args.names,
                                       namespace=args.namespace))))
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from netplane.cli import podexec

    return int(_run(_with_client(args, podexec.exec_in_pod, args.pod, args.command,
                                 namespace=args.namespace or "default",
                                 container=args.container, stdin=args.stdin, tty=args.tty)))


def cmd_logs(args: argparse.Namespace) -> int:
    from netplane.cli import logs

    _run(_with_client(args, logs.logs, args.pod, namespace=args.namespace or "default",
                      container=args.container, follow=args.follow, previous=args.previous,
                      tail=args.tail, since=args.since, timestamps=args.timestamps))
    return 0


def cmd_ps(args: argparse.Namespace) -> int:
    from netplane.cli import pscmd

    print(_run(_with_client(args, pscmd.ps, namespace=args.namespace,
                            all_namespaces=args.all_namespaces, node=args.node,
                            show_all=args.all)))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from netplane.cli import statscmd

    print(_run(_with_client(args, statscmd.stats, node=args.node, stream=not args.no_stream)))
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from netplane.cli import topcmd

    print(_run(_with_client(args, topcmd.top, args.pod, namespace=args.namespace or "default",
                            container=args.container)))
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    from netplane.cli import imagecmd

    if (args.node is None) == (not args.all):
        raise CliError("error: name a NODE or give --all")
    for line in imagecmd.import_image(lab_from_env(args.lab), Path(args.file),
                                      node=None if args.all else args.node):
        print(line)
    return 0


def cmd_policy(args: argparse.Namespace) -> int:
    from netplane.cli import policycmd

    for line in _run(_with_client(args, policycmd.show, args.pod, namespace=args.namespace,
                                  all_namespaces=args.all_namespaces)):
        print(line)
    return 0


def cmd_mesh(args: argparse.Namespace) -> int:
    from netplane.cli import meshcmd

    lab = lab_from_env(args.lab)
    if args.mesh_verb == "status":
        lines = _run(_with_client(args, meshcmd.status, lab=lab, node=args.node))
    elif args.mesh_verb == "rotate":
        lines = _run(_with_client(args, meshcmd.rotate, lab=lab, node=args.node))
    else:
        as_json = args.output == "json"
        lines = _run(_with_client(args, meshcmd.logs, lab=lab, node=args.node,
                                  namespace=args.namespace, service=args.service,
                                  as_json=as_json))
        if as_json:
            lines = [json.dumps(e) for e in lines]
    for line in lines:
        print(line)
    return 0


def cmd_explain_schedule(args: argparse.Namespace) -> int:
    from netplane.cli import schedcmd

    for line in _run(_with_client(args, schedcmd.explain, args.pod, namespace=args.namespace)):
        print(line)
    return 0


def cmd_dns(args: argparse.Namespace) -> int:
    from netplane.cli import dnscmd

    for line in _run(_with_client(args, dnscmd.dns, args.name, args.type,
                                  namespace=args.namespace or "default",
                                  from_pod=args.from_pod)):
        print(line)
    if args.from_pod:
        print(f"; asked for real from pod {args.from_pod}:", flush=True)
        from netplane.cli import podexec

        return int(_run(_with_client(args, podexec.exec_in_pod, args.from_pod,
                                     ["dig", "+search", "+noall", "+answer", "+comments",
                                      args.name, args.type],
                                     namespace=args.namespace or "default", container=None)))
    return 0


def cmd_routes(args: argparse.Namespace) -> int:
    from netplane.cli import routes

    namespace = args.namespace or ("default" if args.service else None)
    for line in _run(_with_client(args, routes.routes, args.service, namespace=namespace,
                                  node=args.node, lab=lab_from_env(args.lab))):
        print(line)
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from netplane.cli import tracecmd

    for line in _run(_with_client(args, tracecmd.trace, args.dest, from_pod=args.from_pod,
                                  namespace=args.namespace or "default",
                                  lab=lab_from_env(args.lab),
                                  protocol="udp" if args.udp else "tcp", port=args.port,
                                  headers=args.header)):
        print(line)
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    from netplane.cluster.scheduler import config as scheduler_config
    from netplane.cluster.server import ServerConfig, run

    if args.scheduler_config:
        try:  # a bad file stops the server before it serves
            scheduler_config.load(Path(args.scheduler_config))
        except (OSError, scheduler_config.ConfigError) as e:
            print(f"error: --scheduler-config: {e}", file=sys.stderr)
            return 1

    run(ServerConfig(data_dir=Path(args.data_dir), socket=Path(args.socket_path),
                     bind_address=args.bind_address, port=args.port,
                     advertise_address=args.advertise_address,
                     listen_fds=args.listen_fd or [], service_cidr=args.service_cidr,
                     cluster_cidr=args.cluster_cidr,
                     load_balancer_pool=args.load_balancer_pool,
                     scheduler_config=Path(args.scheduler_config) if args.scheduler_config
                     else None,
                     default_not_ready_toleration_seconds=args.default_not_ready_toleration_seconds,
                     default_unreachable_toleration_seconds=(
                         args.default_unreachable_toleration_seconds),
                     node_monitor_grace_period=args.node_monitor_grace_period,
                     node_monitor_period=args.node_monitor_period,
                     node_startup_grace_period=args.node_startup_grace_period,
                     hpa_sync_period=args.horizontal_pod_autoscaler_sync_period,
                     hpa_downscale_stabilization=(
                         args.horizontal_pod_autoscaler_downscale_stabilization)))
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    from netplane.cluster.scheduler import process

    return process.main(["--socket-path", args.socket_path,
                         *(["--config", args.config] if args.config else [])])


def cmd_agent(args: argparse.Namespace) -> int:
    from netplane.node.agent import AgentConfig, run

    run(AgentConfig(server=args.server, token=args.token or os.environ.get("NETPLANE_TOKEN"),
                    ca_file=args.ca_file, node_name=args.node_name, node_ip=args.node_ip,
                    state_dir=Path(args.state_dir), netns_prefix=args.netns_prefix,
                    proxy_mode=args.proxy_mode, upstream=args.upstream,
                    cgroup_root=args.cgroup_root, runtime=args.runtime,
                    docker_host=args.docker_host))
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    from netplane.lab import cli as labcli

    return labcli.dispatch(args)


def _common(p: argparse.ArgumentParser, *, top: bool = False) -> None:
    """Connection flags, accepted before or after the verb (as kubectl does)."""
    unset: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--lab", help="lab name (default: $NETPLANE_LAB or 'default')", **unset)
    p.add_argument("--socket", help="API server Unix socket", **unset)
    p.add_argument("--kubeconfig", help="kubeconfig file (https + token)", **unset)
    p.add_argument("-v", "--verbose", action="store_true", help="tell the story", **unset)


def _seconds(text: str) -> int:
    """A kubectl duration (90s, 5m, 2h, 1h30m) in whole seconds."""
    parts = re.findall(r"(\d+)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 10s, 5m, 2h)")
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def _duration(text: str) -> float:
    """A duration as kube's components take it (40s, 1m30s), or seconds."""
    return float(text) if re.fullmatch(r"\d+(\.\d+)?", text) else float(_seconds(text))


def _namespaced(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", help="namespace (default: default)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="netplane", description=__doc__)
    _common(top, top=True)
    sub = top.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("apply", help="create or update objects from manifests")
    p.add_argument("-f", "--filename", action="append", required=True,
                   help="file, directory or - for stdin (repeatable)")
    _namespaced(p)
    p.set_defaults(fn=cmd_apply)

    p = sub.add_parser("get", help="list objects (pods, services, nodes, ...)")
    p.add_argument("kind")
    p.add_argument("names", nargs="*")
    _namespaced(p)
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier!=db")
    p.add_argument("-o", "--output", choices=["wide", "yaml", "json"])
    p.set_defaults(fn=cmd_get)

    p = sub.add_parser("delete", help="delete objects")
    p.add_argument("kind", nargs="?")
    p.add_argument("names", nargs="*")
    p.add_argument("-f", "--filename", action="append")
    p.add_argument("--all", action="store_true", help="every object of KIND in the namespace")
    p.add_argument("-l", "--selector", help="only the objects these labels select")
    p.add_argument("--grace-period", type=int, help="seconds; 0 deletes at once")
    p.add_argument("--cascade", choices=sorted(objects.CASCADE), default="background",
                   help="what becomes of the dependents: background (deleted after), "
                        "foreground (deleted first) or orphan (kept)")
    _namespaced(p)
    p.set_defaults(fn=cmd_delete)

    p = sub.add_parser("exec", help="run a command in a pod: exec POD [-n NS] -- CMD")
    p.add_argument("pod")
    p.add_argument("-c", "--container")
    _namespaced(p)
    p.add_argument("-i", "--stdin", action="store_true", help="pass stdin to the command")
    p.add_argument("-t", "--tty", action="store_true", help="give the command a terminal")
    p.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    p.set_defaults(fn=cmd_exec)

    p = sub.add_parser("logs", help="a container's output: logs [-f] [-c C] POD")
    p.add_argument("pod")
    p.add_argument("-c", "--container")
    p.add_argument("-f", "--follow", action="store_true", help="go on as lines are written")
    p.add_argument("-p", "--previous", action="store_true",
                   help="the previous instance of a restarted container")
    p.add_argument("--tail", type=int, help="only the last N lines")
    p.add_argument("--since", type=_seconds, help="only lines newer than 10s, 5m, 2h")
    p.add_argument("--timestamps", action="store_true")
    _namespaced(p)
    p.set_defaults(fn=cmd_logs)

    p = sub.add_parser("ps", help="containers across the cluster, like docker ps")
    p.add_argument("-a", "--all", action="store_true", help="exited ones too")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("--node", help="only this node's")
    _namespaced(p)
    p.set_defaults(fn=cmd_ps)

    p = sub.add_parser("stats", help="containers' CPU and memory, like docker stats")
    p.add_argument("--node", help="only this node's")
    p.add_argument("--no-stream", action="store_true", help="one table, then exit")
    p.set_defaults(fn=cmd_stats)

    p = sub.add_parser("top", help="the processes of a pod's containers, like docker top")
    p.add_argument("pod")
    p.add_argument("-c", "--container")
    _namespaced(p)
    p.set_defaults(fn=cmd_top)

    p = sub.add_parser("image", help="images of a lab's docker-runtime nodes")
    verbs = p.add_subparsers(dest="image_verb", required=True, metavar="VERB")
    imp = verbs.add_parser("import", help="load a docker save tarball on a node or all of them")
    imp.add_argument("node", nargs="?", metavar="NODE")
    imp.add_argument("--all", action="store_true", help="every worker of the lab")
    imp.add_argument("file", metavar="FILE.tar")
    _common(imp)
    p.set_defaults(fn=cmd_image)

    p = sub.add_parser("scale", help="set the replicas of a Deployment or ReplicaSet")
    p.add_argument("kind", metavar="KIND/NAME | KIND")
    p.add_argument("names", nargs="*")
    p.add_argument("--replicas", type=int, required=True)
    _namespaced(p)
    p.set_defaults(fn=cmd_scale)

    p = sub.add_parser("describe", help="an object in readable form, with its events")
    p.add_argument("kind", metavar="KIND | KIND/NAME")
    p.add_argument("names", nargs="*")
    _namespaced(p)
    p.set_defaults(fn=cmd_describe)

    p = sub.add_parser("dns", help="what cluster DNS answers for a name, and why")
    p.add_argument("name")
    p.add_argument("type", nargs="?", default="A")
    p.add_argument("--from", dest="from_pod", metavar="POD",
                   help="expand with this pod's search path and also ask from inside it")
    _namespaced(p)
    p.set_defaults(fn=cmd_dns)

    p = sub.add_parser("policy", help="which network policies isolate each pod, and what "
                                      "they allow")
    p.add_argument("pod", nargs="?")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    _namespaced(p)
    p.set_defaults(fn=cmd_policy)

    p = sub.add_parser("explain-schedule", help="why the scheduler puts a pod where it does: "
                                                "each node's filter verdict and scores")
    p.add_argument("pod")
    _namespaced(p)
    p.set_defaults(fn=cmd_explain_schedule)

    p = sub.add_parser("mesh", help="the service mesh: status, and the node proxies' access logs")
    mesh = p.add_subparsers(dest="mesh_verb", required=True)
    m = mesh.add_parser("status", help="enrolled namespaces, routes, Gateways, node proxies "
                                       "with their certificates and tunnels")
    m.add_argument("--node", help="only this node's proxy")
    m.set_defaults(fn=cmd_mesh)
    m = mesh.add_parser("rotate", help="node proxies renew their certificates now (tunnels "
                                       "already up keep theirs)")
    m.add_argument("--node", help="only this node's proxy")
    m.set_defaults(fn=cmd_mesh)
    m = mesh.add_parser("logs", help="the node proxies' access logs, oldest first")
    m.add_argument("--node", help="only this node's proxy")
    m.add_argument("--service", help="requests to this Service (NAME, NS/NAME or its DNS name)")
    m.add_argument("-n", "--namespace", help="requests from pods of this namespace")
    m.add_argument("-o", "--output", choices=["line", "json"], default="line")
    m.set_defaults(fn=cmd_mesh)

    p = sub.add_parser("routes", help="what each node's proxy programmed for Services")
    p.add_argument("service", nargs="?")
    p.add_argument("--node", help="only this node")
    _namespaced(p)
    p.set_defaults(fn=cmd_routes)

    p = sub.add_parser("trace", help="the path of a connection from a pod, from the kernel")
    p.add_argument("dest", metavar="DEST[:PORT]",
                   help="a name, a service IP, a pod IP, or http://NAME[:PORT]/PATH")
    p.add_argument("--from", dest="from_pod", metavar="POD", required=True)
    p.add_argument("--udp", action="store_true", help="trace UDP instead of TCP")
    p.add_argument("--port", type=int, default=80, help="port when DEST has none (80)")
    p.add_argument("-H", "--header", action="append", default=[],
                   help="a request header, for DEST as http://NAME/PATH from a meshed pod")
    _namespaced(p)
    p.set_defaults(fn=cmd_trace)

    p = sub.add_parser("server", help="run the API server, scheduler and controllers")
    p.add_argument("--data-dir", default="/var/lib/netplane/server")
    p.add_argument("--socket-path", default="/run/netplane/api.sock")
    p.add_argument("--bind-address", default="0.0.0.0")
    p.add_argument("--advertise-address", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6443, help="TLS port; 0: any free port "
                   "(written to DATA_DIR/apiserver.port)")
    p.add_argument("--listen-fd", type=int, action="append",
                   help="an inherited listening socket to serve too (TLS)")
    p.add_argument("--service-cidr", default="10.96.0.0/12")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16")
    p.add_argument("--load-balancer-pool", default="",
                   help="addresses for LoadBalancer Services: A-B ranges or CIDRs, comma-"
                        "separated (default: none)")
    p.add_argument("--scheduler-config", metavar="FILE",
                   help="a KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1): "
                        "profiles, plugins and weights, as kube-scheduler's --config")
    for state in ("not-ready", "unreachable"):
        p.add_argument(f"--default-{state}-toleration-seconds", type=int, default=300,
                       metavar="SECONDS",
                       help=f"tolerationSeconds of the {state}:NoExecute toleration added to "
                            "every pod that has none (default 300)")
    p.add_argument("--node-monitor-grace-period", type=_duration, metavar="DURATION", default=40.0,
                   help="how long a silent node's agent may go unheard before the node is "
                        "NotReady (a Go duration or seconds; default 40s)")
    p.add_argument("--node-monitor-period", type=_duration, metavar="DURATION", default=5.0,
                   help="how often nodes are checked (default 5s)")
    p.add_argument("--node-startup-grace-period", type=_duration, metavar="DURATION", default=60.0,
                   help="how long a new node may go without posting its status before it is "
                        "NotReady (default 1m)")
    p.add_argument("--horizontal-pod-autoscaler-sync-period", type=_seconds, default=15.0,
                   metavar="DURATION", help="how often each HPA is synced (default 15s)")
    p.add_argument("--horizontal-pod-autoscaler-downscale-stabilization", type=_seconds,
                   default=300.0, metavar="DURATION", help="how long an HPA without a "
                   "behavior waits before scaling down (default 5m0s)")
    p.set_defaults(fn=cmd_server)

    p = sub.add_parser("scheduler", help="run a scheduler against a local API server "
                       "(netplane server runs one itself)")
    p.add_argument("--socket-path", default="/run/netplane/api.sock")
    p.add_argument("--config", metavar="FILE",
                   help="a KubeSchedulerConfiguration, as kube-scheduler's --config")
    p.set_defaults(fn=cmd_scheduler)

    p = sub.add_parser("agent", help="run the node agent")
    p.add_argument("--server", required=True, help="https://HOST:6443")
    p.add_argument("--token", help="join token (or $NETPLANE_TOKEN)")
    p.add_argument("--ca-file", required=True)
    p.add_argument("--node-name", required=True)
    p.add_argument("--node-ip", required=True)
    p.add_argument("--state-dir", default="/var/lib/netplane/agent")
    p.add_argument("--netns-prefix", default="np-")
    p.add_argument("--proxy-mode", default="iptables", choices=["iptables", "nftables", "ipvs"])
    p.add_argument("--upstream", default="none", help="DNS upstream servers, or none")
    p.add_argument("--cgroup-root", default="",
                   help="the node's cgroups under the agent's own (default netplane/NODE)")
    p.add_argument("--runtime", default="process", choices=["process", "docker"],
                   help="run containers as processes, or in a Docker Engine (default process)")
    p.add_argument("--docker-host", default="", metavar="URL",
                   help="the engine of the docker runtime (unix:///PATH); default: one the "
                        "agent starts in its own network namespace")
    p.set_defaults(fn=cmd_agent)

    from netplane.lab import cli as labcli

    labcli.add_parser(sub)
    for name, action in sub.choices.items():
        if name not in ("server", "agent", "scheduler"):
            _common(action)
    return top


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """Options and the command after ``--``: flags go anywhere before it, as
    kubectl takes them (``exec POD -n NS -- CMD``)."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, command = split_command(argv)
    top = parser()
    args = top.parse_args(own)
    if command and not hasattr(args, "command"):
        top.error(f"{args.verb} takes no command after --")
    if command:
        args.command = [*args.command, *command]
    level = logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.fn(args))
    except CliError as e:
        print(str(e), file=sys.stderr)
        return 1
    except ApiError as e:
        print(f"Error from server ({e.reason or e.code}): {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (head, less) went away: nothing left to tell.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
