"""Objects every cluster has from its first start: the namespaces, the
``kubernetes`` Service pointing at the API server, and the ``kube-dns``
Service on the well-known DNS address, the system PriorityClasses."""

from __future__ import annotations

from netplane.api import certificates, defaults, meta, priority, resources, storage
from netplane.api.meta import Obj
from netplane.cluster.apiserver import status
from netplane.cluster.apiserver.registry import Query, Registry

# kube-apiserver's own: default, and the system namespaces its controller keeps.
NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _ensure(registry: Registry, res: resources.Resource, obj: Obj) -> None:
    try:
        registry.create(res, obj["metadata"].get("namespace"), obj)
    except status.ApiError as e:
        if e.code != 409:
            raise


def _upsert_endpoints(registry: Registry, obj: Obj) -> None:
    try:
        current = registry.get(resources.ENDPOINTS, "default", "kubernetes")
    except status.ApiError:
        registry.create(resources.ENDPOINTS, "default", obj)
        return
    if current.get("subsets") != obj["subsets"]:
        current["subsets"] = obj["subsets"]
        registry.update(resources.ENDPOINTS, "default", "kubernetes", current)


RBAC_GROUP = "rbac.authorization.k8s.io"
READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete"]
APPS_SETS = ["daemonsets", "statefulsets", "statefulsets/scale"]

BATCH_READ = {"apiGroups": ["batch"], "resources": ["jobs", "jobs/status", "cronjobs",
                                                  "cronjobs/status"], "verbs": READ}
BATCH_WRITE = {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"],
               "verbs": [*READ, *WRITE, "deletecollection"]}
NETWORKING = "networking.k8s.io"
NETPOL_READ = {"apiGroups": [NETWORKING], "resources": ["networkpolicies"], "verbs": READ}
# metrics-server's system:aggregated-metrics-reader, which view, edit and
# admin aggregate (kubectl top for whoever may read pods).
METRICS_READ = {"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": READ}
NETPOL_WRITE = {"apiGroups": [NETWORKING], "resources": ["networkpolicies"],
                "verbs": [*READ, *WRITE, "deletecollection"]}
PDB_READ = {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets",
                                                   "poddisruptionbudgets/status"],
            "verbs": READ}
PDB_WRITE = {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"],
             "verbs": [*READ, *WRITE, "deletecollection"]}
EVICT = {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]}
HPA_READ = {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers",
                                                       "horizontalpodautoscalers/status"],
            "verbs": READ}
HPA_WRITE = {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"],
             "verbs": [*READ, *WRITE, "deletecollection"]}
CERTIFICATES = certificates.GROUP

