"""Server-side printing: ``meta.k8s.io/v1`` Table responses, which kubectl
asks for, with the columns ``kubectl get`` shows for each kind."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable
from typing import Any

from netplane.api import autoscaling, eventsv1, meta, selectors, signing
from netplane.api.meta import Obj
from netplane.api.quantity import quantity
from netplane.cluster.apiserver.customresources import column_value
from netplane.cluster.apiserver.metricsstore import cpu_quantity, memory_quantity

Column = tuple[str, str, Callable[[Obj], Any], int]  # name, type, cell, priority


def age(obj: Obj) -> str:
    ts = obj.get("metadata", {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    seconds = int((datetime.datetime.now(datetime.UTC) - meta.parse_time(ts)).total_seconds())
    return human_duration(max(seconds, 0))


def human_duration(seconds: int) -> str:
    """kube's duration.HumanDuration, which every age and duration in its
    tables goes through: two units while the first is small, one after."""
    if seconds < 0:
        return "<invalid>" if seconds < -1 else "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 10:
        return _two(minutes, "m", seconds % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return _two(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return _two(days, "d", hours % 24, "h")
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return _two(days // 365, "y", days % 365, "d")
    return f"{days // 365}y"


def _two(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}{small}{small_unit}" if small else f"{big}{big_unit}"


def _pod_ready(pod: Obj) -> str:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    total = len(pod.get("spec", {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def pod_status(pod: Obj) -> str:
    if meta.is_deleting(pod):
        return "Terminating"
    for s in pod.get("status", {}).get("containerStatuses") or []:
        waiting = (s.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return str(waiting["reason"])
        terminated = (s.get("state") or {}).get("terminated")
        if terminated and terminated.get("reason") and not s.get("ready"):
            return str(terminated["reason"])
    return str(pod.get("status", {}).get("phase", "Pending"))


def _restarts(pod: Obj) -> int:
    return sum(int(s.get("restartCount", 0))
               for s in pod.get("status", {}).get("containerStatuses") or [])


def _ports(svc: Obj) -> str:
    out = []
    for p in svc.get("spec", {}).get("ports") or []:
        node = f":{p['nodePort']}" if p.get("nodePort") else ""
        out.append(f"{p.get('port')}{node}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _external_ips(svc: Obj) -> str:
    spec = svc.get("spec", {})
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ips = [i["ip"] for i in ingress if i.get("ip")] + list(spec.get("externalIPs") or [])
    if ips:
        return ",".join(ips)
    return "<pending>" if spec.get("type") == "LoadBalancer" else "<none>"


def _selector(svc: Obj) -> str:
    sel = svc.get("spec", {}).get("selector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"


def _endpoints(ep: Obj) -> str:
    out = []
    for subset in ep.get("subsets") or []:
        for a in subset.get("addresses") or []:
            for p in subset.get("ports") or [{}]:
                out.append(f"{a.get('ip')}:{p.get('port')}" if p.get("port") else a.get("ip"))
    if not out:
        return "<none>"
    more = f" + {len(out) - 3} more..." if len(out) > 3 else ""
    return ",".join(out[:3]) + more


def _slice_ports(sl: Obj) -> str:
    return ",".join(str(p.get("port")) for p in sl.get("ports") or []) or "<unset>"


def _slice_endpoints(sl: Obj) -> str:
    addrs = [a for ep in sl.get("endpoints") or [] for a in ep.get("addresses") or []]
    if not addrs:
        return "<none>"
    more = f" + {len(addrs) - 3} more..." if len(addrs) > 3 else ""
    return ",".join(addrs[:3]) + more


def _node_status(node: Obj) -> str:
    ready = meta.condition(node, "Ready")
    text = "Ready" if ready and ready.get("status") == "True" else "NotReady"
    if node.get("spec", {}).get("unschedulable"):
        text += ",SchedulingDisabled"
    return text


def _node_info(key: str) -> Any:
    return lambda n: str(((n.get("status") or {}).get("nodeInfo") or {}).get(key) or
                         "<unknown>")


def _roles(node: Obj) -> str:
    roles = [k.split("/", 1)[1] for k in meta.labels(node)
             if k.startswith("node-role.kubernetes.io/")]
    return ",".join(sorted(roles)) or "<none>"


def _workload_ready(obj: Obj) -> str:
    st = obj.get("status", {})
    return f"{st.get('readyReplicas', 0)}/{obj.get('spec', {}).get('replicas', 0)}"


def _data_count(obj: Obj) -> int:
    return len(obj.get("data") or {}) + len(obj.get("binaryData") or {})


def _event_object(ev: Obj) -> str:
    ref = ev.get("involvedObject") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


def event_last_seen(ev: Obj) -> str:
    ts = ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp")
    if not ts:
        return "<unknown>"
    when = meta.parse_time(str(ts)[:19] + "Z")
    seconds = int((datetime.datetime.now(datetime.UTC) - when).total_seconds())
    return human_duration(max(seconds, 0))


def _event_source(ev: Obj) -> str:
    src = ev.get("source") or {}
    parts = [p for p in (src.get("component"), src.get("host")) if p]
    return ", ".join(parts) or str(ev.get("reportingComponent") or "")


def _subjects(kind: str) -> Callable[[Obj], Any]:
    def cell(binding: Obj) -> Any:
        names = []
        for s in binding.get("subjects") or []:
            if s.get("kind") == kind:
                ns = s.get("namespace")
                names.append(f"{ns}/{s.get('name')}" if kind == "ServiceAccount" and ns
                             else str(s.get("name")))
        return ", ".join(names)
    return cell


def _role_ref(binding: Obj) -> str:
    ref = binding.get("roleRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def _nominal(key: str) -> Callable[[Obj], Any]:
    def cell(obj: Obj) -> Any:
        section, field = key.split(".", 1)
        value = obj.get(section, {}).get(field)
        return "<none>" if value in (None, "") else value
    return cell


def _budget(key: str) -> Callable[[Obj], str]:
    def cell(pdb: Obj) -> str:
        value = (pdb.get("spec") or {}).get(key)
        return "N/A" if value is None else str(value)
    return cell


def _readiness_gates(pod: Obj) -> str:
    """kubectl's "true/all" of the pod's readiness gates."""
    gates = (pod.get("spec") or {}).get("readinessGates") or []
    if not gates:
        return "<none>"
    true = sum(1 for g in gates if meta.condition_true(pod, str(g.get("conditionType"))))
    return f"{true}/{len(gates)}"


def _metric(spec: Obj, current: Obj | None) -> str:
    """One metric of kubectl's TARGETS (printers.go formatHPAMetrics)."""
    kind = spec.get("type")
    field = autoscaling.SOURCES.get(str(kind))
    if field is None:
        return "<unknown type>"
    source, now = spec.get(field) or {}, ((current or {}).get(field) or {}).get("current")
    target = source.get("target") or {}
    if field in ("resource", "containerResource"):
        name = source.get("name", "")
        if target.get("averageValue") is not None:
            shown = (now or {}).get("averageValue", "<unknown>")
            return f"{name}: {shown}/{target['averageValue']}"
        util = (now or {}).get("averageUtilization")
        shown = "<unknown>" if util is None else f"{util}%"
        want = target.get("averageUtilization")
        return f"{name}: {shown}/{'<auto>' if want is None else f'{want}%'}"
    if field == "pods":
        return f"{(now or {}).get('averageValue', '<unknown>')}/{target.get('averageValue')}"
    if target.get("averageValue") is not None:
        return f"{(now or {}).get('averageValue', '<unknown>')}/{target['averageValue']} (avg)"
    return f"{(now or {}).get('value', '<unknown>')}/{target.get('value')}"


