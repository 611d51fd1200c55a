"""Validation of objects before anything is stored: names, labels, selectors,
ports and IPs, with the field path of every error (Kubernetes' field.Error)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netplane.api import eventsv1, resources, selectors
from netplane.api.meta import Obj

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
PROTOCOLS = ("TCP", "UDP", "SCTP")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str
    reason: str = "FieldValueInvalid"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class Invalid(ValueError):
    """An object failed validation; ``errors`` say where and why."""

    def __init__(self, kind: str, name: str, errors: list[FieldError]) -> None:
        self.kind, self.name, self.errors = kind, name, errors
        detail = "; ".join(str(e) for e in errors)
        super().__init__(f'{kind} "{name}" is invalid: {detail}')


Errors = list[FieldError]


def dns_label(value: Any, path: str, errs: Errors) -> None:
    if not isinstance(value, str) or not value:
        errs.append(FieldError(path, "Required value", "FieldValueRequired"))
    elif len(value) > 63 or not DNS1123_LABEL.match(value):
        errs.append(FieldError(path, f'Invalid value: "{value}": a lowercase RFC 1123 label must '
                    "consist of lower case alphanumeric characters or '-', and must start and end "
                    "with an alphanumeric character (at most 63 characters)"))


def dns_subdomain(value: Any, path: str, errs: Errors) -> None:
    if not isinstance(value, str) or not value:
        errs.append(FieldError(path, "Required value", "FieldValueRequired"))
    elif len(value) > 253 or not DNS1123_SUBDOMAIN.match(value):
        errs.append(FieldError(path, f'Invalid value: "{value}": a lowercase RFC 1123 subdomain '
                    "must consist of lower case alphanumeric characters, '-' or '.', and must "
                    "start and end with an alphanumeric character"))


def path_segment(value: Any, path: str, errs: Errors) -> None:
    if not isinstance(value, str) or not value:
        errs.append(FieldError(path, "Required value", "FieldValueRequired"))
    elif value in (".", "..") or "/" in value or "%" in value:
        errs.append(FieldError(path, f'Invalid value: "{value}": may not be \'.\' or \'..\' '
                               "and may not contain '/' or '%'"))


def label_key(key: str, path: str, errs: Errors) -> None:
    prefix, _, name = key.rpartition("/")
    if prefix:
        dns_subdomain(prefix, path, errs)
    if not name or len(name) > 63 or not LABEL_NAME.match(name):
        errs.append(FieldError(path, f'Invalid value: "{key}": name part must consist of '
                    "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character (at most 63 characters)"))


def label_map(value: Any, path: str, errs: Errors) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        errs.append(FieldError(path, "must be a map of strings"))
        return
    for k, v in value.items():
        label_key(str(k), f"{path}", errs)
        if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v):
            errs.append(FieldError(f"{path}", f'Invalid value: "{v}": a valid label value must be '
                        "63 characters or less and consist of alphanumeric characters, '-', '_' "
                        "or '.', starting and ending with an alphanumeric character"))


def port_number(value: Any, path: str, errs: Errors, *, required: bool = True) -> None:
    if value is None:
        if required:
            errs.append(FieldError(path, "Required value", "FieldValueRequired"))
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        errs.append(FieldError(path, f"Invalid value: {value!r}: must be between 1 and 65535, "
                                     "inclusive"))


def port_name(value: Any, path: str, errs: Errors) -> None:
    if not isinstance(value, str) or len(value) > 15 or not IANA_SVC_NAME.match(value) \
            or "--" in value or not re.search("[a-z]", value):
        errs.append(FieldError(path, f"Invalid value: {value!r}: must be no more than 15 "
                    "characters, lower case alphanumerics or '-', containing at least one letter"))


def int_or_port_name(value: Any, path: str, errs: Errors) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        port_number(value, path, errs)
    elif isinstance(value, str) and value.isdigit():
        port_number(int(value), path, errs)
    else:
        port_name(value, path, errs)


def protocol(value: Any, path: str, errs: Errors) -> None:
    if value is not None and value not in PROTOCOLS:
        errs.append(FieldError(path, f'Unsupported value: "{value}": supported values: '
                    + ", ".join(f'"{p}"' for p in PROTOCOLS), "FieldValueNotSupported"))


def ip_address(value: Any, path: str, errs: Errors) -> None:
    try:
        # ipaddress also takes integers; an address in a manifest is a string.
        if not isinstance(value, str):
            raise ValueError(value)
        ipaddress.ip_address(value)
    except ValueError:
        errs.append(FieldError(path, f'Invalid value: "{value}": must be a valid IP address'))


def objects(value: Any, path: str, what: str, errs: Errors) -> list[tuple[str, Obj]]:
    """The items of a list of objects with their paths; anything else is an error
    (so that later checks can read the items as mappings)."""
    if value is None:
        return []
    if not isinstance(value, list):
        errs.append(FieldError(path, f"must be a list of {what} objects"))
        return []
    out: list[tuple[str, Obj]] = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            out.append((f"{path}[{i}]", item))
        else:
            errs.append(FieldError(f"{path}[{i}]", f"must be a {what} object"))
    return out


def _metadata(obj: Obj, res: resources.Resource, errs: Errors) -> None:
    md = obj.get("metadata")
    if not isinstance(md, dict):
        errs.append(FieldError("metadata", "Required value", "FieldValueRequired"))
        return
    if res.kind in ("Namespace", "Service"):
        dns_label(md.get("name"), "metadata.name", errs)
    elif res.group == "rbac.authorization.k8s.io" or res.kind == "CertificateSigningRequest":
        # "system:node" is a valid role name; kube does not mind what requests are called.
        path_segment(md.get("name"), "metadata.name", errs)
    else:
        dns_subdomain(md.get("name"), "metadata.name", errs)
    if res.namespaced and md.get("namespace") is not None:
        dns_label(md.get("namespace"), "metadata.namespace", errs)
    label_map(md.get("labels"), "metadata.labels", errs)
    if md.get("annotations") is not None and not isinstance(md.get("annotations"), dict):
        errs.append(FieldError("metadata.annotations", "must be a map of strings"))


def label_selector(sel: Any, path: str, errs: Errors) -> None:
    if sel is None:
        return
    if not isinstance(sel, dict):
        errs.append(FieldError(path, "must be a LabelSelector object"))
        return
    label_map(sel.get("matchLabels"), f"{path}.matchLabels", errs)
    try:
        selectors.from_label_selector(sel)
    except selectors.SelectorError as e:
        errs.append(FieldError(f"{path}.matchExpressions", str(e)))


def _container(c: Any, path: str, errs: Errors) -> None:
    if not isinstance(c, dict):
        errs.append(FieldError(path, "must be a Container object"))
        return
    dns_label(c.get("name"), f"{path}.name", errs)
    if not c.get("image"):
        errs.append(FieldError(f"{path}.image", "Required value", "FieldValueRequired"))
    for pp, p in objects(c.get("ports"), f"{path}.ports", "ContainerPort", errs):
        port_number(p.get("containerPort"), f"{pp}.containerPort", errs)
        protocol(p.get("protocol"), f"{pp}.protocol", errs)
        if p.get("name") is not None:
            port_name(p.get("name"), f"{pp}.name", errs)
    for key in ("command", "args"):
        v = c.get(key)
        if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
            errs.append(FieldError(f"{path}.{key}", "must be a list of strings"))


def pod_spec(spec: Any, path: str, errs: Errors) -> None:
    if not isinstance(spec, dict):
        errs.append(FieldError(path, "Required value", "FieldValueRequired"))
        return
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        errs.append(FieldError(f"{path}.containers", "Required value", "FieldValueRequired"))
        return
    seen: set[str] = set()
    for i, c in enumerate(containers):
        _container(c, f"{path}.containers[{i}]", errs)
        cname = c.get("name") if isinstance(c, dict) else None
        if cname in seen:
            errs.append(FieldError(f"{path}.containers[{i}].name", f'Duplicate value: "{cname}"',
                                   "FieldValueDuplicate"))
        seen.add(str(cname))
    for key in ("hostname", "subdomain"):
        if spec.get(key):
            dns_label(spec[key], f"{path}.{key}", errs)
    if spec.get("nodeName"):
        dns_subdomain(spec["nodeName"], f"{path}.nodeName", errs)


def _pod(obj: Obj, errs: Errors) -> None:
    pod_spec(obj.get("spec"), "spec", errs)


def _workload(obj: Obj, errs: Errors) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        errs.append(FieldError("spec", "Required value", "FieldValueRequired"))
        return
    replicas = spec.get("replicas", 1)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        errs.append(FieldError("spec.replicas", f"Invalid value: {replicas!r}: must be greater "
                                                "than or equal to 0"))
    _selected_template(spec, errs)


def _selected_template(spec: Obj, errs: Errors, *, empty: str = "") -> Obj | None:
    """A workload's selector and pod template, which the selector must match;
    the template's pod spec, when there is one to check further. ``empty``:
    what to say of a selector that selects everything, if not "Required"."""
    sel = spec.get("selector")
    if isinstance(sel, dict) and empty and not sel.get("matchLabels") and \
            not sel.get("matchExpressions"):
        errs.append(FieldError("spec.selector", f"Invalid value: {{}}: {empty}"))
    elif not sel:
        errs.append(FieldError("spec.selector", "Required value", "FieldValueRequired"))
    label_selector(sel, "spec.selector", errs)
    template = spec.get("template")
    if not isinstance(template, dict):
        errs.append(FieldError("spec.template", "Required value", "FieldValueRequired"))
        return None
    tlabels = (template.get("metadata") or {}).get("labels") or {}
    label_map(tlabels, "spec.template.metadata.labels", errs)
    try:
        if sel and not selectors.from_label_selector(sel).matches(tlabels):
            errs.append(FieldError("spec.template.metadata.labels",
                                   "Invalid value: `selector` does not match template `labels`"))
    except selectors.SelectorError:
        pass
    pod_spec(template.get("spec"), "spec.template.spec", errs)
    tspec = template.get("spec")
    return tspec if isinstance(tspec, dict) else None


def _service(obj: Obj, errs: Errors) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        errs.append(FieldError("spec", "Required value", "FieldValueRequired"))
        return
    stype = spec.get("type", "ClusterIP")
    if stype not in SERVICE_TYPES:
        errs.append(FieldError("spec.type", f'Unsupported value: "{stype}": supported values: '
                    + ", ".join(f'"{t}"' for t in SERVICE_TYPES), "FieldValueNotSupported"))
    if stype == "ExternalName":
        dns_subdomain(spec.get("externalName"), "spec.externalName", errs)
    label_map(spec.get("selector"), "spec.selector", errs)
    cip = spec.get("clusterIP")
    if cip not in (None, "", "None"):
        ip_address(cip, "spec.clusterIP", errs)
    _service_policies(spec, stype, errs)
    ports = spec.get("ports") or []
    if not ports and stype != "ExternalName" and cip != "None":
        errs.append(FieldError("spec.ports", "Required value", "FieldValueRequired"))
    names: set[str] = set()
    for i, p in enumerate(ports):
        path = f"spec.ports[{i}]"
        if not isinstance(p, dict):
            errs.append(FieldError(path, "must be a ServicePort object"))
            continue
        port_number(p.get("port"), f"{path}.port", errs)
        protocol(p.get("protocol"), f"{path}.protocol", errs)
        if p.get("targetPort") is not None:
            int_or_port_name(p["targetPort"], f"{path}.targetPort", errs)
        if p.get("nodePort") is not None:
            port_number(p["nodePort"], f"{path}.nodePort", errs)
        pname = p.get("name")
        if len(ports) > 1 and not pname:
            errs.append(FieldError(f"{path}.name", "Required value", "FieldValueRequired"))
        elif pname:
            dns_label(pname, f"{path}.name", errs)
            if pname in names:
                errs.append(FieldError(f"{path}.name", f'Duplicate value: "{pname}"',
                                       "FieldValueDuplicate"))
            names.add(pname)


def _one_of(value: Any, allowed: tuple[str, ...], path: str, errs: Errors) -> None:
    if value is not None and value not in allowed:
        errs.append(FieldError(path, f'Unsupported value: "{value}": supported values: '
                    + ", ".join(f'"{a}"' for a in allowed), "FieldValueNotSupported"))


def cidr(value: Any, path: str, errs: Errors) -> None:
    try:
        ipaddress.ip_network(str(value), strict=False)
        if not isinstance(value, str) or "/" not in value:
            raise ValueError(value)
    except ValueError:
        errs.append(FieldError(path, f'Invalid value: "{value}": must be a CIDR such as '
                                     '"10.0.0.0/8"'))


def _service_policies(spec: Obj, stype: str, errs: Errors) -> None:
    _one_of(spec.get("sessionAffinity"), ("None", "ClientIP"), "spec.sessionAffinity", errs)
    timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
        "timeoutSeconds")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)
                                or not 0 < timeout <= 86400):
        errs.append(FieldError("spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                               f"Invalid value: {timeout!r}: must be greater than 0 and less "
                               "than 86400"))
    _one_of(spec.get("internalTrafficPolicy"), ("Cluster", "Local"),
            "spec.internalTrafficPolicy", errs)
    etp = spec.get("externalTrafficPolicy")
    _one_of(etp, ("Cluster", "Local"), "spec.externalTrafficPolicy", errs)
    if etp is not None and stype not in ("NodePort", "LoadBalancer"):
        errs.append(FieldError("spec.externalTrafficPolicy", "Invalid value: may only be set "
                               "when `type` is 'NodePort' or 'LoadBalancer'"))
    for i, ip in enumerate(spec.get("externalIPs") or []):
        ip_address(ip, f"spec.externalIPs[{i}]", errs)
    for i, r in enumerate(spec.get("loadBalancerSourceRanges") or []):
        cidr(r, f"spec.loadBalancerSourceRanges[{i}]", errs)
    if spec.get("loadBalancerIP"):
        ip_address(spec["loadBalancerIP"], "spec.loadBalancerIP", errs)


def non_negative(value: Any, path: str, errs: Errors) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        errs.append(FieldError(path, f"Invalid value: {value!r}: must be greater than or "
                                     "equal to 0"))


PERCENT = re.compile(r"^[0-9]+%$")


def int_or_percent(value: Any, path: str, errs: Errors) -> int | None:
    """A non-negative int or ``N%`` (kube's ValidatePositiveIntOrPercent and
    IsNotMoreThan100Percent); the number it holds, None when invalid."""
    if isinstance(value, str):
        if not PERCENT.match(value):
            errs.append(FieldError(path, f'Invalid value: "{value}": a valid percent string '
                                   "must be a numeric string followed by an ending '%' "
                                   "(e.g. '1%',  or '93%')"))
            return None
        if int(value[:-1]) > 100:
            errs.append(FieldError(path, f'Invalid value: "{value}": must not be greater '
                                         "than 100%"))
        return int(value[:-1])
    errs_before = len(errs)
    non_negative(value, path, errs)
    return int(value) if len(errs) == errs_before and value is not None else None


def _pod_template_of_set(spec: Obj, empty: str, errs: Errors) -> None:
    """Selector and template of a DaemonSet or StatefulSet: a non-empty
    selector that the template's labels match, pods that always restart."""
    tspec = _selected_template(spec, errs, empty=empty)
    policy = (tspec or {}).get("restartPolicy", "Always")
    if policy != "Always":
        errs.append(FieldError("spec.template.spec.restartPolicy", f'Unsupported value: '
                               f'"{policy}": supported values: "Always"',
                               "FieldValueNotSupported"))


