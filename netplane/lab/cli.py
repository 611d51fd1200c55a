"""The ``netplane lab`` verbs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from netplane.lab import lab as labmod
from netplane.lab.paths import LabPaths, check_name, lab_from_env


def add_parser(sub: Any) -> None:
    p = sub.add_parser("lab", help="a multi-node cluster on this machine, in namespaces")
    verbs = p.add_subparsers(dest="lab_verb", required=True, metavar="VERB")
    up = verbs.add_parser("up", help="bring up (or repair) a lab")
    up.add_argument("--nodes", type=int, default=2, help="worker nodes (default 2)")
    up.add_argument("--name", "--lab", dest="name", help="lab name, to run labs side by side")
    up.add_argument("--proxy-mode", default="iptables", choices=["iptables", "nftables", "ipvs"],
                    help="how every node's proxy programs Services (default iptables)")
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
            workers = labmod.up(lab, nodes=args.nodes, proxy_mode=args.proxy_mode, say=_say)
            print(usage(lab, workers))
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