def hpa_targets(hpa: Obj) -> str:
    specs = (hpa.get("spec") or {}).get("metrics") or []
    if not specs:
        return "<none>"
    statuses = (hpa.get("status") or {}).get("currentMetrics") or []
    shown = [_metric(m, statuses[i] if i < len(statuses) else None)
             for i, m in enumerate(specs)]
    if len(shown) > 2:
        return f"{', '.join(shown[:2])} + {len(shown) - 2} more..."
    return ", ".join(shown)


def _hpa_reference(hpa: Obj) -> str:
    ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def format_selector(sel: Obj | None) -> str:
    """metav1.FormatLabelSelector: ``k=v`` and expressions, ordered by key."""
    return selectors.format_label_selector(sel)


def _containers(template: Obj, key: str) -> str:
    cs = ((template.get("spec") or {}).get("containers")) or []
    return ",".join(str(c.get(key, "")) for c in cs)


def _pod_template(obj: Obj) -> Obj:
    return dict((obj.get("spec") or {}).get("template") or {})


def _cronjob_template(cj: Obj) -> Obj:
    return dict(((cj.get("spec") or {}).get("jobTemplate") or {}).get("spec", {}).get(
        "template") or {})


def _job_status(job: Obj) -> str:
    """printJob's STATUS: a finished condition, else what the Job is doing."""
    if meta.condition_true(job, "Complete"):
        return "Complete"
    if meta.condition_true(job, "Failed"):
        return "Failed"
    if meta.is_deleting(job):
        return "Terminating"
    for cond, text in (("Suspended", "Suspended"), ("FailureTarget", "FailureTarget"),
                       ("SuccessCriteriaMet", "SuccessCriteriaMet")):
        if meta.condition_true(job, cond):
            return text
    return "Running"


