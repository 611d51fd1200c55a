"""Label selectors (string form and LabelSelector objects) and field selectors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netplane.api.meta import Obj


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "=="):
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        return not present  # "!"


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: dict[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


EVERYTHING = Selector(())

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_RE = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_RE = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def parse(text: str) -> Selector:
    """Parse the string form used by ``-l`` and ``?labelSelector=``."""
    if not text or not text.strip():
        return EVERYTHING
    reqs: list[Requirement] = []
    for part in _split_top(text):
        if m := _SET_RE.match(part):
            values = tuple(v.strip() for v in m.group(4).split(",") if v.strip())
            if not values:
                raise SelectorError(f"for 'in', 'notin' operators, the set of values can't "
                                    f"be empty: {part.strip()!r}")
            reqs.append(Requirement(m.group(1), m.group(3), values))
        elif m := _EQ_RE.match(part):
            reqs.append(Requirement(m.group(1), m.group(3), (m.group(4),)))
        elif m := _EXISTS_RE.match(part):
            reqs.append(Requirement(m.group(2), "!" if m.group(1) else "exists"))
        else:
            raise SelectorError(
                f"unable to parse requirement {part.strip()!r} in selector {text!r}")
    return Selector(tuple(reqs))


def from_map(match_labels: dict[str, str] | None) -> Selector:
    """A Service's ``spec.selector``: every key must equal its value."""
    items = sorted((match_labels or {}).items())
    return Selector(tuple(Requirement(k, "=", (v,)) for k, v in items))


_OPS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def from_label_selector(sel: Obj | None) -> Selector:
    """A LabelSelector object (``matchLabels`` + ``matchExpressions``)."""
    if not sel:
        return EVERYTHING
    reqs = list(from_map(sel.get("matchLabels")).requirements)
    for expr in sel.get("matchExpressions") or []:
        reqs.append(_expression(expr))
    return Selector(tuple(reqs))


def _expression(expr: Any) -> Requirement:
    """One ``matchExpressions`` item, with the checks Kubernetes makes."""
    if not isinstance(expr, dict):
        raise SelectorError(f"a match expression must be an object, not {expr!r}")
    op = _OPS.get(expr.get("operator", ""))
    if op is None:
        raise SelectorError(f"unknown operator {expr.get('operator')!r}")
    key, values = expr.get("key"), expr.get("values") or []
    if not isinstance(key, str) or not key:
        raise SelectorError("a match expression needs a key")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SelectorError(f"the values of {key!r} must be a list of strings")
    if op in ("in", "notin") and not values:
        raise SelectorError(f"values of {key!r} must be non-empty for operator "
                            f"{expr['operator']!r}")
    if op in ("exists", "!") and values:
        raise SelectorError(f"values of {key!r} must be empty for operator "
                            f"{expr['operator']!r}")
    return Requirement(key, op, tuple(values))


def to_string(sel: Selector) -> str:
    out = []
    for r in sel.requirements:
        if r.op in ("=", "==", "!="):
            out.append(f"{r.key}{r.op}{r.values[0]}")
        elif r.op in ("in", "notin"):
            out.append(f"{r.key} {r.op} ({','.join(r.values)})")
        elif r.op == "exists":
            out.append(r.key)
        else:
            out.append(f"!{r.key}")
    return ",".join(out)


# apimachinery's qualified names and label values, with its messages word
# for word (k8s.io/apimachinery pkg/util/validation, v0.32).
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = f"({QUALIFIED_NAME_FMT})?"
DNS1123_SUBDOMAIN_FMT = ("[a-z0-9]([-a-z0-9]*[a-z0-9])?"
                         r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(f"^{QUALIFIED_NAME_FMT}$")
_LABEL_VALUE = re.compile(f"^{LABEL_VALUE_FMT}$")
_DNS1123_SUBDOMAIN = re.compile(f"^{DNS1123_SUBDOMAIN_FMT}$")
_QUALIFIED_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start "
                  "and end with an alphanumeric character")


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """apimachinery's RegexError, double spaces before "or" included."""
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def subdomain_errors(value: str) -> list[str]:
    """IsDNS1123Subdomain."""
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.match(value):
        errs.append(regex_error("a lowercase RFC 1123 subdomain must consist of lower case "
                                "alphanumeric characters, '-' or '.', and must start and end "
                                "with an alphanumeric character", DNS1123_SUBDOMAIN_FMT,
                                "example.com"))
    return errs


