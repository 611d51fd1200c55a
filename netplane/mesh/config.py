"""From the cluster's objects to what the node proxies route with, for the
mesh (east-west, the Gateway API's GAMMA): an HTTPRoute whose parentRef is
a Service applies to traffic sent to that Service. A route in the
Service's own namespace (a producer route) applies to every client; one in
another namespace (a consumer route) only to clients in its namespace, and
for them it comes first. Backends are Services: a reference across
namespaces needs a ReferenceGrant in the target namespace. Also the status
each route gets per parent, with the specification's reasons."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import astuple, dataclass, field, replace

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.mesh import authz
from netplane.mesh.identity import TRUST_DOMAIN, Identity
from netplane.mesh.routes import BackendKey, Route, RouteError, RouteTable

CONTROLLER = "netplane.io/mesh"
GATEWAY_GROUP = "gateway.networking.k8s.io"
SERVICE_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, order=True)
class ServicePort:
    namespace: str
    name: str
    port: int


@dataclass
class MeshConfig:
    producer: dict[ServicePort, RouteTable] = field(default_factory=dict)
    consumer: dict[tuple[str, ServicePort], RouteTable] = field(default_factory=dict)
    # Ready endpoints ("ip:port") of each backend the routes name and may use,
    # and of every Service port (where traffic goes when no route applies).
    backends: dict[BackendKey, list[str]] = field(default_factory=dict)
    # Per route ("ns/name"): its RouteParentStatus list.
    statuses: dict[str, list[Obj]] = field(default_factory=dict)
    vips: dict[tuple[str, int], ServicePort] = field(default_factory=dict)  # clusterIP:port
    namespace_of: dict[str, str] = field(default_factory=dict)  # pod IP -> namespace
    identity_of: dict[str, Identity] = field(default_factory=dict)  # pod IP -> workload
    endpoint_nodes: dict[str, str] = field(default_factory=dict)  # "ip:port" -> node name
    node_ips: dict[str, str] = field(default_factory=dict)  # node name -> InternalIP
    pod_nodes: dict[str, str] = field(default_factory=dict)  # pod IP -> node name
    pod_labels: dict[str, dict[str, str]] = field(default_factory=dict)  # pod IP -> labels
    policies: list[Obj] = field(default_factory=list)  # AuthorizationPolicies
    # Service ports that speak HTTP: appProtocol http, or named http or http-*.
    http: set[ServicePort] = field(default_factory=set)
    # Circuit breaking: the most requests in flight to a backend at once.
    max_requests: dict[BackendKey, int] = field(default_factory=dict)
    _defaults: dict[ServicePort, RouteTable] = field(default_factory=dict, repr=False)

    def table_for(self, client_namespace: str, target: ServicePort) -> RouteTable | None:
        """The routes for a client in ``client_namespace`` sending to
        ``target``; None: no route, plain L4 Service traffic."""
        return self.consumer.get((client_namespace, target)) or self.producer.get(target)

    def authorize(self, source: Identity | None, endpoint: str, method: str, path: str
                  ) -> authz.Verdict:
        """Whether ``source`` may send this request to the pod at ``endpoint``."""
        ip, _, port = endpoint.rpartition(":")
        target = authz.Target(self.namespace_of.get(ip, ""), self.pod_labels.get(ip, {}),
                              method=method, path=path, port=int(port or 0))
        return authz.decide(self.policies, source, target)

    def may_tunnel(self, node: str, source: Identity, target: str, local_node: str) -> bool:
        """Whether the node proxy of ``node`` may open a stream as
        ``source`` to ``target`` ("ip:port") on ``local_node``: the target
        is a pod here, and ``node`` runs a pod of that workload."""
        if self.pod_nodes.get(target.rpartition(":")[0]) != local_node:
            return False
        return any(who == source and self.pod_nodes.get(ip) == node
                   for ip, who in self.identity_of.items())

    def routing(self, client_ip: str, destination: tuple[str, int]
                ) -> tuple[ServicePort, RouteTable] | None:
        """For a connection the node captured: the Service it was sent to
        and the routes that apply (the Service itself when none does)."""
        target = self.vips.get(destination)
        if target is None:
            return None
        table = self.table_for(self.namespace_of.get(client_ip, ""), target)
        if table is None:
            table = self._defaults.get(target)
            if table is None:
                table = self._defaults[target] = RouteTable([Route.to_service(*astuple(target))],
                                                            use_hostnames=False)
        return target, table


MAX_REQUESTS = "netplane.io/max-requests"


def max_requests(svc: Obj) -> int | None:
    """The Service's circuit-breaking limit (its ``netplane.io/max-requests``
    annotation, Envoy's max_requests for its backend); None: none or not a
    positive number."""
    value = str(meta.meta(svc).get("annotations", {}).get(MAX_REQUESTS, ""))
    return int(value) if value.isdigit() and int(value) > 0 else None


def speaks_http(port: Obj) -> bool:
    """A Service port's protocol as Istio selects it: ``appProtocol``, else
    the port's name (``http``, ``http-...``)."""
    app = str(port.get("appProtocol") or "").lower()
    if app:
        return app in ("http", "kubernetes.io/h2c") or app.startswith("http-")
    name = str(port.get("name") or "").lower()
    return name == "http" or name.startswith("http-")