def _job_completions(job: Obj) -> str:
    spec, succeeded = job.get("spec") or {}, (job.get("status") or {}).get("succeeded", 0)
    if spec.get("completions") is not None:
        return f"{succeeded}/{spec['completions']}"
    parallelism = int(spec.get("parallelism") or 0)
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _job_duration(job: Obj) -> str:
    st = job.get("status") or {}
    if not st.get("startTime"):
        return ""
    start = meta.parse_time(st["startTime"])
    end = meta.parse_time(st["completionTime"]) if st.get("completionTime") else \
        datetime.datetime.now(datetime.UTC)
    return human_duration(max(int((end - start).total_seconds()), 0))


def _last_schedule(cj: Obj) -> str:
    when = (cj.get("status") or {}).get("lastScheduleTime")
    return age({"metadata": {"creationTimestamp": when}}) if when else "<none>"


def _bool(value: Any) -> str:
    return "<unset>" if value is None else str(bool(value))


def _access_modes(obj: Obj, where: str) -> str:
    """printPersistentVolume's short modes: RWO, ROX, RWX, RWOP."""
    short = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
             "ReadWriteOncePod": "RWOP"}
    modes = (obj.get(where) or {}).get("accessModes") or []
    return ",".join(short.get(m, m) for m in modes)


def _claim(pv: Obj) -> str:
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    return f"{ref['namespace']}/{ref['name']}" if ref.get("name") else ""


def _class_name(sc: Obj) -> str:
    from netplane.api import storage

    name = meta.name(sc)
    return f"{name} (default)" if storage.is_default_class(sc) else name


def _status_count(key: str) -> Callable[[Obj], Any]:
    return lambda obj: int((obj.get("status") or {}).get(key, 0))


