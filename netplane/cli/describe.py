"""``netplane describe KIND NAME``: an object in readable form, as kubectl
describe prints it, ending with the Events recorded about it."""

from __future__ import annotations

from collections.abc import Callable

from netplane.api import codec, meta, netpol
from netplane.api.meta import Obj
from netplane.api.resources import EVENT, Resource
from netplane.cli import autoscaler
from netplane.cli.printing import format_table
from netplane.cluster.apiserver.tables import event_last_seen, format_selector, pod_status
from netplane.cluster.client import Client

Lines = list[str]
WIDTH = 20  # where values start, as kubectl's tab stops put them


def _pairs(values: dict[str, str] | None) -> str:
    return "\n".join(f"{k}={v}" for k, v in sorted((values or {}).items())) or "<none>"


def _field(lines: Lines, label: str, value: object, indent: int = 0) -> None:
    text = str(value) if value not in (None, "") else "<none>"
    first, *rest = text.splitlines() or [""]
    pad = " " * indent
    width = WIDTH - indent
    lines.append(f"{pad}{label + ':':<{width}}{first}")
    lines.extend(f"{pad}{'':<{width}}{more}" for more in rest)


def _header(obj: Obj) -> Lines:
    md = obj.get("metadata", {})
    lines: Lines = []
    _field(lines, "Name", md.get("name"))
    if md.get("namespace"):
        _field(lines, "Namespace", md["namespace"])
    _field(lines, "Labels", _pairs(md.get("labels")))
    annotations = {k: v for k, v in (md.get("annotations") or {}).items()
                   if k != "kubectl.kubernetes.io/last-applied-configuration"}
    _field(lines, "Annotations", _pairs(annotations))
    _field(lines, "CreationTimestamp", md.get("creationTimestamp"))
    return lines


def _pod(pod: Obj) -> Lines:
    spec, st = pod.get("spec", {}), pod.get("status", {})
    lines: Lines = []
    _field(lines, "Node", f"{spec.get('nodeName', '<none>')}/{st.get('hostIP', '')}".rstrip("/"))
    _field(lines, "Status", pod_status(pod))
    _field(lines, "IP", st.get("podIP"))
    _field(lines, "Service Account", spec.get("serviceAccountName", "default"))
    lines.append("Containers:")
    statuses = {s.get("name"): s for s in st.get("containerStatuses") or []}
    for c in spec.get("containers") or []:
        s = statuses.get(c["name"], {})
        lines.append(f"  {c['name']}:")
        _field(lines, "Image", c.get("image"), 4)
        ports = ", ".join(f"{p['containerPort']}/{p.get('protocol', 'TCP')}"
                          for p in c.get("ports") or [])
        _field(lines, "Port", ports, 4)
        _field(lines, "State", next(iter((s.get("state") or {"waiting": {}}).keys())).title(), 4)
        _field(lines, "Ready", str(bool(s.get("ready"))), 4)
        _field(lines, "Restart Count", s.get("restartCount", 0), 4)
    lines.append("Conditions:")
    lines.append(f"  {'Type':<18}Status")
    for cond in st.get("conditions") or []:
        lines.append(f"  {cond.get('type', ''):<18}{cond.get('status', '')}")
    return lines


def _service(svc: Obj) -> Lines:
    spec = svc.get("spec", {})
    lines: Lines = []
    _field(lines, "Selector", _pairs(spec.get("selector")).replace("\n", ","))
    _field(lines, "Type", spec.get("type", "ClusterIP"))
    _field(lines, "IP", spec.get("clusterIP"))
    for p in spec.get("ports") or []:
        _field(lines, "Port", f"{p.get('name') or '<unset>'}  {p['port']}/{p.get('protocol')}")
        _field(lines, "TargetPort", f"{p.get('targetPort')}/{p.get('protocol')}")
        if p.get("nodePort"):
            _field(lines, "NodePort", f"{p.get('name') or '<unset>'}  {p['nodePort']}/"
                                      f"{p.get('protocol')}")
    _field(lines, "Session Affinity", spec.get("sessionAffinity", "None"))
    return lines


