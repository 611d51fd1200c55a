"""``networking.k8s.io/v1`` NetworkPolicy: the API server's defaults and
checks, as kube-apiserver 1.32 makes them (``SetDefaults_NetworkPolicy``,
``ValidateNetworkPolicy``), with its field paths and words. Enforcement is
the node's business; this module only says what a valid policy is."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from netplane.api.meta import Obj
from netplane.api.selectors import label_value_errors, qualified_name_errors
from netplane.api.validation import Errors, FieldError

INGRESS, EGRESS = "Ingress", "Egress"
POLICY_TYPES = (INGRESS, EGRESS)
PROTOCOLS = ("TCP", "UDP", "SCTP")
_PORT_NAME_CHARS = re.compile(r"^[-a-z0-9]+$")
_DIGITS = re.compile(r"^[0-9]+$")
_IPV4 = re.compile(r"^([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)$")


# -- defaults --

def defaults(obj: Obj) -> None:
    """SetDefaults_NetworkPolicy and SetDefaults_NetworkPolicyPort."""
    spec = obj.get("spec")
    if spec is None:
        spec = obj["spec"] = {}
    if not isinstance(spec, dict):
        return
    # A struct held by value: kube always writes it, empty or not.
    spec.setdefault("podSelector", {})
    if not spec.get("policyTypes"):
        spec["policyTypes"] = [INGRESS, EGRESS] if spec.get("egress") else [INGRESS]
    for direction in ("ingress", "egress"):
        for rule in _dicts(spec.get(direction)):
            for port in _dicts(rule.get("ports")):
                port.setdefault("protocol", "TCP")


def _dicts(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


# -- how Go prints the values it refuses --

def _go(value: Any) -> str:
    """A bad value as field.Error prints it: strings quoted, numbers bare."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, f"Invalid value: {_go(value)}: {detail}")


def _not_supported(path: str, value: Any, allowed: tuple[str, ...]) -> FieldError:
    shown = ", ".join(f'"{a}"' for a in allowed)
    return FieldError(path, f"Unsupported value: {_go(value)}: supported values: {shown}",
                      "FieldValueNotSupported")


# -- label selectors (metav1 validation.ValidateLabelSelector) --

def label_selector(sel: Any, path: str, errs: Errors) -> None:
    if not isinstance(sel, dict):
        return
    labels = sel.get("matchLabels")
    for key, value in (labels.items() if isinstance(labels, dict) else ()):
        errs += [_invalid(f"{path}.matchLabels", key, m) for m in qualified_name_errors(key)]
        errs += [_invalid(f"{path}.matchLabels", value, m)
                 for m in label_value_errors(str(value))]
    for i, expr in enumerate(_dicts(sel.get("matchExpressions"))):
        _requirement(expr, f"{path}.matchExpressions[{i}]", errs)


def _requirement(expr: Obj, path: str, errs: Errors) -> None:
    op, values = expr.get("operator"), expr.get("values") or []
    if op in ("In", "NotIn"):
        if not values:
            errs.append(FieldError(f"{path}.values", "Required value: must be specified when "
                                   "`operator` is 'In' or 'NotIn'", "FieldValueRequired"))
    elif op in ("Exists", "DoesNotExist"):
        if values:
            errs.append(FieldError(f"{path}.values", "Forbidden: may not be specified when "
                                   "`operator` is 'Exists' or 'DoesNotExist'",
                                   "FieldValueForbidden"))
    else:
        errs.append(_invalid(f"{path}.operator", op or "", "not a valid selector operator"))
    key = str(expr.get("key") or "")
    errs += [_invalid(f"{path}.key", key, m) for m in qualified_name_errors(key)]
    for j, value in enumerate(values):
        errs += [_invalid(f"{path}.values[{j}]", value, m)
                 for m in label_value_errors(str(value))]


# -- ports --