def _node_selector(ds: Obj) -> str:
    wanted = (_pod_template(ds).get("spec") or {}).get("nodeSelector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(wanted.items())) or "<none>"


def _requested_duration(csr: Obj) -> str:
    seconds = (csr.get("spec") or {}).get("expirationSeconds")
    return human_duration(seconds) if isinstance(seconds, int) else "<none>"


def _revision_controller(rev: Obj) -> str:
    """``daemonset.apps/NAME``: the controller's kind and group, as kubectl writes it."""
    ref = meta.controller_of(rev)
    if ref is None:
        return "<none>"
    group = str(ref.get("apiVersion", "")).rpartition("/")[0]
    kind = str(ref.get("kind", "")).lower()
    return f"{kind}.{group}/{ref.get('name', '')}" if group else f"{kind}/{ref.get('name', '')}"


NAME: Column = ("Name", "string", meta.name, 0)
AGE: Column = ("Age", "string", age, 0)

COLUMNS: dict[str, list[Column]] = {
    "Pod": [NAME, ("Ready", "string", _pod_ready, 0), ("Status", "string", pod_status, 0),
            ("Restarts", "integer", _restarts, 0), AGE,
            ("IP", "string", _nominal("status.podIP"), 1),
            ("Node", "string", _nominal("spec.nodeName"), 1),
            ("Nominated Node", "string", _nominal("status.nominatedNodeName"), 1),
            ("Readiness Gates", "string", _readiness_gates, 1)],
    "Service": [NAME, ("Type", "string", _nominal("spec.type"), 0),
                ("Cluster-IP", "string", _nominal("spec.clusterIP"), 0),
                ("External-IP", "string", _external_ips, 0),
                ("Port(s)", "string", _ports, 0), AGE,
                ("Selector", "string", _selector, 1)],
    "Endpoints": [NAME, ("Endpoints", "string", _endpoints, 0), AGE],
    "EndpointSlice": [NAME, ("AddressType", "string", lambda s: s.get("addressType", ""), 0),
                      ("Ports", "string", _slice_ports, 0),
                      ("Endpoints", "string", _slice_endpoints, 0), AGE],
    "Node": [NAME, ("Status", "string", _node_status, 0), ("Roles", "string", _roles, 0), AGE,
             ("Version", "string", lambda n: n.get("status", {}).get("nodeInfo", {}).get(
                 "kubeletVersion", ""), 0),
             # kube's wide columns, then the pod range netplane adds.
             ("Internal-IP", "string", lambda n: meta.node_address(n) or "<none>", 1),
             ("External-IP", "string",
              lambda n: meta.node_address(n, "ExternalIP") or "<none>", 1),
             ("OS-Image", "string", _node_info("osImage"), 1),
             ("Kernel-Version", "string", _node_info("kernelVersion"), 1),
             ("Container-Runtime", "string", _node_info("containerRuntimeVersion"), 1),
             ("Pod-CIDR", "string", _nominal("spec.podCIDR"), 1)],
    "Deployment": [NAME, ("Ready", "string", _workload_ready, 0),
                   ("Up-to-date", "integer",
                    lambda d: d.get("status", {}).get("updatedReplicas", 0), 0),
                   ("Available", "integer",
                    lambda d: d.get("status", {}).get("availableReplicas", 0), 0), AGE],
    "ReplicaSet": [NAME, ("Desired", "integer", lambda r: r.get("spec", {}).get("replicas", 0), 0),
                   ("Current", "integer", lambda r: r.get("status", {}).get("replicas", 0), 0),
                   ("Ready", "integer", lambda r: r.get("status", {}).get("readyReplicas", 0), 0),
                   AGE],
    "Job": [NAME, ("Status", "string", _job_status, 0),
            ("Completions", "string", _job_completions, 0),
            ("Duration", "string", _job_duration, 0), AGE,
            ("Containers", "string", lambda j: _containers(_pod_template(j), "name"), 1),
            ("Images", "string", lambda j: _containers(_pod_template(j), "image"), 1),
            ("Selector", "string", lambda j: format_selector(j.get("spec", {}).get("selector")),
             1)],
    "CronJob": [NAME, ("Schedule", "string", lambda c: c.get("spec", {}).get("schedule", ""), 0),
                ("Timezone", "string", lambda c: c.get("spec", {}).get("timeZone") or "<none>",
                 0),
                ("Suspend", "boolean", lambda c: _bool(c.get("spec", {}).get("suspend")), 0),
                ("Active", "integer", lambda c: len(c.get("status", {}).get("active") or []), 0),
                ("Last Schedule", "string", _last_schedule, 0), AGE,
                ("Containers", "string", lambda c: _containers(_cronjob_template(c), "name"), 1),
                ("Images", "string", lambda c: _containers(_cronjob_template(c), "image"), 1),
                ("Selector", "string", lambda c: format_selector(
                    c.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("selector")),
                 1)],
    "PersistentVolume": [
        NAME, ("Capacity", "string", lambda v: (v.get("spec", {}).get("capacity") or {}).get(
            "storage", ""), 0),
        ("Access Modes", "string", lambda v: _access_modes(v, "spec"), 0),
        ("Reclaim Policy", "string",
         lambda v: v.get("spec", {}).get("persistentVolumeReclaimPolicy", ""), 0),
        ("Status", "string", lambda v: v.get("status", {}).get("phase", ""), 0),
        ("Claim", "string", _claim, 0),
        ("StorageClass", "string", lambda v: v.get("spec", {}).get("storageClassName", ""), 0),
        ("VolumeAttributesClass", "string", lambda v: v.get("spec", {}).get(
            "volumeAttributesClassName") or "<unset>", 0),
        ("Reason", "string", lambda v: v.get("status", {}).get("reason", ""), 0), AGE,
        ("VolumeMode", "string", lambda v: v.get("spec", {}).get("volumeMode", ""), 1)],
    "PersistentVolumeClaim": [
        NAME, ("Status", "string", lambda c: c.get("status", {}).get("phase", ""), 0),
        ("Volume", "string", lambda c: c.get("spec", {}).get("volumeName", ""), 0),
        ("Capacity", "string", lambda c: (c.get("status", {}).get("capacity") or {}).get(
            "storage", ""), 0),
        ("Access Modes", "string", lambda c: _access_modes(c, "status"), 0),
        ("StorageClass", "string", lambda c: c.get("spec", {}).get("storageClassName") or "",
         0),
        ("VolumeAttributesClass", "string", lambda c: c.get("spec", {}).get(
            "volumeAttributesClassName") or "<unset>", 0), AGE,
        ("VolumeMode", "string", lambda c: c.get("spec", {}).get("volumeMode", ""), 1)],
    "StorageClass": [
        ("Name", "string", _class_name, 0),
        ("Provisioner", "string", lambda s: s.get("provisioner", ""), 0),
        ("ReclaimPolicy", "string", lambda s: s.get("reclaimPolicy", ""), 0),
        ("VolumeBindingMode", "string", lambda s: s.get("volumeBindingMode", ""), 0),
        ("AllowVolumeExpansion", "string",
         lambda s: str(bool(s.get("allowVolumeExpansion"))).lower(), 0), AGE],
    "DaemonSet": [NAME, ("Desired", "integer", _status_count("desiredNumberScheduled"), 0),
                  ("Current", "integer", _status_count("currentNumberScheduled"), 0),
                  ("Ready", "integer", _status_count("numberReady"), 0),
                  ("Up-to-date", "integer", _status_count("updatedNumberScheduled"), 0),
                  ("Available", "integer", _status_count("numberAvailable"), 0),
                  ("Node Selector", "string", _node_selector, 0), AGE,
                  ("Containers", "string", lambda d: _containers(_pod_template(d), "name"), 1),
                  ("Images", "string", lambda d: _containers(_pod_template(d), "image"), 1),
                  ("Selector", "string", lambda d: format_selector(
                      d.get("spec", {}).get("selector")), 1)],
    "StatefulSet": [NAME, ("Ready", "string", _workload_ready, 0), AGE,
                    ("Containers", "string", lambda s: _containers(_pod_template(s), "name"), 1),
                    ("Images", "string", lambda s: _containers(_pod_template(s), "image"), 1)],
    "ControllerRevision": [NAME, ("Controller", "string", _revision_controller, 0),
                           ("Revision", "string", lambda r: int(r.get("revision", 0)), 0), AGE],
    "ConfigMap": [NAME, ("Data", "integer", _data_count, 0), AGE],
    "Secret": [NAME, ("Type", "string", lambda x: x.get("type", "Opaque"), 0),
               ("Data", "integer", _data_count, 0), AGE],
    "ServiceAccount": [NAME, ("Secrets", "integer", lambda sa: len(sa.get("secrets") or []), 0),
                       AGE],
    "Event": [("Last Seen", "string", event_last_seen, 0),
              ("Type", "string", lambda e: e.get("type", ""), 0),
              ("Reason", "string", lambda e: e.get("reason", ""), 0),
              ("Object", "string", _event_object, 0),
              ("Subobject", "string", lambda e: (e.get("involvedObject") or {}).get(
                  "fieldPath", ""), 1),
              ("Source", "string", _event_source, 1),
              ("Message", "string", lambda e: e.get("message", ""), 0),
              ("First Seen", "string", lambda e: age({"metadata": {
                  "creationTimestamp": e.get("firstTimestamp")}}), 1),
              ("Count", "string", lambda e: str(e.get("count", 1)), 1),
              ("Name", "string", meta.name, 1)],
    "Role": [NAME, ("Created At", "date", lambda r: r["metadata"].get("creationTimestamp"), 0)],
    "ClusterRole": [NAME, ("Created At", "date",
                           lambda r: r["metadata"].get("creationTimestamp"), 0)],
    "RoleBinding": [NAME, ("Role", "string", _role_ref, 0), AGE,
                    ("Users", "string", _subjects("User"), 1),
                    ("Groups", "string", _subjects("Group"), 1),
                    ("ServiceAccounts", "string", _subjects("ServiceAccount"), 1)],
    "ClusterRoleBinding": [NAME, ("Role", "string", _role_ref, 0), AGE,
                           ("Users", "string", _subjects("User"), 1),
                           ("Groups", "string", _subjects("Group"), 1),
                           ("ServiceAccounts", "string", _subjects("ServiceAccount"), 1)],
    "PodDisruptionBudget": [NAME, ("Min Available", "string", _budget("minAvailable"), 0),
                            ("Max Unavailable", "string", _budget("maxUnavailable"), 0),
                            ("Allowed Disruptions", "integer", lambda b: int(
                                (b.get("status") or {}).get("disruptionsAllowed") or 0), 0),
                            AGE],
    "HorizontalPodAutoscaler": [
        NAME, ("Reference", "string", _hpa_reference, 0), ("Targets", "string", hpa_targets, 0),
        ("MinPods", "string", lambda h: str((h.get("spec") or {}).get("minReplicas", "<unset>")),
         0),
        ("MaxPods", "integer", lambda h: int((h.get("spec") or {}).get("maxReplicas") or 0), 0),
        ("Replicas", "integer", lambda h: int(
            (h.get("status") or {}).get("currentReplicas") or 0), 0), AGE],
    "PriorityClass": [NAME, ("Value", "integer", lambda o: o.get("value", 0), 0),
                      ("Global-Default", "boolean", lambda o: bool(o.get("globalDefault")), 0),
                      AGE, ("PreemptionPolicy", "string",
                            lambda o: o.get("preemptionPolicy") or "<unset>", 0)],
    "CertificateSigningRequest": [
        NAME, AGE, ("SignerName", "string", lambda c: str(
            (c.get("spec") or {}).get("signerName") or "<none>"), 0),
        ("Requestor", "string", lambda c: str((c.get("spec") or {}).get("username") or ""),
         0),
        ("RequestedDuration", "string", _requested_duration, 0),
        ("Condition", "string", signing.condition_summary, 0)],
    "Lease": [NAME, ("Holder", "string", lambda o: str(
        (o.get("spec") or {}).get("holderIdentity") or ""), 0), AGE],
    "NetworkPolicy": [NAME, ("Pod-Selector", "string", lambda p: format_selector(
        (p.get("spec") or {}).get("podSelector")), 0), AGE],
    "Namespace": [NAME, ("Status", "string",
                         lambda n: n.get("status", {}).get("phase", "Active"), 0), AGE],
}


def _usage_sum(key: str) -> Callable[[Obj], Any]:
    """A PodMetrics' usage of ``key``, its containers summed (metrics-server's table)."""
    fmt = cpu_quantity if key == "cpu" else memory_quantity

    def cell(pm: Obj) -> Any:
        return fmt(sum(quantity(c["usage"][key]) for c in pm.get("containers") or []))
    return cell


METRICS_COLUMNS: dict[str, list[Column]] = {
    "NodeMetrics": [NAME, ("CPU", "string", _nominal("usage.cpu"), 0),
                    ("Memory", "string", _nominal("usage.memory"), 0),
                    ("Window", "string", lambda m: m.get("window", ""), 0)],
    "PodMetrics": [NAME, ("CPU", "string", _usage_sum("cpu"), 0),
                   ("Memory", "string", _usage_sum("memory"), 0),
                   ("Window", "string", lambda m: m.get("window", ""), 0)],
}
COLUMNS.update(METRICS_COLUMNS)
COLUMNS["CustomResourceDefinition"] = [
    NAME, ("Created At", "date", _nominal("metadata.creationTimestamp"), 0)]


def _since(value: Any) -> Any:
    """A date column's cell, as kube prints it: the time since."""
    if not isinstance(value, str):
        return value
    try:
        then = meta.parse_time(value)
    except ValueError:
        return value
    return human_duration(max(int((datetime.datetime.now(datetime.UTC) - then)
                                  .total_seconds()), 0))


def _printer_cell(json_path: str, kind: str) -> Callable[[Obj], Any]:
    def cell(obj: Obj) -> Any:
        value = column_value(obj, json_path)
        if kind == "date":
            return _since(value)
        if isinstance(value, dict | list):
            return json.dumps(value, separators=(",", ":"))
        return value
    return cell


def printer_columns(specs: Iterable[Obj]) -> list[Column]:
    """A custom kind's columns: Name, then its additionalPrinterColumns (Age
    alone when it declares none, as apiextensions-apiserver defaults them)."""
    out = [NAME]
    for spec in specs:
        kind = str(spec.get("type", "string"))
        out.append((str(spec.get("name", "")), kind,
                    _printer_cell(str(spec.get("jsonPath", "")), kind),
                    int(spec.get("priority", 0))))
    return out if len(out) > 1 else [NAME, AGE]


def columns(kind: str) -> list[Column]:
    return COLUMNS.get(kind, [NAME, AGE])


def _printable(obj: Obj) -> Obj:
    """The spelling the columns read: v1 Events, autoscaling/v2 HPAs."""
    if obj.get("apiVersion") == eventsv1.API_VERSION:
        return eventsv1.to_core(obj)
    if obj.get("apiVersion") == autoscaling.API_V1 and obj.get("kind") == \
            "HorizontalPodAutoscaler":
        return autoscaling.from_v1(obj, None)
    return obj


def _row_object(obj: Obj, include: str) -> Obj | None:
    """What a row carries (``includeObject``): kubectl sorts and filters on it."""
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {})}


def table(kind: str, items: list[Obj], resource_version: str, *,
          include_object: str = "Metadata", cols: list[Column] | None = None) -> Obj:
    cols = cols if cols is not None else columns(kind)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {"name": n, "type": t, "format": "name" if n == "Name" else "", "description": "",
             "priority": p} for n, t, _, p in cols],
        "rows": [{"cells": [cell(_printable(obj)) for _, _, cell, _ in cols],
                  "object": _row_object(obj, include_object)} for obj in items],
    }