def _daemon_set(obj: Obj, errs: Errors) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        errs.append(FieldError("spec", "Required value", "FieldValueRequired"))
        return
    _pod_template_of_set(spec, "empty selector is invalid for daemonset", errs)
    non_negative(spec.get("minReadySeconds"), "spec.minReadySeconds", errs)
    non_negative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit", errs)
    strategy = spec.get("updateStrategy") or {}
    _one_of(strategy.get("type"), ("OnDelete", "RollingUpdate"), "spec.updateStrategy.type",
            errs)
    rolling = strategy.get("rollingUpdate")
    if strategy.get("type") == "RollingUpdate" and isinstance(rolling, dict):
        path = "spec.updateStrategy.rollingUpdate"
        unavailable = int_or_percent(rolling.get("maxUnavailable", 0),
                                     f"{path}.maxUnavailable", errs)
        surge = int_or_percent(rolling.get("maxSurge", 0), f"{path}.maxSurge", errs)
        # Exactly one of them may be non-zero (kube's ValidateRollingUpdateDaemonSet).
        if unavailable and surge:
            errs.append(FieldError(f"{path}.maxSurge", f"Invalid value: "
                                   f"{rolling['maxSurge']!r}: may not be set when "
                                   "maxUnavailable is non-zero"))
        elif unavailable == 0 and surge == 0:
            errs.append(FieldError(f"{path}.maxUnavailable", "Required value: cannot be 0 "
                                   "when maxSurge is 0", "FieldValueRequired"))