def _workload(obj: Obj) -> Lines:
    spec, st = obj.get("spec", {}), obj.get("status", {})
    lines: Lines = []
    sel = (spec.get("selector") or {}).get("matchLabels")
    _field(lines, "Selector", _pairs(sel).replace("\n", ","))
    _field(lines, "Replicas", f"{spec.get('replicas', 1)} desired | "
                              f"{st.get('updatedReplicas', st.get('replicas', 0))} updated | "
                              f"{st.get('replicas', 0)} total | "
                              f"{st.get('availableReplicas', 0)} available")
    if spec.get("strategy"):
        _field(lines, "StrategyType", spec["strategy"].get("type"))
    return lines


def _generic(obj: Obj) -> Lines:
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    if not body:
        return []
    lines: Lines = []
    for key, value in body.items():
        lines.append(f"{key[:1].upper()}{key[1:]}:")
        lines.extend(f"  {line}" for line in codec.to_yaml(value).rstrip().splitlines())
    return lines


# What netplane acts on; a field set outside these is kept but does nothing
# here, and describe says so (filled in as the features come).
POD_SPEC_FIELDS = frozenset({
    "containers", "restartPolicy", "dnsPolicy", "dnsConfig", "hostname", "subdomain",
    "nodeName", "nodeSelector", "terminationGracePeriodSeconds", "serviceAccountName",
    "serviceAccount", "automountServiceAccountToken", "tolerations",
    "volumes", "initContainers", "shareProcessNamespace",
    # the scheduler honours required node affinity (DaemonSet pods carry one)
    "affinity",
    # defaulted by the API server, no behaviour of their own to miss
    "schedulerName", "securityContext", "enableServiceLinks", "preemptionPolicy",
    "priority"})
CONTAINER_FIELDS = frozenset({
    "name", "image", "command", "args", "env", "ports", "readinessProbe", "workingDir",
    "stdin", "imagePullPolicy", "terminationMessagePath", "terminationMessagePolicy",
    "livenessProbe", "startupProbe", "lifecycle", "volumeMounts", "envFrom",
    # an init container's: Always makes it a sidecar
    "restartPolicy"})
DEPLOYMENT_SPEC_FIELDS = frozenset({"replicas", "selector", "template", "strategy",
                                    "revisionHistoryLimit"})
SET_SPEC_FIELDS = {
    "DaemonSet": frozenset({"selector", "template", "updateStrategy", "minReadySeconds",
                            "revisionHistoryLimit"}),
    "StatefulSet": frozenset({"replicas", "selector", "template", "serviceName",
                              "podManagementPolicy", "updateStrategy", "minReadySeconds",
                              "revisionHistoryLimit", "ordinals",
                              "persistentVolumeClaimRetentionPolicy",
                              "volumeClaimTemplates"})}