# ClusterRoles every cluster has, and who holds them (kube-apiserver's
# bootstrap policy, trimmed to the kinds netplane serves).
CLUSTER_ROLES: dict[str, list[Obj]] = {
    "cluster-admin": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                      {"nonResourceURLs": ["*"], "verbs": ["*"]}],
    "system:discovery": [{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*",
                                              "/openapi", "/openapi/*", "/version",
                                              "/version/", "/healthz", "/livez", "/readyz"],
                          "verbs": ["get"]}],
    "system:public-info-viewer": [{"nonResourceURLs": ["/healthz", "/livez", "/readyz",
                                                       "/version", "/version/"],
                                   "verbs": ["get"]}],
    "system:basic-user": [{"apiGroups": ["authorization.k8s.io"],
                           "resources": ["selfsubjectaccessreviews",
                                         "selfsubjectrulesreviews"], "verbs": ["create"]},
                          {"apiGroups": ["authentication.k8s.io"],
                           "resources": ["selfsubjectreviews"], "verbs": ["create"]}],
    # What a node agent reads and writes (kube's system:node role, for the
    # kinds served here).
    "system:node": [
        {"apiGroups": [""], "resources": ["nodes", "nodes/status"], "verbs": [*READ, *WRITE]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": [*READ, "delete"]},
        {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["update", "patch"]},
        {"apiGroups": [""], "resources": ["services", "endpoints", "configmaps", "secrets",
                                          "namespaces"], "verbs": READ},
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
        # The node's local-path provisioner makes and removes its own volumes.
        {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": [*READ, *WRITE]},
        {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": READ},
        {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": READ},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "update", "patch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
         "verbs": [*READ, *WRITE]},
        # The node enforces network policy (a policy plugin's own role in kube).
        NETPOL_READ,
        # The node's mesh proxy routes by the Gateway API and authorizes.
        {"apiGroups": ["gateway.networking.k8s.io", "security.netplane.io"],
         "resources": ["httproutes", "referencegrants", "gateways", "gatewayclasses",
                       "authorizationpolicies"], "verbs": READ},
        # Its heartbeat: the node's Lease in kube-node-lease.
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": [*READ, *WRITE]},
        # It asks for its own certificates, and watches for them to be signed.
        {"apiGroups": [CERTIFICATES], "resources": ["certificatesigningrequests"],
         "verbs": ["create", *READ]},
    ],
    "view": [{"apiGroups": ["", "apps", "discovery.k8s.io"],
              "resources": ["pods", "pods/log", "services", "endpoints", "configmaps",
                            "serviceaccounts", "events", "deployments", "deployments/scale",
                            "replicasets", "replicasets/scale", "endpointslices",
                            "persistentvolumeclaims"],
              "verbs": READ}, BATCH_READ,
             {"apiGroups": ["apps"], "resources": [*APPS_SETS, "controllerrevisions"],
              "verbs": READ}, NETPOL_READ, PDB_READ, HPA_READ, METRICS_READ],
    "system:aggregated-metrics-reader": [METRICS_READ],
    "edit": [{"apiGroups": ["", "apps", "discovery.k8s.io"],
              "resources": ["pods", "pods/log", "pods/exec", "pods/attach", "pods/portforward",
                            "services", "endpoints", "configmaps", "secrets",
                            "serviceaccounts", "events", "deployments", "deployments/scale",
                            "replicasets", "replicasets/scale", "endpointslices",
                            "persistentvolumeclaims"],
              "verbs": [*READ, *WRITE, "deletecollection"]}, BATCH_WRITE,
             {"apiGroups": ["apps"], "resources": APPS_SETS,
              "verbs": [*READ, *WRITE, "deletecollection"]},
             {"apiGroups": ["apps"], "resources": ["controllerrevisions"], "verbs": READ},
             NETPOL_WRITE, PDB_WRITE, EVICT, HPA_WRITE, METRICS_READ],
}
# admin: edit, and the namespace's roles and bindings (kube's admin role).
CLUSTER_ROLES["admin"] = [*CLUSTER_ROLES["edit"], {
    "apiGroups": [RBAC_GROUP], "resources": ["roles", "rolebindings"],
    "verbs": [*READ, *WRITE, "deletecollection"]}]
CLUSTER_ROLE_BINDINGS: dict[str, tuple[str, list[str]]] = {
    "cluster-admin": ("cluster-admin", ["system:masters"]),
    "system:discovery": ("system:discovery", ["system:authenticated"]),
    "system:public-info-viewer": ("system:public-info-viewer",
                                  ["system:authenticated", "system:unauthenticated"]),
    "system:basic-user": ("system:basic-user", ["system:authenticated"]),
    "system:node": ("system:node", ["system:nodes"]),
}

# kube-controller-manager's roles for controllers, each bound to the
# controller's ServiceAccount in kube-system. netplane's own controllers
# reach the server as its administrator; these are for one that runs apart
# under that account (a signer of certificate requests).
CONTROLLER_ROLES: dict[str, list[Obj]] = {
    "certificate-controller": [
        {"apiGroups": [CERTIFICATES], "resources": ["certificatesigningrequests"],
         "verbs": [*READ, "delete"]},
        {"apiGroups": [CERTIFICATES], "resources": ["certificatesigningrequests/status",
                                                    "certificatesigningrequests/approval"],
         "verbs": ["update"]},
        {"apiGroups": [CERTIFICATES], "resources": ["signers"],
         "resourceNames": [certificates.KUBELET_CLIENT], "verbs": ["approve"]},
        {"apiGroups": [CERTIFICATES], "resources": ["signers"],
         "resourceNames": [certificates.LEGACY_UNKNOWN, certificates.KUBE_APISERVER_CLIENT,
                           certificates.KUBELET_CLIENT, certificates.KUBELET_SERVING],
         "verbs": ["sign"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
         "verbs": ["create"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"],
         "verbs": ["create", "update", "patch"]},
    ],
}
CONTROLLER_PREFIX = "system:controller:"


AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"


def ensure_rbac(registry: Registry) -> None:
    roles = {**CLUSTER_ROLES, **{CONTROLLER_PREFIX + n: r for n, r in CONTROLLER_ROLES.items()}}
    for name, rules in roles.items():
        _ensure(registry, resources.CLUSTERROLE, {
            "apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": BOOTSTRAPPING}, "rules": rules})
        _add_missing_rules(registry, name, rules)
    for name, (role, groups) in CLUSTER_ROLE_BINDINGS.items():
        _bind(registry, name, role, [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g}
                                     for g in groups])
    for name in CONTROLLER_ROLES:
        _bind(registry, CONTROLLER_PREFIX + name, CONTROLLER_PREFIX + name, [
            {"kind": "ServiceAccount", "name": name, "namespace": "kube-system"}])


BOOTSTRAPPING = {"kubernetes.io/bootstrapping": "rbac-defaults"}


def _bind(registry: Registry, name: str, role: str, subjects: list[Obj]) -> None:
    _ensure(registry, resources.CLUSTERROLEBINDING, {
        "apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": BOOTSTRAPPING},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects})


def _add_missing_rules(registry: Registry, name: str, rules: list[Obj]) -> None:
    """A role stored by an older version gains the rules added since, as
    kube-apiserver reconciles its bootstrap roles at start (unless told not
    to by the autoupdate annotation); rules a user added are kept."""
    role = registry.get(resources.CLUSTERROLE, None, name)
    if (meta.meta(role).get("annotations") or {}).get(AUTOUPDATE) == "false":
        return
    missing = [r for r in rules if r not in (role.get("rules") or [])]
    if missing:
        role["rules"] = [*(role.get("rules") or []), *missing]
        _update_once(registry, resources.CLUSTERROLE, role)


def label_namespaces(registry: Registry) -> None:
    """Namespaces stored before the API server kept the name label on them
    get it now, so that namespace selectors see every namespace alike."""
    for ns in registry.list(resources.NAMESPACE, Query())[0]:
        if meta.labels(ns).get(defaults.NAMESPACE_NAME_LABEL) != meta.name(ns):
            _update_once(registry, resources.NAMESPACE, ns)


def _update_once(registry: Registry, res: resources.Resource, obj: Obj) -> None:
    """An update at start that another server starting beside this one may
    have made first (a Conflict): then it is done."""
    try:
        registry.update(res, None, meta.name(obj), obj)
    except status.ApiError as e:
        if e.code != 409:
            raise


def ensure(registry: Registry, *, advertise_address: str, port: int, api_ip: str,
           dns_ip: str) -> None:
    ensure_rbac(registry)
    for ns in NAMESPACES:
        _ensure(registry, resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace",
                                                "metadata": {"name": ns}})
    label_namespaces(registry)
    _ensure(registry, resources.SERVICE, {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": api_ip, "ports": [{"name": "https", "port": 443,
                                                 "targetPort": port, "protocol": "TCP"}]}})
    _upsert_endpoints(registry, {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": advertise_address}],
                     "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]})
    # kube-apiserver's built-in priorities, above any a user may define.
    for name in priority.SYSTEM_CLASSES:
        _ensure(registry, resources.PRIORITYCLASS, priority.system_class(name))
    # k3s's default: a folder per claim on the node its first pod lands on.
    _ensure(registry, resources.STORAGECLASS, {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local-path",
                     "annotations": {storage.DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": storage.LOCAL_PATH, "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer"})
    _ensure(registry, resources.SERVICE, {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
        # No selector: each node's agent publishes its own DNS server as an
        # EndpointSlice of this Service.
        "spec": {"clusterIP": dns_ip,
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}})