def _stateful_set(obj: Obj, errs: Errors) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        errs.append(FieldError("spec", "Required value", "FieldValueRequired"))
        return
    _pod_template_of_set(spec, "empty selector is not valid for statefulset.", errs)
    for key in ("replicas", "minReadySeconds", "revisionHistoryLimit"):
        non_negative(spec.get(key), f"spec.{key}", errs)
    non_negative((spec.get("ordinals") or {}).get("start"), "spec.ordinals.start", errs)
    policy = spec.get("podManagementPolicy")
    if policy not in (None, "OrderedReady", "Parallel"):
        errs.append(FieldError("spec.podManagementPolicy", f'Invalid value: "{policy}": must '
                               "be 'OrderedReady' or 'Parallel'"))
    _stateful_set_strategy(spec.get("updateStrategy") or {}, errs)
    retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    for key in ("whenDeleted", "whenScaled"):
        _one_of(retention.get(key), ("Retain", "Delete"),
                f"spec.persistentVolumeClaimRetentionPolicy.{key}", errs)


def _stateful_set_strategy(strategy: Obj, errs: Errors) -> None:
    path, kind = "spec.updateStrategy", strategy.get("type")
    rolling = strategy.get("rollingUpdate")
    if kind not in (None, "RollingUpdate", "OnDelete"):
        errs.append(FieldError(path, f'Invalid value: "{kind}": must be \'RollingUpdate\' or '
                                     "'OnDelete'"))
    elif kind == "OnDelete" and rolling is not None:
        errs.append(FieldError(f"{path}.rollingUpdate", "Invalid value: only allowed for "
                                                        "updateStrategy 'RollingUpdate'"))
    elif isinstance(rolling, dict):
        non_negative(rolling.get("partition"), f"{path}.rollingUpdate.partition", errs)
        if rolling.get("maxUnavailable") is not None:
            most = int_or_percent(rolling["maxUnavailable"],
                                  f"{path}.rollingUpdate.maxUnavailable", errs)
            if most == 0:
                errs.append(FieldError(f"{path}.rollingUpdate.maxUnavailable", "Invalid "
                                       "value: 0: must be greater than 0"))