def _is_service(ref: Obj) -> bool:
    return ref.get("kind", "") == "Service" and ref.get("group", "") in ("", "core")


def condition(kind: str, ok: bool, reason: str, message: str, generation: int) -> Obj:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason,
            "message": message, "observedGeneration": generation}


@dataclass
class Index:
    services: dict[tuple[str, str], Obj]
    slices: dict[tuple[str, str], list[Obj]]
    grants: list[Obj]

    def granted(self, route_ns: str, target_ns: str, service: str) -> bool:
        """A ReferenceGrant in ``target_ns`` lets HTTPRoutes of ``route_ns``
        refer to the Service (by name, or all Services)."""
        for g in self.grants:
            if meta.namespace(g) != target_ns:
                continue
            spec = g.get("spec") or {}
            sources = any(f.get("group") == GATEWAY_GROUP and f.get("kind") == "HTTPRoute"
                          and f.get("namespace") == route_ns for f in spec.get("from") or ())
            targets = any(t.get("group", "") in ("", "core") and t.get("kind") == "Service"
                          and t.get("name") in (None, "", service) for t in spec.get("to") or ())
            if sources and targets:
                return True
        return False

    def endpoints(self, key: BackendKey, nodes: dict[str, str] | None = None) -> list[str]:
        svc = self.services.get((key.namespace, key.name))
        if svc is None:
            return []
        port = next((p for p in (svc.get("spec") or {}).get("ports") or ()
                     if p.get("port") == key.port), None)
        if port is None:
            return []
        out: list[str] = []
        for sl in self.slices.get((key.namespace, key.name), ()):
            target = next((p.get("port") for p in sl.get("ports") or ()
                           if p.get("name", "") == port.get("name", "")), None)
            if target is None:
                continue
            for ep in sl.get("endpoints") or ():
                if (ep.get("conditions") or {}).get("ready") is False:
                    continue
                out += [f"{a}:{target}" for a in ep.get("addresses") or ()]
                if nodes is not None and ep.get("nodeName"):
                    nodes.update({f"{a}:{target}": ep["nodeName"]
                                  for a in ep.get("addresses") or ()})
        return sorted(set(out))


def backend_problem(index: Index, route_ns: str, ref: Obj) -> tuple[str, str] | None:
    """Why a backendRef cannot be used (reason, message), or None."""
    kind = f"{ref.get('group') or 'core'}/{ref.get('kind', 'Service')}"
    if ref.get("kind", "Service") != "Service" or ref.get("group", "") not in ("", "core"):
        return "InvalidKind", f"backend {ref.get('name')}: kind {kind} is not supported"
    ns = ref.get("namespace") or route_ns
    name = ref.get("name", "")
    if ns != route_ns and not index.granted(route_ns, ns, name):
        return "RefNotPermitted", (f"backend {ns}/{name}: no ReferenceGrant in {ns} lets "
                                   f"HTTPRoutes of {route_ns} refer to it")
    svc = index.services.get((ns, name))
    if svc is None:
        return "BackendNotFound", f"backend {ns}/{name}: no such Service"
    ports = [p.get("port") for p in (svc.get("spec") or {}).get("ports") or ()]
    if ref.get("port") not in ports:
        return "BackendNotFound", (f"backend {ns}/{name}: the Service has no port "
                                   f"{ref.get('port')}")
    return None


@dataclass
class Backends:
    """What a route's backendRefs resolve to: its ResolvedRefs condition,
    why each refused one (by rule and backend index) takes nothing, and the
    Service ports of those it may use."""
    resolved: Obj
    refused: dict[tuple[int, int], str]
    usable: set[BackendKey]

    @classmethod
    def of(cls, index: Index, route: Obj, generation: int) -> Backends:
        ns = meta.namespace(route)
        problems: list[tuple[str, str]] = []
        refused: dict[tuple[int, int], str] = {}
        usable: set[BackendKey] = set()
        for i, rule in enumerate((route.get("spec") or {}).get("rules") or ()):
            for j, ref in enumerate(rule.get("backendRefs") or ()):
                problem = backend_problem(index, ns, ref)
                if problem is None:
                    usable.add(BackendKey(ref.get("namespace") or ns, ref["name"],
                                          ref.get("port")))
                else:
                    problems.append(problem)
                    refused[(i, j)] = problem[1]
        resolved = condition("ResolvedRefs", not problems,
                             problems[0][0] if problems else "ResolvedRefs",
                             "; ".join(m for _, m in problems), generation)
        return cls(resolved, refused, usable)


