"""CustomResourceDefinitions (``apiextensions.k8s.io/v1``): their defaults and
validation as apiextensions-apiserver has them, the status it reports
(NamesAccepted, Established, acceptedNames, storedVersions), and the served
kinds a definition makes, as resource entries like the compiled-in ones."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from netplane.api import meta, structural, validation
from netplane.api.meta import Obj
from netplane.api.resources import Resource
from netplane.api.validation import Errors, FieldError

GROUP = "apiextensions.k8s.io"
SCOPES = ("Cluster", "Namespaced")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


@dataclass(frozen=True)
class Served:
    """One served version of a definition: its resource entry and what the
    version says of its objects."""

    resource: Resource
    storage_version: str
    schema: Obj
    status: bool  # the version declares subresources.status
    columns: tuple[Obj, ...]
    list_kind: str
    # The version's selectableFields: what field selectors may name beside
    # metadata.name and metadata.namespace (``spec.color``).
    selectable: tuple[str, ...] = ()


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _names(crd: Obj) -> Obj:
    return _dict(_dict(crd.get("spec")).get("names"))


def defaults(crd: Obj) -> None:
    """SetDefaults_CustomResourceDefinition and its names'."""
    spec = crd.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict) and isinstance(names.get("kind"), str):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    conversion = spec.setdefault("conversion", {})
    if isinstance(conversion, dict):
        conversion.setdefault("strategy", "None")


def _version_errors(spec: Obj, errs: Errors) -> None:
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        errs.append(FieldError("spec.versions", "Invalid value: null: must have exactly one "
                               "version marked as storage version"))
        return
    seen: set[str] = set()
    storage = 0
    top = _dict(spec.get("validation")).get("openAPIV3Schema")
    for i, v in enumerate(versions):
        path = f"spec.versions[{i}]"
        if not isinstance(v, dict):
            errs.append(FieldError(path, "Invalid value: must be an object"))
            continue
        name = v.get("name")
        if not name:
            errs.append(FieldError(f"{path}.name", "Required value", "FieldValueRequired"))
        else:
            validation.dns_label(name, f"{path}.name", errs)
            if name in seen:
                errs.append(FieldError(f"{path}.name", f'Invalid value: "{name}": must be '
                                       "unique", "FieldValueDuplicate"))
            seen.add(name)
        storage += bool(v.get("storage"))
        schema = _dict(v.get("schema")).get("openAPIV3Schema") or top
        errs.extend(structural.structural_errors(schema, f"{path}.schema.openAPIV3Schema"))
        for j, column in enumerate(v.get("additionalPrinterColumns") or ()):
            cpath = f"{path}.additionalPrinterColumns[{j}]"
            if not isinstance(column, dict):
                continue
            for key in ("name", "type", "jsonPath"):
                if not column.get(key):
                    errs.append(FieldError(f"{cpath}.{key}", "Required value",
                                           "FieldValueRequired"))
    if storage != 1:
        listed = ", ".join(str(v.get("name")) for v in versions if isinstance(v, dict)
                           and v.get("storage"))
        errs.append(FieldError("spec.versions", f"Invalid value: [{listed}]: must have "
                               "exactly one version marked as storage version"))


def validate(crd: Obj) -> Errors:
    """ValidateCustomResourceDefinition, the parts that matter here."""
    errs: Errors = []
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [FieldError("spec", "Required value", "FieldValueRequired")]
    group, names = spec.get("group"), _names(crd)
    if not group:
        errs.append(FieldError("spec.group", "Required value", "FieldValueRequired"))
    elif not isinstance(group, str) or "." not in group:
        errs.append(FieldError("spec.group", f"Invalid value: {group!r}: should be a domain "
                               "with at least one dot".replace("'", '"')))
    else:
        validation.dns_subdomain(group, "spec.group", errs)
    plural = names.get("plural")
    want = f"{plural}.{group}"
    if meta.name(crd) != want:
        errs.append(FieldError("metadata.name", f'Invalid value: "{meta.name(crd)}": must be '
                               'spec.names.plural+"."+spec.group'))
    scope = spec.get("scope")
    if scope not in SCOPES:
        if not scope:
            errs.append(FieldError("spec.scope", "Required value", "FieldValueRequired"))
        else:
            errs.append(FieldError("spec.scope", f'Unsupported value: "{scope}": supported '
                                   'values: "Cluster", "Namespaced"', "FieldValueNotSupported"))
    for key in ("plural", "singular"):
        value = names.get(key)
        if not value:
            if key == "plural":
                errs.append(FieldError(f"spec.names.{key}", "Required value",
                                       "FieldValueRequired"))
            continue
        if not isinstance(value, str) or not validation.DNS1123_LABEL.match(value):
            errs.append(FieldError(f"spec.names.{key}", f'Invalid value: "{value}": a lowercase '
                                   "RFC 1123 label must consist of lower case alphanumeric "
                                   "characters or '-', and must start and end with an "
                                   "alphanumeric character"))
    for key in ("kind", "listKind"):
        value = names.get(key)
        if not value:
            errs.append(FieldError(f"spec.names.{key}", "Required value", "FieldValueRequired"))
        elif not isinstance(value, str) or not _KIND.match(value):
            errs.append(FieldError(f"spec.names.{key}", f'Invalid value: "{value}": may have '
                                   "mixed case, but should otherwise match: "
                                   "[a-z]([-a-z0-9]*[a-z0-9])?"))
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        errs.append(FieldError("spec.names.listKind", f'Invalid value: "{names["listKind"]}": '
                               "kind and listKind may not be the same"))
    conversion = _dict(spec.get("conversion")).get("strategy", "None")
    if conversion not in ("None", "Webhook"):
        errs.append(FieldError("spec.conversion.strategy", f'Unsupported value: "{conversion}": '
                               'supported values: "None", "Webhook"', "FieldValueNotSupported"))
    if spec.get("preserveUnknownFields"):
        errs.append(FieldError("spec.preserveUnknownFields", "Invalid value: true: cannot set "
                               "to true, set x-kubernetes-preserve-unknown-fields to true in "
                               "spec.versions[*].schema instead"))
    _version_errors(spec, errs)
    return errs