def _controller_revision(obj: Obj, errs: Errors) -> None:
    if obj.get("data") is None:
        errs.append(FieldError("data", "Required value: data is mandatory",
                               "FieldValueRequired"))
    if obj.get("revision") is None:
        errs.append(FieldError("revision", "Required value", "FieldValueRequired"))
    non_negative(obj.get("revision"), "revision", errs)


def _endpoint_slice(obj: Obj, errs: Errors) -> None:
    _one_of(obj.get("addressType"), ("IPv4", "IPv6", "FQDN"), "addressType", errs)
    if obj.get("addressType") is None:
        errs.append(FieldError("addressType", "Required value", "FieldValueRequired"))
    for i, ep in enumerate(obj.get("endpoints") or []):
        if not isinstance(ep, dict):
            errs.append(FieldError(f"endpoints[{i}]", "must be an Endpoint object"))
            continue
        addrs = ep.get("addresses")
        if not isinstance(addrs, list) or not 1 <= len(addrs) <= 100:
            errs.append(FieldError(f"endpoints[{i}].addresses", "must have 1 to 100 items"))
            continue
        if obj.get("addressType") in ("IPv4", "IPv6"):
            for j, a in enumerate(addrs):
                ip_address(a, f"endpoints[{i}].addresses[{j}]", errs)
        if ep.get("hostname"):
            dns_label(ep["hostname"], f"endpoints[{i}].hostname", errs)
    for i, p in enumerate(obj.get("ports") or []):
        if not isinstance(p, dict):
            errs.append(FieldError(f"ports[{i}]", "must be an EndpointPort object"))
            continue
        port_number(p.get("port"), f"ports[{i}].port", errs, required=False)
        protocol(p.get("protocol"), f"ports[{i}].protocol", errs)


