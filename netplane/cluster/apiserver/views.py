"""Kinds served under two group-versions but stored once: events.k8s.io/v1
Events are v1 Events with other field names; autoscaling/v1
HorizontalPodAutoscalers are the stored v2 ones with a CPU target only; and
every served version of a custom kind is a view of its one stored form. The
view converts on the way in and out, so every spelling sees, writes and
watches the same objects."""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator
from typing import Any

from netplane.api import autoscaling, eventsv1, resources
from netplane.api.deletion import DeleteOptions
from netplane.api.meta import Obj
from netplane.api.resources import Resource
from netplane.cluster.apiserver import customresources, status
from netplane.cluster.apiserver.patch import (
    JSON_PATCH,
    STRATEGIC,
    JSONPatchError,
    json_patch,
    merge_patch,
)
from netplane.cluster.apiserver.registry import Query, Registry

CORE = resources.EVENT
HPA = resources.HORIZONTALPODAUTOSCALER


class EventsV1(Registry):
    """The Registry's verbs for ``events.k8s.io/v1`` Events."""

    def __init__(self, inner: Registry) -> None:  # a view: no store of its own
        self.inner = inner
        self.store = inner.store
        self.admission = inner.admission

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        return eventsv1.from_core(self.inner.get(CORE, namespace, name))

    def list(self, res: Resource, query: Query) -> tuple[list[Obj], int]:
        items, rev = self.inner.list(CORE, query)
        return [eventsv1.from_core(i) for i in items], rev

    def create(self, res: Resource, namespace: str | None, body: Obj, *,
               dry_run: bool = False, manager: str = "") -> Obj:
        return eventsv1.from_core(self.inner.create(CORE, namespace, _to_core(body),
                                                    dry_run=dry_run, manager=manager))

    def update(self, res: Resource, namespace: str | None, name: str, body: Obj, *,
               subresource: str = "", dry_run: bool = False, manager: str = "") -> Obj:
        return eventsv1.from_core(self.inner.update(CORE, namespace, name, _to_core(body),
                                                    dry_run=dry_run, manager=manager))

    def patch(self, res: Resource, namespace: str | None, name: str, patch: Any,
              content_type: str, *, subresource: str = "", dry_run: bool = False,
              manager: str = "") -> Obj:
        """The patch applies to the events.k8s.io form, then is written as v1."""
        patched = _patched(self.get(res, namespace, name), patch, content_type)
        return self.update(res, namespace, name, patched, dry_run=dry_run, manager=manager)

    def apply(self, res: Resource, namespace: str | None, name: str, body: Any, *,
              manager: str, force: bool = False, subresource: str = "",
              dry_run: bool = False) -> tuple[Obj, bool]:
        raise status.ApiError(415, "UnsupportedMediaType", "server-side apply of "
                              "events.k8s.io/v1 Events is not supported; apply v1 Events")

    def delete(self, res: Resource, namespace: str | None, name: str, *,
               grace_period: int | None = None, dry_run: bool = False,
               options: DeleteOptions | None = None) -> Obj:
        return eventsv1.from_core(self.inner.delete(CORE, namespace, name, dry_run=dry_run,
                                                    options=options))

    def delete_collection(self, res: Resource, query: Query, *, grace_period: int | None = None,
                          dry_run: bool = False,
                          options: DeleteOptions | None = None) -> builtins.list[Obj]:
        return [eventsv1.from_core(o) for o in self.inner.delete_collection(
            CORE, query, dry_run=dry_run, options=options)]

    async def watch(self, res: Resource, query: Query,
                    resource_version: str | None) -> AsyncGenerator[tuple[str, Obj], None]:
        events = self.inner.watch(CORE, query, resource_version)
        try:
            async for kind, obj in events:
                yield kind, eventsv1.from_core(obj)
        finally:
            await events.aclose()


class AutoscalingV1(Registry):
    """The Registry's verbs for ``autoscaling/v1`` HorizontalPodAutoscalers."""

    def __init__(self, inner: Registry) -> None:  # a view: no store of its own
        self.inner = inner
        self.store = inner.store
        self.admission = inner.admission

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        return autoscaling.to_v1(self.inner.get(HPA, namespace, name))

    def list(self, res: Resource, query: Query) -> tuple[list[Obj], int]:
        items, rev = self.inner.list(HPA, query)
        return [autoscaling.to_v1(i) for i in items], rev

    def create(self, res: Resource, namespace: str | None, body: Obj, *,
               dry_run: bool = False, manager: str = "") -> Obj:
        return autoscaling.to_v1(self.inner.create(HPA, namespace, _to_v2(body, None),
                                                   dry_run=dry_run, manager=manager))

    def update(self, res: Resource, namespace: str | None, name: str, body: Obj, *,
               subresource: str = "", dry_run: bool = False, manager: str = "") -> Obj:
        stored = self.inner.get(HPA, namespace, name)
        return autoscaling.to_v1(self.inner.update(
            HPA, namespace, name, _to_v2(body, stored), subresource=subresource,
            dry_run=dry_run, manager=manager))

    def patch(self, res: Resource, namespace: str | None, name: str, patch: Any,
              content_type: str, *, subresource: str = "", dry_run: bool = False,
              manager: str = "") -> Obj:
        """The patch applies to the v1 form, then is written as v2."""
        patched = _patched(self.get(res, namespace, name), patch, content_type)
        return self.update(res, namespace, name, patched, subresource=subresource,
                           dry_run=dry_run, manager=manager)

    def apply(self, res: Resource, namespace: str | None, name: str, body: Any, *,
              manager: str, force: bool = False, subresource: str = "",
              dry_run: bool = False) -> tuple[Obj, bool]:
        raise status.ApiError(415, "UnsupportedMediaType", "server-side apply of "
                              "autoscaling/v1 HorizontalPodAutoscalers is not supported; "
                              "apply autoscaling/v2")

    def delete(self, res: Resource, namespace: str | None, name: str, *,
               grace_period: int | None = None, dry_run: bool = False,
               options: DeleteOptions | None = None) -> Obj:
        return autoscaling.to_v1(self.inner.delete(HPA, namespace, name, dry_run=dry_run,
                                                   options=options))

    def delete_collection(self, res: Resource, query: Query, *, grace_period: int | None = None,
                          dry_run: bool = False,
                          options: DeleteOptions | None = None) -> builtins.list[Obj]:
        return [autoscaling.to_v1(o) for o in self.inner.delete_collection(
            HPA, query, dry_run=dry_run, options=options)]

    async def watch(self, res: Resource, query: Query,
                    resource_version: str | None) -> AsyncGenerator[tuple[str, Obj], None]:
        events = self.inner.watch(HPA, query, resource_version)
        try:
            async for kind, obj in events:
                yield kind, autoscaling.to_v1(obj)
        finally:
            await events.aclose()


