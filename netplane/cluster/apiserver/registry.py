"""Object operations over the store: create, get, list, update, patch,
delete and watch, with defaulting, validation, admission (allocators) and the
status-subresource and graceful-deletion rules of Kubernetes."""

from __future__ import annotations

import builtins
import collections
import copy
import secrets
import string
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from netplane.api import (
    customresources,
    decoding,
    defaults,
    meta,
    priority,
    resources,
    schema,
    signing,
    storage,
    structural,
    typed,
    validation,
)
from netplane.api.deletion import DeleteOptions, Propagation
from netplane.api.meta import Obj
from netplane.api.resources import Resource
from netplane.api.selectors import EVERYTHING, NO_FIELDS, FieldSelector, Selector
from netplane.cluster.apiserver import admission, deleting, fieldmanager, requester, status
from netplane.cluster.apiserver.customresources import CLEANUP_FINALIZER, Catalog
from netplane.cluster.apiserver.patch import JSONPatchError, apply_patch
from netplane.cluster.apiserver.tolerations import KUBE_DEFAULTS, DefaultTolerationSeconds
from netplane.cluster.store import base as store_base
from netplane.cluster.store.base import EventType, KeyValue, Store

# Kinds whose status is written through the /status subresource only.
STATUS_KINDS = {"Pod", "Node", "Service", "Deployment", "ReplicaSet", "Namespace", "Job",
                "CronJob", "PersistentVolume", "PersistentVolumeClaim", "DaemonSet",
                "StatefulSet", "PodDisruptionBudget", "HorizontalPodAutoscaler",
                "CustomResourceDefinition", "CertificateSigningRequest"}
# Kinds whose metadata.generation counts the changes of their spec.
GENERATION_KINDS = {"Deployment", "ReplicaSet", "Job", "CronJob", "DaemonSet", "StatefulSet",
                    "PodDisruptionBudget", "CustomResourceDefinition"}
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
CRD = resources.CUSTOMRESOURCEDEFINITION
CSR = resources.CERTIFICATESIGNINGREQUEST
PROTECTED_NAMESPACES = {"default", "kube-system", "kube-public"}
# How a namespace's contents go when it is deleted, as kube's namespace controller does it.
NAMESPACE_CONTENT = DeleteOptions(grace_period=0, propagation=Propagation.BACKGROUND)


@dataclass(frozen=True)
class Query:
    namespace: str | None = None
    labels: Selector = EVERYTHING
    fields: FieldSelector = NO_FIELDS

    def matches(self, obj: Obj) -> bool:
        return self.labels.matches(meta.labels(obj)) and self.fields.matches(obj)


def _noop() -> None:
    pass


def _expected(written: Any) -> int | None:
    """The revision an update is conditional on; None: unconditional."""
    if written in (None, "", "0", 0):
        return None
    if not str(written).isdigit():
        raise status.bad_request(f"metadata.resourceVersion must be a number, not {written!r}")
    return int(written)


def _prune(res: Resource, obj: Obj, served: customresources.Served | None = None) -> None:
    """Unknown fields go, as kube-apiserver drops them when it decodes."""
    if served is not None:
        structural.prune(obj, served.schema)
        if isinstance(obj.get("metadata"), dict):
            schema.prune(obj["metadata"], OBJECT_META)
        return
    name = schema.definition_name(res.group, res.version, res.kind)
    if name is not None:
        schema.prune(obj, name)


def _changed(res: Resource, old: Obj, new: Obj) -> bool:
    """Whether an update moves metadata.generation: the spec changed, or for
    a custom object anything outside its metadata (kube's customResourceStrategy)."""
    if not res.custom:
        return new.get("spec") != old.get("spec")
    return {k: v for k, v in new.items() if k not in ("metadata", "apiVersion")} != \
        {k: v for k, v in old.items() if k not in ("metadata", "apiVersion")}


def _refuse_new_finalizers(res: Resource, old: Obj, new: Obj) -> None:
    added = deleting.new_finalizers_error(old, new)
    if added:
        raise status.invalid(res.kind, meta.name(old), [validation.FieldError(
            "metadata.finalizers", f"Forbidden: {added}", "FieldValueForbidden")])


def key_for(res: Resource, namespace: str | None, name: str = "") -> str:
    group = res.group or "core"
    if res.namespaced:
        return f"/registry/{group}/{res.plural}/{namespace or ''}/{name}"
    return f"/registry/{group}/{res.plural}/{name}"


