"""The storage kinds (``v1`` PersistentVolume and PersistentVolumeClaim,
``storage.k8s.io/v1`` StorageClass): the API server's defaults and the
checks it makes, as kube-apiserver makes them, and what claims and volumes
say of each other."""

from __future__ import annotations

from netplane.api.meta import Obj
from netplane.api.validation import Errors, FieldError

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
LOCAL_PATH = "netplane.io/local-path"
ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
SOURCES = ("hostPath", "local", "nfs", "csi", "iscsi", "fc", "cephfs", "rbd")


def pv_defaults(obj: Obj) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        spec.setdefault("volumeMode", "Filesystem")
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def pvc_defaults(obj: Obj) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def class_defaults(obj: Obj) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


def _modes(modes: object, path: str, errs: Errors) -> None:
    if not isinstance(modes, list) or not modes:
        errs.append(FieldError(path, "Required value: at least 1 access mode is required",
                               "FieldValueRequired"))
        return
    for i, mode in enumerate(modes):
        if mode not in ACCESS_MODES:
            supported = ", ".join(f'"{m}"' for m in ACCESS_MODES)
            errs.append(FieldError(f"{path}[{i}]", f'Unsupported value: "{mode}": supported '
                                   f"values: {supported}", "FieldValueNotSupported"))


def validate_pvc(obj: Obj, errs: Errors) -> None:
    spec = obj.get("spec") or {}
    _modes(spec.get("accessModes"), "spec.accessModes", errs)
    if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
        errs.append(FieldError("spec.resources[storage]", "Required value",
                               "FieldValueRequired"))


def validate_pv(obj: Obj, errs: Errors) -> None:
    spec = obj.get("spec") or {}
    _modes(spec.get("accessModes"), "spec.accessModes", errs)
    if not (spec.get("capacity") or {}).get("storage"):
        errs.append(FieldError("spec.capacity", "Required value", "FieldValueRequired"))
    if not any(k in spec for k in SOURCES):
        errs.append(FieldError("spec", "Required value: must specify a volume type",
                               "FieldValueRequired"))


def validate_class(obj: Obj, errs: Errors) -> None:
    if not obj.get("provisioner"):
        errs.append(FieldError("provisioner", "Required value", "FieldValueRequired"))
    if obj.get("volumeBindingMode") not in ("Immediate", "WaitForFirstConsumer"):
        errs.append(FieldError("volumeBindingMode", f'Unsupported value: '
                               f'"{obj.get("volumeBindingMode")}": supported values: '
                               '"Immediate", "WaitForFirstConsumer"', "FieldValueNotSupported"))


def is_default_class(sc: Obj) -> bool:
    return (sc.get("metadata", {}).get("annotations") or {}).get(
        DEFAULT_CLASS_ANNOTATION) == "true"


def default_class(classes: list[Obj]) -> Obj | None:
    """The newest default class, as the DefaultStorageClass admission takes it."""
    found = sorted((c for c in classes if is_default_class(c)),
                   key=lambda c: c.get("metadata", {}).get("creationTimestamp", ""))
    return found[-1] if found else None


def claim_class(pvc: Obj) -> str:
    return str((pvc.get("spec") or {}).get("storageClassName") or "")


def requested(pvc: Obj) -> str:
    return str(((pvc.get("spec") or {}).get("resources") or {}).get("requests", {}).get(
        "storage", "0"))


def claim_ref_matches(pv: Obj, pvc: Obj) -> bool:
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    md = pvc.get("metadata", {})
    return ref.get("name") == md.get("name") and ref.get("namespace") == md.get("namespace") \
        and (not ref.get("uid") or ref.get("uid") == md.get("uid"))


def pod_claims(pod: Obj) -> list[str]:
    """Names of the claims a pod's volumes use."""
    return [str(v["persistentVolumeClaim"]["claimName"])
            for v in (pod.get("spec") or {}).get("volumes") or []
            if isinstance(v, dict) and (v.get("persistentVolumeClaim") or {}).get("claimName")]