class CustomObjects(Registry):
    """The Registry's verbs for one served version of a custom kind: the
    registry judges what is written by this version's schema and stores it
    in the storage version; each version shows the objects with its own
    apiVersion and defaults (conversion strategy None)."""

    def __init__(self, inner: Registry, res: Resource) -> None:  # a view: no store of its own
        self.inner = inner
        self.store = inner.store
        self.admission = inner.admission
        self.custom = inner.custom
        self.writes = inner.writes
        self.served = inner.custom.about(res)

    def _out(self, obj: Obj) -> Obj:
        return customresources.as_version(obj, self.served)

    def _shared_out(self, obj: Obj) -> Obj:
        return customresources.as_version(obj, self.served, shared=True)

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        return self._out(self.inner.get(res, namespace, name))

    def list(self, res: Resource, query: Query) -> tuple[list[Obj], int]:
        items, rev = self.inner.list(res, query)
        return [self._out(i) for i in items], rev

    def create(self, res: Resource, namespace: str | None, body: Obj, *,
               dry_run: bool = False, manager: str = "") -> Obj:
        return self._out(self.inner.create(res, namespace, body, dry_run=dry_run,
                                           manager=manager))

    def update(self, res: Resource, namespace: str | None, name: str, body: Obj, *,
               subresource: str = "", dry_run: bool = False, manager: str = "") -> Obj:
        return self._out(self.inner.update(res, namespace, name, body,
                                           subresource=subresource, dry_run=dry_run,
                                           manager=manager))

    def patch(self, res: Resource, namespace: str | None, name: str, patch: Any,
              content_type: str, *, subresource: str = "", dry_run: bool = False,
              manager: str = "") -> Obj:
        if content_type == STRATEGIC:
            raise status.ApiError(415, "UnsupportedMediaType", "strategic merge patch is not "
                                  "supported for custom resources; use a merge or JSON patch")
        return self._out(self.inner.patch(res, namespace, name, patch, content_type,
                                          subresource=subresource, dry_run=dry_run,
                                          manager=manager))

    def apply(self, res: Resource, namespace: str | None, name: str, body: Any, *,
              manager: str, force: bool = False, subresource: str = "",
              dry_run: bool = False) -> tuple[Obj, bool]:
        obj, created = self.inner.apply(res, namespace, name, body, manager=manager,
                                        force=force, subresource=subresource, dry_run=dry_run)
        return self._out(obj), created

    def delete(self, res: Resource, namespace: str | None, name: str, *,
               grace_period: int | None = None, dry_run: bool = False,
               options: DeleteOptions | None = None) -> Obj:
        return self._out(self.inner.delete(res, namespace, name,
                                           grace_period=grace_period, dry_run=dry_run,
                                           options=options))

    def delete_collection(self, res: Resource, query: Query, *, grace_period: int | None = None,
                          dry_run: bool = False,
                          options: DeleteOptions | None = None) -> builtins.list[Obj]:
        return [self._out(o) for o in self.inner.delete_collection(
            res, query, grace_period=grace_period, dry_run=dry_run, options=options)]

    async def watch(self, res: Resource, query: Query,
                    resource_version: str | None) -> AsyncGenerator[tuple[str, Obj], None]:
        events = self.inner.watch(res, query, resource_version)
        try:
            async for kind, obj in events:
                yield kind, self._shared_out(obj)
        finally:
            await events.aclose()


def _patched(current: Obj, patch: Any, content_type: str) -> Obj:
    try:
        patched = json_patch(current, patch) if content_type == JSON_PATCH else \
            merge_patch(current, patch, strategic=content_type == STRATEGIC)
    except JSONPatchError as e:
        raise status.ApiError(422, "Invalid", str(e)) from None
    if not isinstance(patched, dict):
        raise status.bad_request("the patch must produce an object")
    return patched


def _to_v2(body: Any, stored: Obj | None) -> Obj:
    if not isinstance(body, dict):
        raise status.bad_request("the body must be an autoscaling/v1 HorizontalPodAutoscaler")
    return autoscaling.from_v1(body, stored)


def _to_core(body: Any) -> Obj:
    if not isinstance(body, dict):
        raise status.bad_request("the body must be an events.k8s.io/v1 Event")
    return eventsv1.to_core(body)


def for_resource(registry: Registry, res: Resource) -> Registry:
    """The registry that serves ``res``: a view where the kind is stored as another."""
    if res is resources.EVENT_V1:
        return EventsV1(registry)
    if res is resources.HORIZONTALPODAUTOSCALER_V1:
        return AutoscalingV1(registry)
    if res.custom:
        return CustomObjects(registry, res)
    return registry
