"""Defaults applied by the API server before validation, as Kubernetes does."""

from __future__ import annotations

import base64

from netplane.api.meta import Obj

# The label kube-apiserver keeps on every Namespace, so that selectors (a
# NetworkPolicy's namespaceSelector) can pick a namespace by its name.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def _container_ports(spec: Obj) -> None:
    for c in spec.get("containers") or []:
        if not isinstance(c, dict):
            continue
        for p in c.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
        c.setdefault("imagePullPolicy", "IfNotPresent")


def pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    _container_ports(spec)


def pod(obj: Obj) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        pod_spec(spec)
        # The ServiceAccount admission plugin's default (pods only, not
        # templates), and its deprecated alias.
        spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def workload(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        pod_spec(template["spec"])
    if obj.get("kind") == "Deployment":
        strategy = spec.setdefault("strategy", {})
        if isinstance(strategy, dict):
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                if isinstance(rolling, dict):
                    rolling.setdefault("maxUnavailable", "25%")
                    rolling.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)


def _template(spec: Obj) -> None:
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        pod_spec(template["spec"])


def daemon_set(obj: Obj) -> None:
    """apps/v1 SetDefaults_DaemonSet: RollingUpdate of one node at a time."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _template(spec)
    strategy = spec.setdefault("updateStrategy", {})
    if isinstance(strategy, dict):
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            if isinstance(rolling, dict):
                rolling.setdefault("maxUnavailable", 1)
                rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)


def stateful_set(obj: Obj) -> None:
    """apps/v1 SetDefaults_StatefulSet: partition 0 only when the strategy
    type itself was defaulted, as kube does."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _template(spec)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {})
    if isinstance(strategy, dict):
        if "type" not in strategy:
            strategy["type"] = "RollingUpdate"
            strategy.setdefault("rollingUpdate", {})
        rolling = strategy.get("rollingUpdate")
        if strategy["type"] == "RollingUpdate" and isinstance(rolling, dict):
            rolling.setdefault("partition", 0)
    retention = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
    if isinstance(retention, dict):
        retention.setdefault("whenDeleted", "Retain")
        retention.setdefault("whenScaled", "Retain")
    for claim in spec.get("volumeClaimTemplates") or []:
        if isinstance(claim, dict) and isinstance(claim.get("spec"), dict):
            claim["spec"].setdefault("volumeMode", "Filesystem")
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)


def service(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
    for p in spec.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
            if "targetPort" not in p and "port" in p:
                p["targetPort"] = p["port"]


def secret(obj: Obj) -> None:
    """``stringData`` is a write-only convenience: merged into ``data``."""
    obj.setdefault("type", "Opaque")
    plain = obj.pop("stringData", None)
    if isinstance(plain, dict) and plain:
        data = obj.get("data")
        if not isinstance(data, dict):
            data = obj["data"] = {}
        for k, v in plain.items():
            data[k] = base64.b64encode(str(v).encode()).decode()


def event(obj: Obj) -> None:
    obj.setdefault("type", "Normal")
    obj.setdefault("count", 1)


def namespace(obj: Obj) -> None:
    """SetDefaults_Namespace and the strategy's Canonicalize: the name label
    on create and on every update, whatever the writer put there."""
    md = obj.get("metadata")
    if isinstance(md, dict) and md.get("name"):
        labels = md.get("labels")
        if not isinstance(labels, dict):
            labels = md["labels"] = {}
        labels[NAMESPACE_NAME_LABEL] = md["name"]


def _rbac_subjects(obj: Obj) -> None:
    for s in obj.get("subjects") or []:
        if isinstance(s, dict) and s.get("kind") in ("User", "Group"):
            s.setdefault("apiGroup", "rbac.authorization.k8s.io")


def _batch(obj: Obj) -> None:
    from netplane.api import batch  # batch builds on pod_spec above: imported late

    (batch.job_defaults if obj.get("kind") == "Job" else batch.cronjob_defaults)(obj)


def _storage(obj: Obj) -> None:
    from netplane.api import storage  # storage builds on validation: imported late

    {"PersistentVolume": storage.pv_defaults, "PersistentVolumeClaim": storage.pvc_defaults,
     "StorageClass": storage.class_defaults}[str(obj.get("kind"))](obj)


def _priority_class(obj: Obj) -> None:
    obj.setdefault("preemptionPolicy", "PreemptLowerPriority")


def _autoscaler(obj: Obj) -> None:
    from netplane.api import autoscaling  # builds on validation: imported late

    autoscaling.defaults(obj)


def _netpol(obj: Obj) -> None:
    from netplane.api import netpol  # netpol builds on validation: imported late

    netpol.defaults(obj)


_BY_KIND = {"Namespace": namespace, "NetworkPolicy": _netpol,
            "Secret": secret, "Event": event, "RoleBinding": _rbac_subjects,
            "ClusterRoleBinding": _rbac_subjects, "Pod": pod, "Deployment": workload,
            "ReplicaSet": workload, "Service": service, "DaemonSet": daemon_set,
            "StatefulSet": stateful_set,
            "Job": _batch, "CronJob": _batch, "PersistentVolume": _storage,
            "PersistentVolumeClaim": _storage, "StorageClass": _storage,
            "PriorityClass": _priority_class, "HorizontalPodAutoscaler": _autoscaler}


def apply(obj: Obj) -> None:
    fn = _BY_KIND.get(str(obj.get("kind", "")))
    if fn is not None:
        fn(obj)