def refusing(route: Route, refused: dict[tuple[int, int], str]) -> Route:
    """The route with its unusable backends marked: requests the weights
    send to them get 500, as the specification says."""
    rules = []
    for rule, matches in route.rules:
        backends = tuple(replace(b, problem=refused[(rule.index, j)])
                         if (rule.index, j) in refused else b
                         for j, b in enumerate(rule.backends))
        rules.append((replace(rule, backends=backends), matches))
    return replace(route, rules=tuple(rules))


def build(routes: Iterable[Obj], services: Iterable[Obj], slices: Iterable[Obj],
          grants: Iterable[Obj] = (), pods: Iterable[Obj] = (),
          nodes: Iterable[Obj] = (), policies: Iterable[Obj] = ()) -> MeshConfig:
    index = Index(services={(meta.namespace(s), meta.name(s)): s for s in services},
                   slices={}, grants=list(grants))
    for sl in slices:
        owner = meta.labels(sl).get(SERVICE_LABEL)
        if owner:
            index.slices.setdefault((meta.namespace(sl), owner), []).append(sl)
    producer: dict[ServicePort, list[Route]] = {}
    consumer: dict[tuple[str, ServicePort], list[Route]] = {}
    config = MeshConfig(policies=list(policies))
    usable: set[BackendKey] = set()
    for (sns, sname), sobj in index.services.items():
        sspec = sobj.get("spec") or {}
        ips = [ip for ip in sspec.get("clusterIPs") or [sspec.get("clusterIP")]
               if ip and ip != "None"]
        for p in sspec.get("ports") or ():
            if p.get("protocol", "TCP") != "TCP":
                continue
            usable.add(BackendKey(sns, sname, int(p["port"])))
            if (limit := max_requests(sobj)) is not None:
                config.max_requests[BackendKey(sns, sname, int(p["port"]))] = limit
            if speaks_http(p):
                config.http.add(ServicePort(sns, sname, int(p["port"])))
            for ip in ips:
                config.vips[(ip, int(p["port"]))] = ServicePort(sns, sname, int(p["port"]))
    for pod in pods:
        who = Identity(TRUST_DOMAIN, meta.namespace(pod),
                       (pod.get("spec") or {}).get("serviceAccountName") or "default")
        for ip in (pod.get("status") or {}).get("podIPs") or ():
            config.namespace_of[ip["ip"]] = meta.namespace(pod)
            config.identity_of[ip["ip"]] = who
            config.pod_labels[ip["ip"]] = meta.labels(pod)
            if node_name := (pod.get("spec") or {}).get("nodeName"):
                config.pod_nodes[ip["ip"]] = node_name
    for node in nodes:
        if address := meta.node_address(node):
            config.node_ips[meta.name(node)] = address
    for obj in routes:
        ns, generation = meta.namespace(obj), int(obj["metadata"].get("generation", 1))
        parents = [p for p in (obj.get("spec") or {}).get("parentRefs") or () if _is_service(p)]
        if not parents:
            continue
        try:
            compiled: Route | None = Route.compile(obj, hostnames=())
            accepted = condition("Accepted", True, "Accepted", "", generation)
        except RouteError as e:
            compiled = None
            accepted = condition("Accepted", False, e.reason, str(e), generation)
        backends = Backends.of(index, obj, generation)
        usable |= backends.usable
        if compiled is not None and backends.refused:
            compiled = refusing(compiled, backends.refused)
        resolved = backends.resolved
        statuses = []
        for parent in parents:
            pns = parent.get("namespace") or ns
            svc = index.services.get((pns, parent.get("name", "")))
            ports = [int(p["port"]) for p in ((svc or {}).get("spec") or {}).get("ports") or ()]
            if parent.get("port") is not None:
                ports = [p for p in ports if p == parent["port"]]
            if svc is None or not ports:
                cond = condition("Accepted", False, "NoMatchingParent",
                                  f"no Service {pns}/{parent.get('name')}"
                                  + (f" with port {parent['port']}" if parent.get("port")
                                     else ""), generation)
            else:
                cond = accepted
                for port in ports:
                    target = ServicePort(pns, parent["name"], port)
                    if compiled is None:
                        continue
                    if pns == ns:
                        producer.setdefault(target, []).append(compiled)
                    else:
                        consumer.setdefault((ns, target), []).append(compiled)
            statuses.append({"parentRef": parent, "controllerName": CONTROLLER,
                             "conditions": [cond, resolved]})
        config.statuses[meta.namespaced_name(obj)] = statuses
    config.producer = {k: RouteTable(v, use_hostnames=False) for k, v in producer.items()}
    config.consumer = {k: RouteTable(v, use_hostnames=False) for k, v in consumer.items()}
    config.backends = {k: index.endpoints(k, config.endpoint_nodes)
                       for k in sorted(usable, key=str)}
    return config