def update_errors(old: Obj, new: Obj) -> Errors:
    """What may not change: the group, the scope, and the plural (the name)."""
    errs: Errors = []
    for key in ("group", "scope"):
        if (old.get("spec") or {}).get(key) != (new.get("spec") or {}).get(key):
            errs.append(FieldError(f"spec.{key}", "Invalid value: field is immutable",
                                   "FieldValueInvalid"))
    return errs


def storage_version(crd: Obj) -> str:
    for v in (crd.get("spec") or {}).get("versions") or ():
        if v.get("storage"):
            return str(v["name"])
    return ""


def set_status(crd: Obj, taken: set[tuple[str, str]]) -> None:
    """The status kube's naming and establishing controllers would report:
    ``taken`` holds the (group, plural or kind) other definitions hold."""
    spec, names = crd["spec"], _names(crd)
    group = spec["group"]
    clash = [n for n in (names.get("plural"), names.get("kind"),
                         *(names.get("shortNames") or ())) if (group, n) in taken]
    st = crd.setdefault("status", {})
    accepted = not clash
    if accepted:
        st["acceptedNames"] = {k: v for k, v in names.items()}
    else:
        st.setdefault("acceptedNames", {"plural": "", "kind": ""})
    conds: list[Obj] = []
    now = meta.now()
    old = {c.get("type"): c for c in st.get("conditions") or ()}

    def cond(kind: str, ok: bool, reason: str, message: str) -> None:
        was = old.get(kind) or {}
        value = "True" if ok else "False"
        since = was.get("lastTransitionTime") if was.get("status") == value else now
        conds.append({"type": kind, "status": value, "lastTransitionTime": since or now,
                      "reason": reason, "message": message})

    if accepted:
        cond("NamesAccepted", True, "NoConflicts", "no conflicts found")
        cond("Established", True, "InitialNamesAccepted", "the initial names have been accepted")
    else:
        cond("NamesAccepted", False, "NameConflict",
             f'"{clash[0]}" is already in use')
        cond("Established", False, "NotAccepted", "not all names are accepted")
    if meta.meta(crd).get("deletionTimestamp"):
        cond("Terminating", True, "InstanceDeletionInProgress",
             "CustomResource deletion is in progress")
    st["conditions"] = conds
    stored = list(st.get("storedVersions") or ())
    version = storage_version(crd)
    if version and version not in stored:
        stored.append(version)
    st["storedVersions"] = stored


def established(crd: Obj) -> bool:
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (crd.get("status") or {}).get("conditions") or ())


def version_schema(crd: Obj, version: Obj) -> Obj:
    spec = crd["spec"]
    return dict(_dict(version.get("schema")).get("openAPIV3Schema")
                or _dict(spec.get("validation")).get("openAPIV3Schema") or {})


def served(crd: Obj) -> list[Served]:
    """The kinds an established definition serves, one per served version."""
    if not established(crd):
        return []
    spec, names = crd["spec"], _names(crd)
    out = []
    storage = storage_version(crd)
    for v in spec.get("versions") or ():
        if not v.get("served"):
            continue
        res = Resource(str(names["kind"]), str(names["plural"]), str(names.get("singular", "")),
                       str(spec["group"]), str(v["name"]), spec.get("scope") == "Namespaced",
                       tuple(names.get("shortNames") or ()),
                       tuple(names.get("categories") or ()), custom=True)
        subs = v.get("subresources") or spec.get("subresources") or {}
        columns = v.get("additionalPrinterColumns") or spec.get("additionalPrinterColumns") or ()
        selectable = tuple(str(f.get("jsonPath", "")).lstrip(".")
                           for f in v.get("selectableFields") or () if isinstance(f, dict))
        out.append(Served(res, storage, version_schema(crd, v), "status" in subs,
                          tuple(columns), list_kind(crd), selectable))
    return out


def list_kind(crd: Obj) -> str:
    return str(_names(crd).get("listKind") or f"{_names(crd).get('kind')}List")