def ignored_fields(obj: Obj) -> list[str]:
    """Paths of fields the object sets that netplane keeps but does not act on."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    out: list[str] = []
    if kind in ("Deployment", "ReplicaSet", *SET_SPEC_FIELDS):
        known = SET_SPEC_FIELDS.get(str(kind)) or (
            DEPLOYMENT_SPEC_FIELDS if kind == "Deployment" else
            DEPLOYMENT_SPEC_FIELDS - {"strategy", "revisionHistoryLimit"})
        out += [f"spec.{k}" for k, v in spec.items() if k not in known and v not in ({}, [])]
        spec, prefix = (spec.get("template") or {}).get("spec") or {}, "spec.template.spec"
    elif kind == "Pod":
        prefix = "spec"
    else:
        return out
    out += [f"{prefix}.{k}" for k, v in spec.items()
            if k not in POD_SPEC_FIELDS and v not in ({}, [], None)]
    for i, c in enumerate(spec.get("containers") or []):
        out += [f"{prefix}.containers[{i}].{k}" for k, v in c.items()
                if k not in CONTAINER_FIELDS and v not in ({}, [], None)]
    return out


_BY_KIND: dict[str, Callable[[Obj], Lines]] = {
    "Pod": _pod, "Service": _service, "Deployment": _workload, "ReplicaSet": _workload,
    "HorizontalPodAutoscaler": autoscaler.lines,
}


# -- kubectl's own layout (describe.go), word for word, for the kinds it
# prints without events --

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MAX_ANNOTATION = 140  # kubectl's maxAnnotationLen


def tabbed(lines: Lines) -> Lines:
    """Go's tabwriter as kubectl sets it up (padding 2): in each run of lines
    with a tab, the text before the tab is padded to the widest of the run."""
    out: Lines = []
    run: list[tuple[str, str]] = []

    def flush() -> None:
        width = max((len(cell) for cell, _ in run), default=0) + 2
        out.extend(f"{cell:<{width}}{rest}" for cell, rest in run)
        run.clear()

    for line in lines:
        if "\t" in line:
            cell, _, rest = line.partition("\t")
            run.append((cell, rest))
        else:
            flush()
            out.append(line)
    flush()
    return out


def go_time(stamp: str | None) -> str:
    """A metav1.Time as Go's %s prints it, in the local zone."""
    if not stamp:
        return "0001-01-01 00:00:00 +0000 UTC"
    t = meta.parse_time(stamp).astimezone()
    return f"{t:%Y-%m-%d %H:%M:%S} {t:%z} {t.tzname()}"


def _multiline(title: str, values: dict[str, str], *, annotations: bool = False) -> Lines:
    """printLabelsMultiline, or printAnnotationsMultiline (which leaves out
    the last applied configuration and folds long values)."""
    skip = {LAST_APPLIED} if annotations else set()
    keys = sorted(k for k in values if k not in skip)
    if not keys:
        return [f"{title}:\t<none>"]
    lines: Lines = []
    for i, key in enumerate(keys):
        lead = f"{title}:\t" if i == 0 else "\t"
        value = values[key]
        if not annotations:
            lines.append(f"{lead}{key}={value}")
            continue
        value = value.removesuffix("\n")
        if len(value) + len(key) + 2 > MAX_ANNOTATION or "\n" in value:
            lines.append(f"{lead}{key}:")
            lines += [f"\t  {part[:MAX_ANNOTATION - 2]}"
                      + ("..." if len(part) > MAX_ANNOTATION - 2 else "")
                      for part in value.split("\n")]
        else:
            lines.append(f"{lead}{key}: {value}")
    return lines


def _policy_ports(rule: Obj, indent: str) -> Lines:
    ports = rule.get("ports") or []
    if not ports:
        return [f"{indent}To Port: <any> (traffic allowed to all ports)"]
    out = []
    for p in ports:
        port = "<nil>" if p.get("port") is None else p["port"]
        proto = p.get("protocol") or "TCP"
        if p.get("endPort") is None:
            out.append(f"{indent}To Port: {port}/{proto}")
        else:
            out.append(f"{indent}To Port Range: {port}-{p['endPort']}/{proto}")
    return out


def _policy_peer(peer: Obj, indent: str) -> Lines:
    pods, spaces, block = (peer.get("podSelector"), peer.get("namespaceSelector"),
                           peer.get("ipBlock"))
    out = []
    if spaces is not None:
        out.append(f"  {indent}NamespaceSelector: {format_selector(spaces)}")
    if pods is not None:
        out.append(f"  {indent}PodSelector: {format_selector(pods)}")
    if pods is None and spaces is None and block is not None:
        out += [f"  {indent}IPBlock:", f"    {indent}CIDR: {block.get('cidr', '')}",
                f"    {indent}Except: {', '.join(block.get('except') or [])}"]
    return out