def prefix_for(res: Resource, namespace: str | None) -> str:
    group = res.group or "core"
    if res.namespaced and namespace:
        return f"/registry/{group}/{res.plural}/{namespace}/"
    return f"/registry/{group}/{res.plural}/"


def _json_copy(value: Any) -> Any:
    """A deep copy of decoded JSON (dicts, lists, scalars): copy.deepcopy's
    result, several times faster."""
    if isinstance(value, dict):
        return {k: _json_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_copy(v) for v in value]
    return value


def _out(kv: KeyValue) -> Obj:
    obj: Obj = _json_copy(kv.value)
    meta.meta(obj)["resourceVersion"] = str(kv.mod_revision)
    return obj


def _read(kv: KeyValue) -> Obj:
    """``_out`` without the copy, for the store's get and list: their values
    are decoded anew for each call, so the caller owns them."""
    meta.meta(kv.value)["resourceVersion"] = str(kv.mod_revision)
    return kv.value


def _written(obj: Obj, kv: KeyValue) -> Obj:
    """The object just written, as the response carries it: the store holds
    its own copy (``_stored``), so ``obj`` needs none."""
    meta.meta(obj)["resourceVersion"] = str(kv.mod_revision)
    return obj


def _stored(obj: Obj) -> Obj:
    obj = _json_copy(obj)
    meta.meta(obj).pop("resourceVersion", None)
    return obj


