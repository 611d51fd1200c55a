"""ControllerRevisions, the history DaemonSets and StatefulSets keep of
their pod templates (kube's pkg/controller/history): each revision holds a
strategic merge patch that puts the template back (``$patch: replace``),
which is what ``kubectl rollout undo`` applies, and a number that ``kubectl
rollout history`` lists. A revision is named after its owner and a hash of
its data; a hash already taken by other data is a collision, and the
owner's ``status.collisionCount`` moves the next hash elsewhere."""

from __future__ import annotations

import copy
import json
from typing import Any, Protocol

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.cluster.client import AlreadyExists

HASH_LABEL = "controller-revision-hash"  # on pods, and on DaemonSet revisions
HASH_KEY = "controller.kubernetes.io/hash"  # on StatefulSet revisions
PATCH = "$patch"
# rand.SafeEncodeString's alphabet: no vowels, no look-alike characters.
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_PREFIX = 223  # a revision name stays a valid name with its hash


class History(Protocol):
    """What the history of one owner reads and writes."""

    async def create_revision(self, rev: Obj) -> Obj: ...  # raises AlreadyExists
    async def get_revision(self, namespace: str, name: str) -> Obj: ...
    async def update_revision(self, rev: Obj) -> Obj: ...
    async def delete_revision(self, rev: Obj) -> None: ...


def template_patch(template: Obj) -> Obj:
    """The data of a revision of ``template`` (kube's getPatch)."""
    replaced = copy.deepcopy(template)
    replaced[PATCH] = "replace"
    return {"spec": {"template": replaced}}


def template_of(rev: Obj) -> Obj:
    """The pod template a revision puts back."""
    template = dict(((rev.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop(PATCH, None)
    return copy.deepcopy(template)


def _canonical(value: Any) -> Any:
    """Data as Go's semantic equality compares it: empty maps, lists and
    nulls are the same as absent ones."""
    if isinstance(value, dict):
        out = {k: _canonical(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def same_data(a: Obj, b: Obj) -> bool:
    return bool(_canonical(a.get("data")) == _canonical(b.get("data")))


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def hash_of(value: Any, collisions: int = 0) -> str:
    """A short, name-safe hash of ``value`` (and of the collision count when
    it is not 0), spelt as kube spells its revision hashes."""
    text = json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"))
    if collisions:
        text += f"/{collisions}"
    return "".join(SAFE_ALPHABET[ord(c) % len(SAFE_ALPHABET)]
                   for c in str(fnv32a(text.encode())))


def revision_name(owner: str, hash_: str) -> str:
    return f"{owner[:MAX_PREFIX]}-{hash_}"


def number(rev: Obj) -> int:
    return int(rev.get("revision") or 0)


def sort_revisions(revs: list[Obj]) -> list[Obj]:
    """Oldest first: by number, then creation, then name."""
    return sorted(revs, key=lambda r: (number(r), r["metadata"].get("creationTimestamp", ""),
                                       meta.name(r)))


def next_number(revs: list[Obj]) -> int:
    return max((number(r) for r in revs), default=0) + 1


def new_revision(owner: Obj, *, data: Obj, number_: int, labels: dict[str, str],
                 name: str) -> Obj:
    """A revision owned by ``owner``, carrying its annotations (which hold
    the change-cause ``kubectl rollout history`` shows)."""
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": name, "namespace": meta.namespace(owner),
                         "labels": dict(labels),
                         "annotations": dict(meta.meta(owner).get("annotations") or {}),
                         "ownerReferences": [meta.owner_ref(owner)]},
            "data": data, "revision": number_}


async def create_revision(history: History, owner: Obj, rev: Obj,
                          collisions: int) -> tuple[Obj, int]:
    """kube's CreateControllerRevision: the revision, named by the hash of
    its data, or the one already there with the same data; a name taken by
    other data counts a collision and tries the next hash. Returns the
    revision and the collision count."""
    while True:
        hash_ = hash_of(rev["data"], collisions)
        rev = copy.deepcopy(rev)
        rev["metadata"]["name"] = revision_name(meta.name(owner), hash_)
        rev["metadata"]["labels"][HASH_KEY] = hash_
        try:
            return await history.create_revision(rev), collisions
        except AlreadyExists:
            there = await history.get_revision(meta.namespace(owner), meta.name(rev))
            if same_data(there, rev):
                return there, collisions
            collisions += 1