def _policy_rules(rules: list[Obj], direction: str, indent: str = "    ") -> Lines:
    """printNetworkPolicySpecIngressFrom / printNetworkPolicySpecEgressTo."""
    peers, word, what = (("from", "From", "source") if direction == "ingress" else
                         ("to", "To", "destination"))
    if not rules:
        return [f"{indent}<none> (Selected pods are isolated for {direction} connectivity)"]
    out: Lines = []
    for i, rule in enumerate(rules):
        out += _policy_ports(rule, indent)
        if not rule.get(peers):
            out.append(f"{indent}{word}: <any> (traffic not restricted by {what})")
        for peer in rule.get(peers) or []:
            out.append(f"{indent}{word}:")
            out += _policy_peer(peer, indent)
        if i != len(rules) - 1:
            out.append(f"{indent}----------")
    return out


def network_policy(policy: Obj) -> str:
    """kubectl describe networkpolicy."""
    md, spec = policy.get("metadata", {}), policy.get("spec") or {}
    lines = [f"Name:\t{md.get('name', '')}", f"Namespace:\t{md.get('namespace', '')}",
             f"Created on:\t{go_time(md.get('creationTimestamp'))}",
             *_multiline("Labels", md.get("labels") or {}),
             *_multiline("Annotations", md.get("annotations") or {}, annotations=True),
             "Spec:"]
    selector = spec.get("podSelector") or {}
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        lines.append("  PodSelector:     <none> (Allowing the specific traffic to all pods in "
                     "this namespace)")
    else:
        lines.append(f"  PodSelector:     {format_selector(selector)}")
    ingress, egress = netpol.policy_types(policy)
    for direction, enabled in (("ingress", ingress), ("egress", egress)):
        if enabled:
            lines.append(f"  Allowing {direction} traffic:")
            lines += _policy_rules(spec.get(direction) or [], direction)
        else:
            lines.append(f"  Not affecting {direction} traffic")
    lines.append(f"  Policy Types: {', '.join(spec.get('policyTypes') or []) or '<none>'}")
    return "\n".join(tabbed(lines))


_WHOLE: dict[str, Callable[[Obj], str]] = {"NetworkPolicy": network_policy}


def event_lines(events: list[Obj]) -> Lines:
    if not events:
        return ["Events:          <none>"]
    events = sorted(events, key=lambda e: str(e.get("lastTimestamp") or ""))
    table = {"columnDefinitions": [{"name": n} for n in ("Type", "Reason", "Age", "From",
                                                         "Message")],
             "rows": [{"cells": [e.get("type", ""), e.get("reason", ""),
                                 event_last_seen(e) if (e.get("count") or 1) == 1 else
                                 f"{event_last_seen(e)} (x{e['count']})",
                                 (e.get("source") or {}).get("component", ""),
                                 e.get("message", "")]} for e in events]}
    text = format_table(table)
    head, *rows = text.splitlines()
    head = head.title()
    # A rule under each column name, keeping the header's spacing.
    rule = "".join("-" if ch != " " else " " for ch in head)
    return ["Events:", f"  {head}", f"  {rule}", *(f"  {r}" for r in rows)]


async def describe(client: Client, res: Resource, name: str, namespace: str | None) -> str:
    obj = await client.get(res, name, namespace)
    if res.kind in _WHOLE:
        return _WHOLE[res.kind](obj)
    lines = _header(obj) + _BY_KIND.get(res.kind, _generic)(obj)
    ignored = ignored_fields(obj)
    if ignored:
        _field(lines, "Ignored fields", "\n".join(ignored) + "\n(kept as written; netplane "
               "does not act on them yet)")
    selector = f"involvedObject.name={name},involvedObject.kind={res.kind}"
    if meta.uid(obj):
        selector += f",involvedObject.uid={meta.uid(obj)}"
    found = await client.list(EVENT, namespace or "default", field_selector=selector)
    lines += event_lines(found.get("items", []))
    return "\n".join(lines)