def _endpoints(obj: Obj, errs: Errors) -> None:
    for sp, subset in objects(obj.get("subsets"), "subsets", "EndpointSubset", errs):
        for key in ("addresses", "notReadyAddresses"):
            for ap, a in objects(subset.get(key), f"{sp}.{key}", "EndpointAddress", errs):
                ip_address(a.get("ip"), f"{ap}.ip", errs)
        for pp, p in objects(subset.get("ports"), f"{sp}.ports", "EndpointPort", errs):
            port_number(p.get("port"), f"{pp}.port", errs)
            protocol(p.get("protocol"), f"{pp}.protocol", errs)


def _node(obj: Obj, errs: Errors) -> None:
    st = obj.get("status")
    addresses = st.get("addresses") if isinstance(st, dict) else None
    for ap, a in objects(addresses, "status.addresses", "NodeAddress", errs):
        if a.get("type") in ("InternalIP", "ExternalIP"):
            ip_address(a.get("address"), f"{ap}.address", errs)


CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def _config_keys(value: Any, path: str, errs: Errors, seen: set[str]) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        errs.append(FieldError(path, "must be a map of strings"))
        return
    for k, v in value.items():
        kp = f"{path}[{k}]"
        if not isinstance(k, str) or len(k) > 253 or not CONFIG_KEY.match(k) or k in (".", ".."):
            errs.append(FieldError(kp, f'Invalid value: "{k}": a valid config key must consist '
                        "of alphanumeric characters, '-', '_' or '.'"))
        elif k in seen:
            errs.append(FieldError(kp, f'Invalid value: "{k}": duplicate of key present in '
                        "another data map", "FieldValueDuplicate"))
        seen.add(str(k))
        if not isinstance(v, str):
            errs.append(FieldError(kp, "must be a string"))


