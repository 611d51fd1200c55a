"""The resource kinds netplane serves, with their REST names and spellings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    """One kind as the API serves it (Kubernetes' APIResource)."""

    kind: str
    plural: str
    singular: str
    group: str  # "" for the core group
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    # Groupings kubectl expands, like "all" in ``kubectl get all``.
    categories: tuple[str, ...] = ()
    # Kinds that are only ever created (reviews): nothing stored, no reads.
    create_only: bool = False
    # Kinds computed on each read (resource metrics): nothing stored, no writes.
    read_only: bool = False
    # Served from a CustomResourceDefinition, not compiled in.
    custom: bool = False

    @property
    def verbs(self) -> tuple[str, ...]:
        if self.create_only:
            return ("create",)
        if self.read_only:
            return ("get", "list")
        return ("create", "delete", "deletecollection", "get", "list", "patch", "update",
                "watch")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def collection_path(self, namespace: str | None = None) -> str:
        if self.namespaced and namespace:
            return f"{self.group_version_path}/namespaces/{namespace}/{self.plural}"
        return f"{self.group_version_path}/{self.plural}"

    def object_path(self, name: str, namespace: str | None = None) -> str:
        return f"{self.collection_path(namespace)}/{name}"

    def spellings(self) -> set[str]:
        return {self.kind.lower(), self.plural, self.singular, *self.short_names}


ALL_CATEGORY = ("all",)
RBAC = "rbac.authorization.k8s.io"

NAMESPACE = Resource("Namespace", "namespaces", "namespace", "", "v1", False, ("ns",))
NODE = Resource("Node", "nodes", "node", "", "v1", False, ("no",))
POD = Resource("Pod", "pods", "pod", "", "v1", True, ("po",), ALL_CATEGORY)
SERVICE = Resource("Service", "services", "service", "", "v1", True, ("svc",), ALL_CATEGORY)
ENDPOINTS = Resource("Endpoints", "endpoints", "endpoints", "", "v1", True, ("ep",))
CONFIGMAP = Resource("ConfigMap", "configmaps", "configmap", "", "v1", True, ("cm",))
SECRET = Resource("Secret", "secrets", "secret", "", "v1", True)
SERVICEACCOUNT = Resource("ServiceAccount", "serviceaccounts", "serviceaccount", "", "v1", True,
                          ("sa",))
EVENT = Resource("Event", "events", "event", "", "v1", True, ("ev",))
# The same objects as v1 Events, with the newer field names.
EVENT_V1 = Resource("Event", "events", "event", "events.k8s.io", "v1", True, ("ev",))
REPLICASET = Resource("ReplicaSet", "replicasets", "replicaset", "apps", "v1", True, ("rs",),
                      ALL_CATEGORY)
DEPLOYMENT = Resource("Deployment", "deployments", "deployment", "apps", "v1", True,
                      ("deploy",), ALL_CATEGORY)
JOB = Resource("Job", "jobs", "job", "batch", "v1", True, (), ALL_CATEGORY)
CRONJOB = Resource("CronJob", "cronjobs", "cronjob", "batch", "v1", True, ("cj",), ALL_CATEGORY)
PERSISTENTVOLUME = Resource("PersistentVolume", "persistentvolumes", "persistentvolume", "",
                            "v1", False, ("pv",))
PERSISTENTVOLUMECLAIM = Resource("PersistentVolumeClaim", "persistentvolumeclaims",
                                 "persistentvolumeclaim", "", "v1", True, ("pvc",))
STORAGECLASS = Resource("StorageClass", "storageclasses", "storageclass", "storage.k8s.io", "v1",
                        False, ("sc",))
DAEMONSET = Resource("DaemonSet", "daemonsets", "daemonset", "apps", "v1", True, ("ds",),
                     ALL_CATEGORY)
STATEFULSET = Resource("StatefulSet", "statefulsets", "statefulset", "apps", "v1", True, ("sts",),
                       ALL_CATEGORY)
# The revisions DaemonSets and StatefulSets keep of their pod templates.
CONTROLLERREVISION = Resource("ControllerRevision", "controllerrevisions", "controllerrevision",
                              "apps", "v1", True)
ENDPOINTSLICE = Resource("EndpointSlice", "endpointslices", "endpointslice", "discovery.k8s.io",
                         "v1", True)
NETWORKPOLICY = Resource("NetworkPolicy", "networkpolicies", "networkpolicy",
                         "networking.k8s.io", "v1", True, ("netpol",))
LEASE = Resource("Lease", "leases", "lease", "coordination.k8s.io", "v1", True)
PRIORITYCLASS = Resource("PriorityClass", "priorityclasses", "priorityclass", "scheduling.k8s.io",
                         "v1", False, ("pc",))
PODDISRUPTIONBUDGET = Resource("PodDisruptionBudget", "poddisruptionbudgets",
                               "poddisruptionbudget", "policy", "v1", True, ("pdb",))
HORIZONTALPODAUTOSCALER = Resource("HorizontalPodAutoscaler", "horizontalpodautoscalers",
                                   "horizontalpodautoscaler", "autoscaling", "v2", True,
                                   ("hpa",), ALL_CATEGORY)
# The same objects in the older version, which speaks of a CPU target only.
HORIZONTALPODAUTOSCALER_V1 = Resource("HorizontalPodAutoscaler", "horizontalpodautoscalers",
                                      "horizontalpodautoscaler", "autoscaling", "v1", True,
                                      ("hpa",), ALL_CATEGORY)
CERTIFICATESIGNINGREQUEST = Resource("CertificateSigningRequest", "certificatesigningrequests",
                                     "certificatesigningrequest", "certificates.k8s.io", "v1",
                                     False, ("csr",))
NODE_LEASE_NAMESPACE = "kube-node-lease"  # where each node's heartbeat Lease lives
ROLE = Resource("Role", "roles", "role", RBAC, "v1", True)
CLUSTERROLE = Resource("ClusterRole", "clusterroles", "clusterrole", RBAC, "v1", False)
ROLEBINDING = Resource("RoleBinding", "rolebindings", "rolebinding", RBAC, "v1", True)
CLUSTERROLEBINDING = Resource("ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding",
                              RBAC, "v1", False)

CUSTOMRESOURCEDEFINITION = Resource("CustomResourceDefinition", "customresourcedefinitions",
                                    "customresourcedefinition", "apiextensions.k8s.io", "v1",
                                    False, ("crd", "crds"))

AUTHZ, AUTHN = "authorization.k8s.io", "authentication.k8s.io"
SELFSUBJECTACCESSREVIEW = Resource("SelfSubjectAccessReview", "selfsubjectaccessreviews",
                                   "selfsubjectaccessreview", AUTHZ, "v1", False,
                                   create_only=True)
SELFSUBJECTRULESREVIEW = Resource("SelfSubjectRulesReview", "selfsubjectrulesreviews",
                                  "selfsubjectrulesreview", AUTHZ, "v1", True, create_only=True)
SUBJECTACCESSREVIEW = Resource("SubjectAccessReview", "subjectaccessreviews",
                               "subjectaccessreview", AUTHZ, "v1", False, create_only=True)
SELFSUBJECTREVIEW = Resource("SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview",
                             AUTHN, "v1", False, create_only=True)
TOKENREVIEW = Resource("TokenReview", "tokenreviews", "tokenreview", AUTHN, "v1", False,
                       create_only=True)

ALL: tuple[Resource, ...] = (NAMESPACE, NODE, POD, SERVICE, ENDPOINTS, CONFIGMAP, SECRET,
                             SERVICEACCOUNT, EVENT, REPLICASET, DEPLOYMENT, ENDPOINTSLICE,
                             EVENT_V1, JOB, CRONJOB,
                             PERSISTENTVOLUME, PERSISTENTVOLUMECLAIM, STORAGECLASS,
                             DAEMONSET, STATEFULSET, CONTROLLERREVISION, NETWORKPOLICY, LEASE,
                             PRIORITYCLASS, PODDISRUPTIONBUDGET,
                             HORIZONTALPODAUTOSCALER, HORIZONTALPODAUTOSCALER_V1,
                             CERTIFICATESIGNINGREQUEST,
                             ROLE, CLUSTERROLE, ROLEBINDING, CLUSTERROLEBINDING,
                             CUSTOMRESOURCEDEFINITION,
                             SELFSUBJECTACCESSREVIEW, SELFSUBJECTRULESREVIEW,
                             SUBJECTACCESSREVIEW, SELFSUBJECTREVIEW, TOKENREVIEW)

# metrics.k8s.io, as metrics-server serves it: read from the nodes' agents,
# never stored (so not in ALL, which the store, GC and namespaces walk).
NODEMETRICS = Resource("NodeMetrics", "nodes", "", "metrics.k8s.io", "v1beta1", False,
                       read_only=True)
PODMETRICS = Resource("PodMetrics", "pods", "", "metrics.k8s.io", "v1beta1", True,
                      read_only=True)
METRICS: tuple[Resource, ...] = (NODEMETRICS, PODMETRICS)
SERVED: tuple[Resource, ...] = (*ALL, *METRICS)

_BY_KIND = {(r.api_version, r.kind): r for r in ALL}
_BY_SPELLING: dict[str, Resource] = {}
for _r in ALL:
    for _s in _r.spellings():
        _BY_SPELLING.setdefault(_s, _r)  # the core group first, as kubectl prefers it


class UnknownKind(LookupError):
    pass


def by_kind(api_version: str, kind: str) -> Resource:
    """The resource for a manifest's ``apiVersion`` and ``kind``."""
    try:
        return _BY_KIND[(api_version, kind)]
    except KeyError:
        known = ", ".join(sorted(f"{r.api_version}/{r.kind}" for r in ALL))
        raise UnknownKind(f"unknown kind {api_version}/{kind} (known: {known})") from None


def by_name(spelling: str) -> Resource:
    """The resource for a kubectl-style spelling: ``pods``, ``po``, ``svc``..."""
    name, _, group = spelling.lower().partition(".")
    if group:
        for r in ALL:
            if name in r.spellings() and (r.group == group or r.group.startswith(group + ".")):
                return r
    try:
        return _BY_SPELLING[name]
    except KeyError:
        known = ", ".join(r.plural for r in ALL)
        raise UnknownKind(f'unknown resource type "{spelling}" (known: {known})') from None


def group_versions() -> dict[str, list[Resource]]:
    """Resources grouped by ``apiVersion``, for discovery."""
    out: dict[str, list[Resource]] = {}
    for r in SERVED:
        out.setdefault(r.api_version, []).append(r)
    return out


def in_category(category: str) -> list[Resource]:
    """The kinds ``kubectl get CATEGORY`` lists, in discovery order."""
    return [r for r in ALL if category in r.categories]