class Registry:
    def __init__(self, store: Store, allocators: admission.Allocators, *,
                 toleration_seconds: DefaultTolerationSeconds = KUBE_DEFAULTS,
                 ) -> None:
        self.store = store
        # Writes so far by kind: a cache of one kind (RBAC's rules) is stale
        # only when a write of that kind went through here.
        self.writes: collections.Counter[str] = collections.Counter()
        self.admission = admission.Admission(allocators,
                                             toleration_seconds=toleration_seconds)
        self.admission.recover(self._all(resources.SERVICE), self._all(resources.NODE))
        self.custom = Catalog(store, lambda: self.writes[CRD.kind])

    def _all(self, res: Resource) -> list[Obj]:
        return [_out(kv) for kv in self.store.list(prefix_for(res, None))[0]]

    # -- reads --

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        kv = self.store.get(key_for(res, namespace, name))
        if kv is None:
            raise status.not_found(res.plural, name, group=res.group)
        return _read(kv)

    def list(self, res: Resource, query: Query) -> tuple[list[Obj], int]:
        kvs, rev = self.store.list(prefix_for(res, query.namespace))
        items = [o for o in (_read(kv) for kv in kvs) if query.matches(o)]
        return items, rev

    # -- writes --

    def create(self, res: Resource, namespace: str | None, body: Obj, *,
               dry_run: bool = False, manager: str = "") -> Obj:
        obj = self._prepare_new(res, namespace, body)
        self._require_namespace(res, obj)
        served = self._served(res)
        if served is not None and meta.meta(self._definition_of(res) or {}).get(
                "deletionTimestamp"):
            raise status.ApiError(405, "MethodNotAllowed", "create not allowed while custom "
                                  "resource definition is terminating")
        _prune(res, obj, served)
        self._default(res, obj, served)
        if served is not None and served.status:
            obj.pop("status", None)  # written through /status only
        if res is CRD:
            customresources.defaults(obj)
        if res is resources.PERSISTENTVOLUMECLAIM:
            self._default_storage_class(obj)
        elif res is resources.POD:
            self._admit_priority(obj)
        elif res is resources.PRIORITYCLASS:
            self._one_default_class(obj, creating=True)
        elif res is CSR:
            who = requester.current()
            signing.prepare_for_create(obj, who.user if who else None)
        self._validate(res, obj)
        if res is CSR and (why := signing.restricted_subject(obj)):
            raise status.forbidden(res.plural, meta.name(obj), why, group=res.group)
        if res is CRD:
            obj.pop("status", None)
            customresources.set_status(obj, self.custom.taken_names(meta.name(obj)))
        fieldmanager.track(res, None, obj, manager=manager, node=self._node(res))
        # An existing name is AlreadyExists, before admission calls its ClusterIP taken.
        if self.store.get(key_for(res, meta.namespace(obj), meta.name(obj))) is not None:
            raise status.already_exists(res.plural, meta.name(obj), group=res.group)
        undo = self.admission.on_create(res, obj)
        if dry_run:
            undo()
            if self.store.get(key_for(res, meta.namespace(obj), meta.name(obj))) is not None:
                raise status.already_exists(res.plural, meta.name(obj), group=res.group)
            return obj
        try:
            kv = self.store.create(key_for(res, meta.namespace(obj), meta.name(obj)), _stored(obj))
            self.writes[res.kind] += 1
        except store_base.AlreadyExists:
            undo()
            raise status.already_exists(res.plural, meta.name(obj), group=res.group) from None
        except BaseException:
            undo()
            raise
        return _written(obj, kv)

    def _default_storage_class(self, pvc: Obj) -> None:
        """The DefaultStorageClass admission plugin: a claim that names no
        class (the field absent, not "") gets the default one."""
        spec = pvc.get("spec")
        if not isinstance(spec, dict) or spec.get("storageClassName") is not None:
            return
        kvs, _ = self.store.list(prefix_for(resources.STORAGECLASS, None))
        found = storage.default_class([_read(kv) for kv in kvs])
        if found is not None:
            spec["storageClassName"] = meta.name(found)

    def _priority_classes(self) -> dict[str, Obj]:
        kvs, _ = self.store.list(prefix_for(resources.PRIORITYCLASS, None))
        return {meta.name(o): o for o in (_read(kv) for kv in kvs)}

    def _admit_priority(self, pod: Obj) -> None:
        """The Priority admission plugin: the pod's priority from its class."""
        try:
            priority.admit_pod(pod, self._priority_classes())
        except priority.Refused as e:
            raise status.forbidden("pods", meta.name(pod), str(e)) from None

    def _one_default_class(self, pc: Obj, *, creating: bool) -> None:
        """The Priority admission plugin on classes: one global default at most."""
        if not pc.get("globalDefault"):
            return
        found = priority.default_class(self._priority_classes().values())
        if found is not None and (creating or meta.name(found) != meta.name(pc)):
            raise status.forbidden(
                resources.PRIORITYCLASS.plural, meta.name(pc),
                f"PriorityClass {meta.name(found)} is already marked as default. Only one "
                "default can exist", group=resources.PRIORITYCLASS.group)

    def update(self, res: Resource, namespace: str | None, name: str, body: Obj, *,
               subresource: str = "", dry_run: bool = False, manager: str = "") -> Obj:
        old = self.get(res, namespace, name)
        self._check_identity(res, namespace, name, body)
        new = self._merge_update(res, old, body, subresource)
        fieldmanager.track(res, old, new, manager=manager, subresource=subresource,
                           node=self._node(res))
        return self._admit_and_write(res, old, new, dry_run=dry_run, expected=_expected(
            (body.get("metadata") or {}).get("resourceVersion")))

    def patch(self, res: Resource, namespace: str | None, name: str, patch: Any,
              content_type: str, *, subresource: str = "", dry_run: bool = False,
              manager: str = "") -> Obj:
        old = self.get(res, namespace, name)
        try:
            patched = apply_patch(old, patch, content_type)
        except JSONPatchError as e:
            raise status.ApiError(422, "Invalid", str(e)) from None
        if not isinstance(patched, dict):
            raise status.bad_request("the patch must produce an object")
        self._check_identity(res, namespace, name, patched)
        new = self._merge_update(res, old, patched, subresource)
        fieldmanager.track(res, old, new, manager=manager, subresource=subresource,
                           node=self._node(res))
        wanted = (patch.get("metadata") or {}).get("resourceVersion") \
            if isinstance(patch, dict) else None
        if wanted is not None and not str(wanted).isdigit():
            raise status.bad_request(f"metadata.resourceVersion must be a number, not {wanted!r}")
        return self._admit_and_write(res, old, new, dry_run=dry_run,
                                     expected=int(wanted) if wanted else None)

    def apply(self, res: Resource, namespace: str | None, name: str, body: Any, *,
              manager: str, force: bool = False, subresource: str = "",
              dry_run: bool = False) -> tuple[Obj, bool]:
        """Server-side apply; the object is created when it does not exist
        (the second value says so), as kube-apiserver does."""
        if isinstance(body, dict):
            self._check_identity(res, namespace, name, body)
        kv = self.store.get(key_for(res, namespace, name))
        if kv is None:
            if subresource:
                raise status.not_found(res.plural, name, group=res.group)
            obj = fieldmanager.apply(res, None, body, manager=manager, force=force,
                                     node=self._node(res))
            meta.meta(obj)["name"] = name
            return self.create(res, namespace, obj, dry_run=dry_run), True
        old = _out(kv)
        obj = fieldmanager.apply(res, old, body, manager=manager, force=force,
                                 node=self._node(res),
                                 subresource=subresource)
        new = self._merge_update(res, old, obj, subresource)
        # A subresource write keeps the old metadata; the apply's entries go in.
        meta.meta(new).pop("managedFields", None)
        meta.meta(new).update({k: v for k, v in meta.meta(obj).items() if k == "managedFields"})
        expected = meta.resource_version(body) or meta.resource_version(old)
        return self._admit_and_write(res, old, new, dry_run=dry_run, expected=expected), False

    def _admit_and_write(self, res: Resource, old: Obj, new: Obj, *, dry_run: bool,
                         expected: int | None) -> Obj:
        """Allocations an update needs are taken just before the write, and
        given back if the write fails (or when only trying, with dryRun)."""
        undo, commit = _noop, _noop
        if res is resources.SERVICE:
            undo, commit = self.admission.service_update(old, new)
        if dry_run:
            undo()
            return new
        try:
            out = self._write(res, old, new, expected=expected)
        except BaseException:
            undo()
            raise
        commit()
        return out

    def bind(self, namespace: str, name: str, binding: Obj) -> Obj:
        """The pods/binding subresource: the only way to set spec.nodeName."""
        node = (binding.get("target") or {}).get("name")
        if not node:
            raise status.invalid("Binding", name, [validation.FieldError(
                "target.name", "Required value", "FieldValueRequired")])
        pod = self.get(resources.POD, namespace, name)
        if pod["spec"].get("nodeName"):
            raise status.ApiError(409, "Conflict", f'pod {name} is already assigned to node '
                                  f'"{pod["spec"]["nodeName"]}"')
        pod["spec"]["nodeName"] = node
        meta.set_condition(pod, "PodScheduled", True)
        return self._write(resources.POD, None, pod, expected=meta.resource_version(pod))

    def delete(self, res: Resource, namespace: str | None, name: str, *,
               grace_period: int | None = None, dry_run: bool = False,
               options: DeleteOptions | None = None) -> Obj:
        """Remove the object, or mark it deleted until its finalizers (and,
        for a pod, its node) let it go; ``options`` as a DELETE's body has them."""
        opts = options or DeleteOptions(grace_period=grace_period, dry_run=dry_run)
        if res is resources.PRIORITYCLASS and name in priority.SYSTEM_CLASSES:
            # kube's PriorityClass storage names the class where the resource goes.
            raise status.forbidden(name, "", "this is a system priority class and cannot be "
                                   "deleted", group=res.group)
        for _ in range(3):  # the object changed between read and write: decide again
            try:
                return self._delete_once(res, namespace, name, opts)
            except store_base.Conflict:
                continue
            except store_base.NotFound:
                raise status.not_found(res.plural, name, group=res.group) from None
        raise status.conflict(res.plural, name, group=res.group)

    def _delete_once(self, res: Resource, namespace: str | None, name: str,
                     opts: DeleteOptions) -> Obj:
        obj = self.get(res, namespace, name)
        deleting.check_preconditions(res, obj, opts)
        if res.kind == "Namespace":
            return obj if opts.dry_run else self._delete_namespace(obj)
        if res is CRD and not opts.dry_run:
            return self._delete_definition(obj, opts)
        outcome = deleting.plan(res, obj, opts)
        if opts.dry_run or outcome.step is deleting.Step.KEEP:
            return outcome.obj
        if outcome.step is deleting.Step.REMOVE:
            return self._remove(res, obj, expected=meta.resource_version(obj))
        kv = self.store.update(key_for(res, meta.namespace(obj), meta.name(obj)),
                               _stored(outcome.obj), expected_revision=meta.resource_version(obj))
        self.writes[res.kind] += 1
        return _written(outcome.obj, kv)

    def delete_collection(self, res: Resource, query: Query, *, grace_period: int | None = None,
                          dry_run: bool = False,
                          options: DeleteOptions | None = None) -> builtins.list[Obj]:
        """DELETE on a collection: every object the selectors match."""
        out = []
        for item in self.list(res, query)[0]:
            try:
                out.append(self.delete(res, meta.namespace(item) or None, meta.name(item),
                                       grace_period=grace_period, dry_run=dry_run,
                                       options=options))
            except status.ApiError as e:
                if e.code != 404:
                    raise
        return out

    # -- watch --

    async def watch(self, res: Resource, query: Query,
                    resource_version: str | None) -> AsyncGenerator[tuple[str, Obj], None]:
        if not resource_version or resource_version == "0":
            items, rev = self.list(res, query)
            for item in items:
                yield "ADDED", item
        else:
            rev = int(resource_version)
        try:
            events = self.store.watch(prefix_for(res, query.namespace), rev)
            async for ev in events:
                out = self._filter(ev, query)
                if out is not None:
                    yield out
        except store_base.Compacted as e:
            raise status.gone(f"too old resource version: {resource_version} ({e})") from None

    @staticmethod
    def _filter(ev: store_base.Event, query: Query) -> tuple[str, Obj] | None:
        # One copy for all the watches that get this event: they only read it
        # (and the handler encodes it once for all of them, by identity).
        obj: Obj | None = ev.shared.get("object")
        if obj is None:
            obj = ev.shared["object"] = _out(ev.kv)
        was = ev.prev is not None and query.matches(ev.prev)
        now = ev.type != EventType.DELETED and query.matches(obj)
        if ev.type == EventType.DELETED:
            return ("DELETED", obj) if was else None
        if ev.type == EventType.ADDED:
            return ("ADDED", obj) if now else None
        if was and now:
            return "MODIFIED", obj
        if now:
            return "ADDED", obj
        return ("DELETED", obj) if was else None

    # -- internals --

    def _prepare_new(self, res: Resource, namespace: str | None, body: Obj) -> Obj:
        if body.get("kind") not in (None, res.kind):
            raise status.bad_request(f"the kind {body.get('kind')!r} does not match the "
                                     f"resource {res.plural!r} of this path")
        # A custom object keeps its nulls: its schema says which may be null.
        obj: Obj = _json_copy(body) if res.custom else decoding.without_nulls(body)
        obj["kind"], obj["apiVersion"] = res.kind, self._stored_version(res)
        md = meta.meta(obj)
        if res.namespaced:
            if md.get("namespace") and namespace and md["namespace"] != namespace:
                raise status.bad_request(
                    f"the namespace of the object ({md['namespace']}) does not match the "
                    f"namespace on the request ({namespace})")
            md["namespace"] = namespace or md.get("namespace") or "default"
        else:
            md.pop("namespace", None)
        if not md.get("name") and md.get("generateName"):
            suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits)
                             for _ in range(5))
            md["name"] = f"{md['generateName']}{suffix}"
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            md.pop(k, None)
        md["uid"] = meta.new_uid()
        md["creationTimestamp"] = meta.now()
        if ("spec" in obj and res.kind in GENERATION_KINDS) or res.custom:
            md["generation"] = 1
        return obj

    def _require_namespace(self, res: Resource, obj: Obj) -> None:
        if not res.namespaced:
            return
        ns = self.store.get(key_for(resources.NAMESPACE, None, meta.namespace(obj)))
        if ns is None:
            raise status.not_found("namespaces", meta.namespace(obj))
        if ns.value.get("metadata", {}).get("deletionTimestamp"):
            raise status.ApiError(403, "Forbidden", f'unable to create new content in namespace '
                                  f'{meta.namespace(obj)} because it is being terminated')

    def _served(self, res: Resource) -> customresources.Served | None:
        return self.custom.about(res) if res.custom else None

    def _node(self, res: Resource) -> typed.Node | None:
        """A custom kind's schema as the field manager walks it."""
        return self.custom.node(res) if res.custom else None

    def _stored_version(self, res: Resource) -> str:
        """The apiVersion written: a custom kind's storage version's."""
        return self.custom.storage(res).api_version if res.custom else res.api_version

    @staticmethod
    def _default(res: Resource, obj: Obj, served: customresources.Served | None) -> None:
        if served is not None:
            structural.default(obj, served.schema)
        else:
            defaults.apply(obj)

    def _validate(self, res: Resource, obj: Obj) -> None:
        served = self._served(res)
        if served is not None:
            errs = validation.validate_metadata(obj, res) + structural.validate(obj,
                                                                               served.schema)
        elif res is CRD:
            errs = validation.validate_metadata(obj, res) + customresources.validate(obj)
        else:
            errs = validation.validate(obj, res)
        if errs:
            raise status.invalid(res.kind, meta.name(obj), errs, group=res.group)

    @staticmethod
    def _check_identity(res: Resource, namespace: str | None, name: str, body: Obj) -> None:
        md = body.get("metadata") or {}
        if md.get("name") not in (None, name):
            raise status.bad_request(f"the name of the object ({md.get('name')}) does not "
                                     f"match the name on the URL ({name})")
        if res.namespaced and md.get("namespace") not in (None, namespace):
            raise status.bad_request(f"the namespace of the object ({md.get('namespace')}) "
                                     f"does not match the namespace on the URL ({namespace})")

    def _merge_update(self, res: Resource, old: Obj, body: Obj, subresource: str) -> Obj:
        new: Obj = _json_copy(body) if res.custom else decoding.without_nulls(body)
        served = self._served(res)
        new["kind"], new["apiVersion"] = res.kind, self._stored_version(res)
        md = meta.meta(new)
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "namespace", "name", "generation"):
            if k in old["metadata"]:
                md[k] = old["metadata"][k]
            else:
                md.pop(k, None)
        if res is CSR:
            return self._merge_certificate_request(old, new, subresource)
        if subresource == "status":
            out = copy.deepcopy(old)
            out["status"] = new.get("status", {})
            _prune(res, out, served)
            if served is not None:
                self._default(res, out, served)
            if res is CRD:
                customresources.set_status(out, self.custom.taken_names(meta.name(out)))
            self._validate(res, out)
            return out
        _refuse_new_finalizers(res, old, new)
        if self._has_status(res, served):
            if served is not None:  # a custom object's status only ever comes from /status
                new.pop("status", None)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        _prune(res, new, served)
        self._default(res, new, served)
        if res is CRD:
            customresources.defaults(new)
            if errs := customresources.update_errors(old, new):
                raise status.invalid(res.kind, meta.name(new), errs, group=res.group)
        if "generation" in old["metadata"] and _changed(res, old, new):
            md["generation"] = int(old["metadata"]["generation"]) + 1
        self.admission.on_update(res, old, new)
        if res is resources.PRIORITYCLASS:
            if errs := priority.update_errors(old, new):
                raise status.invalid(res.kind, meta.name(new), errs, group=res.group)
            self._one_default_class(new, creating=False)
        self._validate(res, new)
        if res is CRD:
            customresources.set_status(new, self.custom.taken_names(meta.name(new)))
        return new

    def _merge_certificate_request(self, old: Obj, new: Obj, subresource: str) -> Obj:
        """A CertificateSigningRequest's update: each of its three ways of
        writing changes only its part; approving needs ``approve`` on the
        signer, signing ``sign`` (kube's certificate admission)."""
        write = signing.Write(subresource)
        if write is signing.Write.OBJECT:
            _refuse_new_finalizers(CSR, old, new)
        else:  # a subresource keeps the metadata, as /status does for every kind
            new = {**copy.deepcopy(old), "status": new.get("status")}
        _prune(CSR, new)
        out = signing.prepare_for_update(old, new, write, now=meta.now())
        errs = validation.validate_metadata(out, CSR) + signing.update_errors(old, out, write)
        if errs:
            raise status.invalid(CSR.kind, meta.name(out), errs, group=CSR.group)
        verb, who = signing.signer_verb(old, out, write), requester.current()
        signer = signing.signer_name(old)
        if verb and who is not None and not signing.authorized_for_signer(who.may, verb,
                                                                           signer):
            raise status.forbidden(CSR.plural, meta.name(out), f"user not permitted to {verb} "
                                   f'requests with signerName "{signer}"', group=CSR.group)
        return out

    @staticmethod
    def _has_status(res: Resource, served: customresources.Served | None) -> bool:
        """Whether the main endpoint leaves status alone (a /status subresource)."""
        return served.status if served is not None else res.kind in STATUS_KINDS

    def _write(self, res: Resource, old: Obj | None, new: Obj, *, expected: int | None) -> Obj:
        key = key_for(res, meta.namespace(new), meta.name(new))
        try:
            if deleting.removed_by_update(new):
                return self._remove(res, new, expected=expected)
            kv = self.store.update(key, _stored(new), expected_revision=expected)
            self.writes[res.kind] += 1
        except store_base.Conflict:
            raise status.conflict(res.plural, meta.name(new), group=res.group) from None
        except store_base.NotFound:
            raise status.not_found(res.plural, meta.name(new), group=res.group) from None
        return _written(new, kv)

    def _remove(self, res: Resource, obj: Obj, *, expected: int | None = None) -> Obj:
        """Gone from the store; a store Conflict when it is no longer at ``expected``."""
        try:
            kv = self.store.delete(key_for(res, meta.namespace(obj), meta.name(obj)),
                                   expected_revision=expected)
        except store_base.NotFound:
            raise status.not_found(res.plural, meta.name(obj), group=res.group) from None
        self.writes[res.kind] += 1
        self.admission.on_delete(res, kv.value)
        if res.custom:
            self._finish_definition(res)
        elif res is CRD:
            self._accept_waiting_names(kv.value)
        return _out(kv)

    def _accept_waiting_names(self, gone: Obj) -> None:
        """As kube's naming controller: the names a removed definition held
        may now go to another of its group that was refused them."""
        group = (gone.get("spec") or {}).get("group")
        for kv in self.store.list(prefix_for(CRD, None))[0]:
            crd = _out(kv)
            if (crd.get("spec") or {}).get("group") != group or customresources.established(crd):
                continue
            before = copy.deepcopy(crd.get("status"))
            customresources.set_status(crd, self.custom.taken_names(meta.name(crd)))
            if crd.get("status") != before:
                try:
                    self.store.update(kv.key, _stored(crd), expected_revision=kv.mod_revision)
                except store_base.Conflict:
                    continue  # written meanwhile: that write judged its names
                self.writes[CRD.kind] += 1

    def _definition_of(self, res: Resource) -> Obj | None:
        kv = self.store.get(key_for(CRD, None, f"{res.plural}.{res.group}"))
        return _out(kv) if kv is not None else None

    def _delete_definition(self, crd: Obj, opts: DeleteOptions) -> Obj:
        """As the apiextensions finalizer does: the definition is Terminating
        while its objects go (their own finalizers honoured), then removed."""
        md = meta.meta(crd)
        if not md.get("deletionTimestamp"):
            md["deletionTimestamp"] = meta.now()
            md["deletionGracePeriodSeconds"] = 0
            md["finalizers"] = [*md.get("finalizers", ()), CLEANUP_FINALIZER]
            customresources.set_status(crd, self.custom.taken_names(meta.name(crd)))
            kv = self.store.update(key_for(CRD, None, meta.name(crd)), _stored(crd),
                                   expected_revision=meta.resource_version(crd))
            self.writes[CRD.kind] += 1
            crd = _written(crd, kv)
        spec = crd.get("spec") or {}
        stored = Resource(spec["names"]["kind"], spec["names"]["plural"],
                          spec["names"].get("singular", ""), spec["group"],
                          customresources.storage_version(crd), spec.get("scope") == "Namespaced",
                          custom=True)
        for kv in self.store.list(prefix_for(stored, None))[0]:
            item = _read(kv)
            try:
                self.delete(stored, meta.namespace(item) or None, meta.name(item),
                            options=NAMESPACE_CONTENT)
            except status.ApiError as e:
                if e.code != 404:
                    raise
        return self._finish_definition(stored) or crd

    def _finish_definition(self, stored: Resource) -> Obj | None:
        """Removes a Terminating definition once no object of it is left."""
        crd = self._definition_of(stored)
        if crd is None or not meta.meta(crd).get("deletionTimestamp"):
            return None
        if self.store.list(prefix_for(stored, None))[0]:
            return None
        md = meta.meta(crd)
        md["finalizers"] = [f for f in md.get("finalizers", ()) if f != CLEANUP_FINALIZER]
        if md["finalizers"]:
            kv = self.store.update(key_for(CRD, None, meta.name(crd)), _stored(crd),
                                   expected_revision=None)
            self.writes[CRD.kind] += 1
            return _written(crd, kv)
        return self._remove(CRD, crd)

    def _delete_namespace(self, ns: Obj) -> Obj:
        name = meta.name(ns)
        if name in PROTECTED_NAMESPACES:
            raise status.ApiError(403, "Forbidden", f'namespaces "{name}" is forbidden: this '
                                  "namespace may not be deleted")
        for res in (*resources.ALL, *self.custom.stored_kinds()):
            if not res.namespaced:
                continue
            for item in self.list(res, Query(namespace=name))[0]:
                self.delete(res, name, meta.name(item), options=NAMESPACE_CONTENT)
        return self._remove(resources.NAMESPACE, ns)