def port_name_errors(name: str) -> list[str]:
    """IsValidPortName: an IANA service name."""
    errs = []
    if len(name) > 15:
        errs.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARS.match(name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name[:1] == "-" or name[-1:] == "-":
        errs.append("must not begin or end with a hyphen")
    return errs


def _port_range(value: int) -> list[str]:
    return [] if 1 <= value <= 65535 else ["must be between 1 and 65535, inclusive"]


def _port(port: Obj, path: str, errs: Errors) -> None:
    """ValidateNetworkPolicyPort."""
    proto, number, end = port.get("protocol"), port.get("port"), port.get("endPort")
    if isinstance(end, bool) or not isinstance(end, int):
        end = None  # not an int32: refused when the body was decoded
    if proto is not None and proto not in PROTOCOLS:
        errs.append(_not_supported(f"{path}.protocol", proto, PROTOCOLS))
    if isinstance(number, int) and not isinstance(number, bool):
        errs += [_invalid(f"{path}.port", number, m) for m in _port_range(number)]
        if end is not None:
            if end < number:
                errs.append(_invalid(f"{path}.endPort", end,
                                     "must be greater than or equal to `port`"))
            errs += [_invalid(f"{path}.endPort", end, m) for m in _port_range(end)]
    elif number is not None:
        # A string is a name, even "80": IntOrString keeps what JSON said.
        if end is not None:
            errs.append(_invalid(f"{path}.endPort", end,
                                 "may not be specified when `port` is non-numeric"))
        errs += [_invalid(f"{path}.port", number, m) for m in port_name_errors(str(number))]
    elif end is not None:
        errs.append(_invalid(f"{path}.endPort", end,
                             "may not be specified when `port` is not specified"))


# -- peers --

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidr(text: Any) -> Network | None:
    """A CIDR as k8s.io/utils/net's ParseCIDRSloppy reads it (the IPv4 octets
    and the prefix length may have leading zeros; host bits may be set), as
    its network; None when it is not one."""
    if not isinstance(text, str):
        return None
    addr, slash, bits = text.partition("/")
    if not slash or not _DIGITS.match(bits):
        return None
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        if ":" in addr:
            if "%" in addr:  # a zone: Go's parser has none
                return None
            ip = ipaddress.IPv6Address(addr)
        else:
            m = _IPV4.match(addr)
            if m is None or any(int(o) > 255 for o in m.groups()):
                return None
            ip = ipaddress.IPv4Address(".".join(str(int(o)) for o in m.groups()))
        return ipaddress.ip_network((ip, int(bits)), strict=False)
    except ValueError:
        return None


def _ip_block(block: Obj, path: str, errs: Errors) -> None:
    """ValidateIPBlock: a CIDR, and excepts strictly inside it."""
    cidr = block.get("cidr")
    if not cidr:
        errs.append(FieldError(f"{path}.cidr", "Required value", "FieldValueRequired"))
        return
    net = parse_cidr(cidr)
    if net is None:
        errs.append(_invalid(f"{path}.cidr", cidr, "not a valid CIDR"))
        return
    for i, text in enumerate(block.get("except") or []):
        where = f"{path}.except[{i}]"
        inner = parse_cidr(text)
        if inner is None:
            # kube stops at the first unreadable one.
            errs.append(_invalid(where, text, "not a valid CIDR"))
            return
        if inner.version != net.version or inner.network_address not in net \
                or net.prefixlen >= inner.prefixlen:
            errs.append(_invalid(where, text, "must be a strict subset of `cidr`"))


def _peer(peer: Obj, path: str, errs: Errors) -> None:
    """ValidateNetworkPolicyPeer: an ipBlock alone, or pod and/or namespace selectors."""
    present = 0
    for key in ("podSelector", "namespaceSelector"):
        if isinstance(peer.get(key), dict):
            present += 1
            label_selector(peer[key], f"{path}.{key}", errs)
    block = peer.get("ipBlock")
    if isinstance(block, dict):
        present += 1
        _ip_block(block, f"{path}.ipBlock", errs)
    if present == 0:
        errs.append(FieldError(path, "Required value: must specify a peer",
                               "FieldValueRequired"))
    elif present > 1 and isinstance(block, dict):
        errs.append(FieldError(path, "Forbidden: may not specify both ipBlock and another peer",
                               "FieldValueForbidden"))


# -- the spec --

def validate(obj: Obj, errs: Errors) -> None:
    """ValidateNetworkPolicySpec (metadata is checked with every kind's)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    label_selector(spec.get("podSelector"), "spec.podSelector", errs)
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(_dicts(spec.get(direction))):
            rpath = f"spec.{direction}[{i}]"
            for j, port in enumerate(_dicts(rule.get("ports"))):
                _port(port, f"{rpath}.ports[{j}]", errs)
            for j, peer in enumerate(_dicts(rule.get(peers))):
                _peer(peer, f"{rpath}.{peers}[{j}]", errs)
    _policy_types(spec.get("policyTypes") or [], errs)


def _policy_types(types: list[Any], errs: Errors) -> None:
    # Duplicates pass, as in kube: the list is atomic and only its length is bounded.
    if len(types) > len(POLICY_TYPES):
        shown = ", ".join(_go(t) for t in types)
        errs.append(FieldError("spec.policyTypes", f"Invalid value: []networking.PolicyType"
                               f"{{{shown}}}: may not specify more than two policyTypes"))
        return
    for i, kind in enumerate(types):
        if kind not in POLICY_TYPES:
            errs.append(_not_supported(f"spec.policyTypes[{i}]", kind, POLICY_TYPES))


def policy_types(policy: Obj) -> tuple[bool, bool]:
    """Whether the policy isolates the pods it selects for ingress, for egress."""
    types = (policy.get("spec") or {}).get("policyTypes") or []
    return INGRESS in types, EGRESS in types
