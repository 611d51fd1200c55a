"""Renders a pod's /etc/resolv.conf and /etc/hosts, the files the ``process``
runtime binds over the node's in each container's mount namespace."""

from __future__ import annotations

from collections.abc import Sequence

MAX_NAMESERVERS = 3  # what the resolver reads, and what Kubernetes allows


def resolv_conf(*, nameservers: Sequence[str], searches: Sequence[str],
                options: Sequence[str]) -> str:
    """``nameserver``, ``search`` and ``options`` lines, as a pod's resolver sees them."""
    lines = [f"nameserver {ns}" for ns in nameservers[:MAX_NAMESERVERS]]
    if searches:
        lines.append("search " + " ".join(searches))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def cluster_searches(namespace: str, *, domain: str = "cluster.local") -> list[str]:
    """The search path of a pod in ``namespace`` (ClusterFirst DNS policy)."""
    return [f"{namespace}.svc.{domain}", f"svc.{domain}", domain]


def hosts(*, hostname: str, pod_ip: str) -> str:
    """Loopback names plus the pod's own name on its address."""
    return (
        "# netplane-managed hosts file.\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "fe00::0\tip6-mcastprefix\n"
        "fe00::1\tip6-allnodes\n"
        "fe00::2\tip6-allrouters\n"
        f"{pod_ip}\t{hostname}\n"
    )