def _configmap(obj: Obj, errs: Errors) -> None:
    seen: set[str] = set()
    _config_keys(obj.get("data"), "data", errs, seen)
    _config_keys(obj.get("binaryData"), "binaryData", errs, seen)


def _secret(obj: Obj, errs: Errors) -> None:
    _config_keys(obj.get("data"), "data", errs, set())
    for k, v in (obj.get("data") or {}).items() if isinstance(obj.get("data"), dict) else ():
        if isinstance(v, str) and not _is_base64(v):
            errs.append(FieldError(f"data[{k}]", "Invalid value: must be base64-encoded bytes"))
    stype = obj.get("type", "Opaque")
    if not isinstance(stype, str) or not stype:
        errs.append(FieldError("type", "Required value", "FieldValueRequired"))
    data = obj.get("data") or {}
    if stype == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in data:
                errs.append(FieldError(f"data[{key}]", "Required value", "FieldValueRequired"))
    if stype == "kubernetes.io/service-account-token":
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            errs.append(FieldError(
                "metadata.annotations[kubernetes.io/service-account.name]", "Required value",
                "FieldValueRequired"))


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _event(obj: Obj, errs: Errors) -> None:
    involved = obj.get("involvedObject")
    if not isinstance(involved, dict):
        errs.append(FieldError("involvedObject", "Required value", "FieldValueRequired"))
    _one_of(obj.get("type"), ("Normal", "Warning"), "type", errs)
    count = obj.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                              or count < 0):
        errs.append(FieldError("count", f"Invalid value: {count!r}: must be a non-negative "
                                        "integer"))


