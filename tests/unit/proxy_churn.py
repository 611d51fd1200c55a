"""Random Services and endpoints, and random changes to them, for the
proxy's property tests (no tests here).

Small pools of names, addresses and ports make collisions likely: two
Services claiming one external IP, an endpoint in two Services, a port
renamed, an address that is IPv6, an endpoint that is ready in one slice
and not in another. ``Churn`` holds the objects a watch would deliver and
yields the (previous, current) events that a change produced.

Address plan:
    cluster IPs        10.96.0.1 .. 10.96.0.8, fd00::10 (IPv6), None (headless)
    external / LB IPs  192.168.56.200 .. 192.168.56.203, fd00::20
    pods               10.244.1.2 .. 10.244.1.5 (node-1), 10.244.2.2 .. 10.244.2.5
                       (node-2), fd00::30 (IPv6)
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from netplane.api.meta import Obj
from netplane.proxy.config import ProxyConfig

NODE = "node-1"
NAMES = [f"svc-{i}" for i in range(8)]
CLUSTER_IPS = [f"10.96.0.{i}" for i in range(1, 9)] + ["fd00::10", "None"]
EXTERNAL_IPS = [f"192.168.56.{i}" for i in range(200, 204)] + ["fd00::20"]
POD_IPS = [f"10.244.{n}.{i}" for n in (1, 2) for i in range(2, 6)] + ["fd00::30"]
PORT_NAMES = ["", "http", "dns"]
PROTOCOLS = ["TCP", "UDP", "SCTP", None]

CONFIGS = [
    ProxyConfig(),
    ProxyConfig(notrack_dns_ips=("10.96.0.10",), masquerade_random_fully=True),
    ProxyConfig(cluster_cidr="10.244.0.0/15", node_ips=("192.168.56.11",),
                localhost_nodeports=False),
]


def _node(ip: str) -> str:
    return NODE if ip.startswith("10.244.1.") else "node-2"


def _ports(rng: random.Random) -> list[Obj]:
    names = rng.sample(PORT_NAMES, rng.choice([1, 1, 2]))
    if len(names) == 2 and "" in names:
        names.remove("")
    out: list[Obj] = []
    for n in names:
        p: Obj = {"port": rng.choice([53, 80, 443])}
        if n:
            p["name"] = n
        proto = rng.choice(PROTOCOLS)
        if proto is not None:
            p["protocol"] = proto
        if rng.random() < 0.5:
            p["nodePort"] = rng.choice([30080, 30081, 30082])
        out.append(p)
    return out


def service(rng: random.Random, name: str) -> Obj:
    kind = rng.choice(["ClusterIP", "ClusterIP", "NodePort", "LoadBalancer", "ExternalName"])
    spec: Obj = {"type": kind, "clusterIP": rng.choice(CLUSTER_IPS), "ports": _ports(rng)}
    svc: Obj = {"kind": "Service", "metadata": {"namespace": "a", "name": name}, "spec": spec}
    if rng.random() < 0.3:
        spec["externalIPs"] = rng.sample(EXTERNAL_IPS, rng.choice([1, 2]))
    if rng.random() < 0.3:
        spec["sessionAffinity"] = "ClientIP"
        if rng.random() < 0.5:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": rng.choice([60, 90])}}
    if rng.random() < 0.3:
        spec["externalTrafficPolicy"] = "Local"
    if rng.random() < 0.2:
        spec["internalTrafficPolicy"] = "Local"
    if kind == "LoadBalancer":
        spec["healthCheckNodePort"] = rng.choice([0, 32000])
        if rng.random() < 0.5:
            spec["loadBalancerSourceRanges"] = rng.sample(["192.168.56.96/28", "10.0.0.0/8"],
                                                          rng.choice([1, 2]))
        ips = rng.sample(EXTERNAL_IPS, rng.choice([0, 1, 2]))
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}
    return svc


def _port_refs(rng: random.Random) -> list[Obj]:
    out = []
    for n in rng.sample(PORT_NAMES, rng.choice([1, 2, 3])):
        p: Obj = {"port": rng.choice([8080, 5353])}
        if n:
            p["name"] = n
        proto = rng.choice(PROTOCOLS)
        if proto is not None:
            p["protocol"] = proto
        out.append(p)
    return out


def endpoint_slice(rng: random.Random, service_name: str, slice_name: str) -> Obj:
    eps = []
    for ip in rng.sample(POD_IPS, rng.choice([0, 1, 2, 3])):
        cond = {k: v for k, v in (("ready", rng.choice([True, True, False, None])),
                                  ("serving", rng.choice([True, False, None])),
                                  ("terminating", rng.choice([True, False, None])))
                if v is not None}
        eps.append({"addresses": [ip], "nodeName": _node(ip), "conditions": cond})
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": "a", "name": slice_name,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "ports": _port_refs(rng), "endpoints": eps}


def classic_endpoints(rng: random.Random, service_name: str) -> Obj:
    subsets = []
    for _ in range(rng.choice([0, 1, 2])):
        ready = rng.sample(POD_IPS, rng.choice([0, 1, 2]))
        not_ready = rng.sample(POD_IPS, rng.choice([0, 0, 1]))
        subsets.append({"addresses": [{"ip": ip, "nodeName": _node(ip)} for ip in ready],
                        "notReadyAddresses": [{"ip": ip, "nodeName": _node(ip)}
                                              for ip in not_ready],
                        "ports": _port_refs(rng)})
    return {"kind": "Endpoints", "metadata": {"namespace": "a", "name": service_name},
            "subsets": subsets}


def endpoints_object(rng: random.Random, service_name: str) -> Obj:
    if rng.random() < 0.4:
        return classic_endpoints(rng, service_name)
    return endpoint_slice(rng, service_name, f"{service_name}-{rng.choice('xy')}")


def _key(obj: Obj) -> tuple[str, str, str]:
    return (str(obj.get("kind", "")), obj["metadata"]["namespace"], obj["metadata"]["name"])


Event = tuple[str, Obj | None, Obj | None]  # ("service" | "endpoints", previous, current)


@dataclass
class Churn:
    """The objects a watch would have delivered so far."""

    rng: random.Random
    services: dict[str, Obj] = field(default_factory=dict)
    endpoints: dict[tuple[str, str, str], Obj] = field(default_factory=dict)

    def populate(self, n: int) -> list[Event]:
        events: list[Event] = []
        for name in NAMES[:n]:
            events += self._set_service(service(self.rng, name))
            events += self._set_endpoints(endpoints_object(self.rng, name))
        return events

    def _set_service(self, obj: Obj) -> list[Event]:
        prev = self.services.get(obj["metadata"]["name"])
        self.services[obj["metadata"]["name"]] = obj
        return [("service", prev, obj)]

    def _set_endpoints(self, obj: Obj) -> list[Event]:
        prev = self.endpoints.get(_key(obj))
        self.endpoints[_key(obj)] = obj
        return [("endpoints", prev, obj)]

    def step(self) -> list[Event]:
        """One random change, as the events it produces (maybe a no-op)."""
        rng = self.rng
        roll = rng.random()
        name = rng.choice(NAMES)
        if roll < 0.25:
            return self._set_service(service(rng, name))
        if roll < 0.35 and name in self.services:
            return [("service", self.services.pop(name), None)]
        if roll < 0.45 and name in self.services:
            # An update that changes nothing the rules depend on.
            same = copy.deepcopy(self.services[name])
            same["metadata"]["resourceVersion"] = str(rng.randrange(1000))
            return self._set_service(same)
        if roll < 0.85:
            return self._set_endpoints(endpoints_object(rng, name))
        mine = [k for k in self.endpoints if k[2].startswith(name)]
        if mine:
            key = rng.choice(mine)
            return [("endpoints", self.endpoints.pop(key), None)]
        return []

    def objects(self) -> tuple[list[Obj], list[Obj]]:
        return list(self.services.values()), list(self.endpoints.values())


def churn(seed: int, *, services: int = 6) -> tuple[Churn, list[Event]]:
    c = Churn(random.Random(seed))
    return c, c.populate(services)


def steps(c: Churn, n: int) -> Iterator[list[Event]]:
    for _ in range(n):
        yield c.step()
