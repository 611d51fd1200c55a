"""The ``netplane lab`` verbs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from netplane.lab import failure
from netplane.lab import lab as labmod
from netplane.lab.paths import LabPaths, check_name, lab_from_env


def add_parser(sub: Any) -> None:
    p = sub.add_parser("lab", help="a multi-node cluster on this machine, in namespaces")
    verbs = p.add_subparsers(dest="lab_verb", required=True, metavar="VERB")
    up = verbs.add_parser("up", help="bring up (or repair) a lab")
    up.add_argument("--nodes", type=int, default=2, help="worker nodes (default 2)")
    up.add_argument("--name", "--lab", dest="name", help="lab name, to run labs side by side")
    up.add_argument("--proxy-mode", choices=["iptables", "nftables", "ipvs"],
                    help="how every node's proxy programs Services (default iptables)")
    up.add_argument("--runtime", choices=["process", "docker"],
                    help="the nodes' container runtime (default process; docker: a Docker "
                         "Engine per node); kept for later ups")
    up.add_argument("--node-grace", type=float, metavar="SECONDS",
                    help="how long a silent node stays Ready (the server's "
                         "--node-monitor-grace-period; default 40)")
    up.add_argument("--scheduler-config", type=Path, metavar="FILE",
                    help="a KubeSchedulerConfiguration for the lab's scheduler (profiles, "
                         "plugins, weights); kept for later ups")
    up.add_argument("--toleration-seconds", type=int, metavar="SECONDS",
                    help="how long pods stay on a NotReady or unreachable node (the server's "
                         "--default-*-toleration-seconds; default 300)")
    stop = verbs.add_parser("stop", help="make a worker fail as a machine would: its processes "
                                         "frozen (or killed), its network link down")
    stop.add_argument("node")
    stop.add_argument("--name", "--lab", dest="name", help="lab name")
    stop.add_argument("--kill", action="store_true",
                      help="kill the node's agent and pods instead of freezing them")
    start = verbs.add_parser("start", help="bring a stopped worker back")
    start.add_argument("node")
    start.add_argument("--name", "--lab", dest="name", help="lab name")
    down = verbs.add_parser("down", help="remove a lab and everything it made")
    down.add_argument("--name", "--lab", dest="name", help="lab name")
    ex = verbs.add_parser("exec", help="run a command on a node")
    ex.add_argument("node")
    ex.add_argument("--name", "--lab", dest="name", help="lab name")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(fn=dispatch)


def _say(line: str) -> None:
    print(f"[lab] {line}", flush=True)


def _lab(args: argparse.Namespace) -> LabPaths:
    name = getattr(args, "name", None) or getattr(args, "lab", None)
    return LabPaths(check_name(name)) if name else lab_from_env()


def dispatch(args: argparse.Namespace) -> int:
    try:
        lab = _lab(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        if args.lab_verb == "up":
            workers = labmod.up(lab, nodes=args.nodes, proxy_mode=args.proxy_mode,
                                node_grace=args.node_grace,
                                toleration_seconds=args.toleration_seconds,
                                scheduler_config=args.scheduler_config,
                                runtime=args.runtime, say=_say)
            print(usage(lab, workers))
        elif args.lab_verb == "stop":
            failure.stop(lab, args.node, say=_say,
                         mode=failure.StopMode.KILL if args.kill else failure.StopMode.FREEZE)
        elif args.lab_verb == "start":
            failure.start(lab, args.node, say=_say)
        elif args.lab_verb == "down":
            labmod.down(lab, say=_say)
        elif args.lab_verb == "exec":
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            if not command:
                print("error: give a command: netplane lab exec NODE -- CMD", file=sys.stderr)
                return 1
            labmod.node_exec(lab, args.node, command)
    except labmod.LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def usage(lab: LabPaths, workers: list[str]) -> str:
    flag = "" if lab.name == "default" else f" --lab {lab.name}"
    return f"""
lab {lab.name!r} is up: control + {len(workers)} workers ({', '.join(workers)})
  netplane get nodes -o wide{flag}
  netplane apply -f examples/web.yaml{flag}
  netplane lab exec {workers[0]}{flag} -- ip route
  export KUBECONFIG={lab.kubeconfig}   # then: kubectl get pods -A
  netplane lab down{flag}"""