def _rules(obj: Obj, errs: Errors) -> None:
    for rp, rule in objects(obj.get("rules"), "rules", "PolicyRule", errs):
        verbs = rule.get("verbs")
        if not isinstance(verbs, list) or not verbs:
            errs.append(FieldError(f"{rp}.verbs", "Required value: verbs must contain at "
                                   "least one value", "FieldValueRequired"))
        urls = rule.get("nonResourceURLs")
        if not urls and not rule.get("resources"):
            errs.append(FieldError(f"{rp}.resources", "Required value: resource rules must "
                                   "supply at least one resource", "FieldValueRequired"))
        if not urls and rule.get("apiGroups") is None:
            errs.append(FieldError(f"{rp}.apiGroups", "Required value: resource rules must "
                                   "supply at least one api group", "FieldValueRequired"))


def _binding(obj: Obj, errs: Errors) -> None:
    ref = obj.get("roleRef")
    if not isinstance(ref, dict):
        errs.append(FieldError("roleRef", "Required value", "FieldValueRequired"))
    else:
        allowed = ("Role", "ClusterRole") if obj.get("kind") == "RoleBinding" else \
            ("ClusterRole",)
        _one_of(ref.get("kind"), allowed, "roleRef.kind", errs)
        if not ref.get("name"):
            errs.append(FieldError("roleRef.name", "Required value", "FieldValueRequired"))
        if ref.get("apiGroup") != "rbac.authorization.k8s.io":
            errs.append(FieldError("roleRef.apiGroup", f'Unsupported value: '
                        f'"{ref.get("apiGroup", "")}": supported values: '
                        '"rbac.authorization.k8s.io"', "FieldValueNotSupported"))
    for sp, subj in objects(obj.get("subjects"), "subjects", "Subject", errs):
        _one_of(subj.get("kind"), ("User", "Group", "ServiceAccount"), f"{sp}.kind", errs)
        if not subj.get("name"):
            errs.append(FieldError(f"{sp}.name", "Required value", "FieldValueRequired"))
        if subj.get("kind") == "ServiceAccount" and not subj.get("namespace") \
                and obj.get("kind") == "ClusterRoleBinding":
            errs.append(FieldError(f"{sp}.namespace", "Required value", "FieldValueRequired"))


def _batch(obj: Obj, errs: Errors) -> None:
    from netplane.api import batch  # batch builds on the checks above: imported late

    (batch.validate_job if obj.get("kind") == "Job" else batch.validate_cronjob)(obj, errs)