def qualified_name_errors(value: str) -> list[str]:
    """IsQualifiedName: what a label key must be (``example.com/MyName``)."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) > 2:
        return ["a qualified name " + regex_error(_QUALIFIED_MSG, QUALIFIED_NAME_FMT, "MyName",
                                                  "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    name = parts[-1]
    if len(parts) == 2:
        if not parts[0]:
            errs.append("prefix part must be non-empty")
        else:
            errs += [f"prefix part {m}" for m in subdomain_errors(parts[0])]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not _QUALIFIED_NAME.match(name):
        errs.append("name part " + regex_error(_QUALIFIED_MSG, QUALIFIED_NAME_FMT, "MyName",
                                               "my.name", "123-abc"))
    return errs


def label_value_errors(value: str) -> list[str]:
    """IsValidLabelValue."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_VALUE.match(value):
        errs.append(regex_error("a valid label must be an empty string or consist of "
                                "alphanumeric characters, '-', '_' or '.', and must start and "
                                "end with an alphanumeric character", LABEL_VALUE_FMT,
                                "MyValue", "my_value", "12345"))
    return errs


def _requirement_text(key: str, op: str, values: list[str]) -> str | None:
    """labels.Requirement's String(), None where NewRequirement refuses it."""
    if qualified_name_errors(key) or any(label_value_errors(v) for v in values):
        return None
    if op in ("In", "NotIn"):
        if not values:
            return None
        shown = values[0] if len(values) == 1 else ",".join(sorted(values))
        return f"{key} {op.lower()} ({shown})"
    if op in ("Exists", "DoesNotExist"):
        return None if values else (key if op == "Exists" else f"!{key}")
    return None


def format_label_selector(sel: Any) -> str:
    """metav1.FormatLabelSelector: ``<none>`` for a missing or empty selector,
    else its requirements ordered by key, ``<error>`` for one it cannot read."""
    if not isinstance(sel, dict):
        return "<none>"
    labels, exprs = sel.get("matchLabels") or {}, sel.get("matchExpressions") or []
    reqs: list[tuple[str, str]] = []
    for k, v in sorted(labels.items()):
        if qualified_name_errors(str(k)) or label_value_errors(str(v)):
            return "<error>"
        reqs.append((str(k), f"{k}={v}"))
    for e in exprs:
        if not isinstance(e, dict):
            return "<error>"
        text = _requirement_text(str(e.get("key", "")), str(e.get("operator", "")),
                                 [str(v) for v in e.get("values") or []])
        if text is None:
            return "<error>"
        reqs.append((str(e.get("key", "")), text))
    # Selector.Add sorts by key; for the few requirements of a selector Go's
    # sort is an insertion sort, which keeps equal keys in order, as sorted() does.
    return ",".join(text for _, text in sorted(reqs, key=lambda r: r[0])) or "<none>"


# Field selectors: the fields Kubernetes indexes that clients rely on
# (kubectl describe finds an object's events by involvedObject.*).
FIELD_PATHS: dict[str, tuple[str, ...]] = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
    "spec.nodeName": ("spec", "nodeName"),
    "spec.serviceAccountName": ("spec", "serviceAccountName"),
    "spec.signerName": ("spec", "signerName"),
    "status.phase": ("status", "phase"),
    "status.podIP": ("status", "podIP"),
    "type": ("type",),
    "reason": ("reason",),
    "source": ("source", "component"),
    "reportingComponent": ("reportingComponent",),
    **{f"{prefix}.{f}": ("involvedObject", f)
       for prefix in ("involvedObject", "regarding")  # events.k8s.io/v1's name for it
       for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion",
                 "fieldPath")},
    "reportingController": ("reportingComponent",),
}


def _field_value(obj: Obj, path: tuple[str, ...]) -> str:
    value: Any = obj
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


# What a custom kind's objects may be selected by, besides its selectableFields.
CUSTOM_FIELD_PATHS: dict[str, tuple[str, ...]] = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
}


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[tuple[tuple[str, ...], str, str], ...]  # (path, op, value)

    def matches(self, obj: Obj) -> bool:
        for path, op, value in self.terms:
            if (_field_value(obj, path) == value) != (op == "="):
                return False
        return True


NO_FIELDS = FieldSelector(())


def parse_fields(text: str, fields: Mapping[str, tuple[str, ...]] | None = None,
                 ) -> FieldSelector:
    """A field selector over ``fields`` (by default the compiled-in kinds')."""
    known = FIELD_PATHS if fields is None else fields
    if not text or not text.strip():
        return FieldSelector(())
    terms = []
    for part in text.split(","):
        m = re.match(r"^\s*([A-Za-z0-9.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise SelectorError(f"invalid field selector {part!r}")
        field, op, value = m.groups()
        if field not in known:
            raise SelectorError(
                f'field label not supported: "{field}" (supported: {", ".join(known)})')
        terms.append((known[field], "!=" if op == "!=" else "=", value))
    return FieldSelector(tuple(terms))
