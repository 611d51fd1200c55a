"""The DefaultTolerationSeconds admission plugin (kube's
plugin/pkg/admission/defaulttolerationseconds): a new pod that does not
tolerate the node lifecycle controller's not-ready and unreachable NoExecute
taints gets tolerations for them, bounded by ``tolerationSeconds``, so that
its pods leave a failed node after that long rather than at once."""

from __future__ import annotations

from dataclasses import dataclass

from netplane.api import scheduling
from netplane.api.meta import Obj

DEFAULT_SECONDS = 300  # kube-apiserver's --default-*-toleration-seconds


@dataclass(frozen=True)
class DefaultTolerationSeconds:
    not_ready: int = DEFAULT_SECONDS
    unreachable: int = DEFAULT_SECONDS


KUBE_DEFAULTS = DefaultTolerationSeconds()


def _tolerates_key(tolerations: list[Obj], key: str) -> bool:
    """As kube's plugin judges it: an empty key or effect counts as a match,
    whatever the operator or value."""
    return any((t.get("key") or key) == key
               and (t.get("effect") or scheduling.NO_EXECUTE) == scheduling.NO_EXECUTE
               for t in tolerations if isinstance(t, dict))


def add_default_tolerations(pod: Obj, seconds: DefaultTolerationSeconds) -> None:
    spec = pod.setdefault("spec", {})
    tolerations = spec.get("tolerations") or []
    for key, after in ((scheduling.NOT_READY, seconds.not_ready),
                       (scheduling.UNREACHABLE, seconds.unreachable)):
        if not _tolerates_key(tolerations, key):
            tolerations.append({"key": key, "operator": "Exists",
                                "effect": scheduling.NO_EXECUTE, "tolerationSeconds": after})
    spec["tolerations"] = tolerations
