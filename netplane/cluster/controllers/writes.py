"""A controller's own writes over its informer's cache, until the cache has
caught up with them (what client-go's controller expectations are for): a
pod just created is seen at once, a pod just deleted is seen going, so a
reconcile that runs before the watch events arrive does not act twice."""

from __future__ import annotations

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.cluster.client import Informer
from netplane.cluster.controllers.shared import owned_by


class OwnWrites:
    def __init__(self, informer: Informer) -> None:
        self.informer = informer
        # key -> (resource version of the write, the object written; None: removed)
        self._notes: dict[str, tuple[int, Obj | None]] = {}

    def wrote(self, obj: Obj) -> None:
        """What a create, update or delete answered with."""
        self._notes[meta.namespaced_name(obj)] = (meta.resource_version(obj), obj)

    def removed(self, obj: Obj) -> None:
        """A delete that removed the object at once (the answer is the last state)."""
        self._notes[meta.namespaced_name(obj)] = (meta.resource_version(obj), None)

    def view(self, cached: list[Obj], owner: Obj) -> list[Obj]:
        """``cached`` (the owner's objects in the cache) with the writes the
        informer has not shown yet laid over it."""
        seen = int(self.informer.resource_version or 0)
        self._notes = {k: note for k, note in self._notes.items() if note[0] > seen}
        out = {meta.namespaced_name(o): o for o in cached}
        for key, (_, obj) in self._notes.items():
            if obj is None:
                out.pop(key, None)
            elif owned_by(obj, owner):
                out[key] = obj
        return list(out.values())