def _storage(obj: Obj, errs: Errors) -> None:
    from netplane.api import storage  # storage builds on the checks above: imported late

    {"PersistentVolume": storage.validate_pv, "PersistentVolumeClaim": storage.validate_pvc,
     "StorageClass": storage.validate_class}[str(obj.get("kind"))](obj, errs)


def _lease(obj: Obj, errs: Errors) -> None:
    """kube's ValidateLeaseSpec (the strategy fields are behind an alpha gate)."""
    spec = obj.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int)
                                 or duration <= 0):
        errs.append(FieldError("spec.leaseDurationSeconds",
                               f"Invalid value: {duration!r}: must be greater than 0"))
    non_negative(spec.get("leaseTransitions"), "spec.leaseTransitions", errs)


def _priority_class(obj: Obj, errs: Errors) -> None:
    from netplane.api import priority  # priority builds on the checks above: imported late

    priority.validate_class(obj, errs)


def _budget(obj: Obj, errs: Errors) -> None:
    from netplane.api import disruption  # builds on the checks above: imported late

    disruption.validate(obj, errs)


def _autoscaler(obj: Obj, errs: Errors) -> None:
    from netplane.api import autoscaling  # builds on the checks above: imported late

    autoscaling.validate(obj, errs)
    autoscaling.validate_status(obj, errs)


def _certificate_request(obj: Obj, errs: Errors) -> None:
    from netplane.api import certificates  # builds on the checks above: imported late

    certificates.validate(obj, errs)


def _netpol(obj: Obj, errs: Errors) -> None:
    from netplane.api import netpol  # netpol builds on the checks above: imported late

    netpol.validate(obj, errs)


_BY_KIND: dict[str, Callable[[Obj, Errors], None]] = {
    "ConfigMap": _configmap,
    "Secret": _secret,
    "Event": _event,
    "Role": _rules,
    "ClusterRole": _rules,
    "RoleBinding": _binding,
    "ClusterRoleBinding": _binding,
    "Pod": _pod,
    "Deployment": _workload,
    "ReplicaSet": _workload,
    "DaemonSet": _daemon_set,
    "StatefulSet": _stateful_set,
    "ControllerRevision": _controller_revision,
    "Service": _service,
    "Endpoints": _endpoints,
    "EndpointSlice": _endpoint_slice,
    "Node": _node,
    "Job": _batch,
    "PersistentVolume": _storage,
    "PersistentVolumeClaim": _storage,
    "StorageClass": _storage,
    "CronJob": _batch,
    "NetworkPolicy": _netpol,
    "Lease": _lease,
    "PriorityClass": _priority_class,
    "PodDisruptionBudget": _budget,
    "HorizontalPodAutoscaler": _autoscaler,
    "CertificateSigningRequest": _certificate_request,
}


def validate_metadata(obj: Obj, res: resources.Resource) -> Errors:
    """The metadata checks every kind shares (the whole of a custom object's)."""
    errs: Errors = []
    _metadata(obj, res, errs)
    return errs


def validate(obj: Obj, res: resources.Resource) -> Errors:
    """Every problem with ``obj`` as a ``res``; an empty list means valid."""
    if res is resources.EVENT_V1:  # stored as a core Event, and judged as one
        return validate(eventsv1.to_core(obj), resources.EVENT)
    errs: Errors = []
    _metadata(obj, res, errs)
    check = _BY_KIND.get(res.kind)
    if check is not None:
        check(obj, errs)
    return errs


def check(obj: Obj, res: resources.Resource) -> None:
    """Raise :class:`Invalid` when ``obj`` is not a valid ``res``."""
    errs = validate(obj, res)
    if errs:
        name = str((obj.get("metadata") or {}).get("name", ""))
        raise Invalid(res.kind, name, errs)
