"""Shared Services and EndpointSlices for the iptables-mode unit tests (no tests here).

Address plan:
    node-1 (this node)        underlay 192.168.56.11, pod bridge 10.244.1.1
    pod network               10.244.0.0/16
    pods on node-1            10.244.1.2, 10.244.1.3  (10.244.1.4: a client pod)
    pod on node-2             10.244.2.2
    external clients          192.168.56.100 (inside the LB source range
                              192.168.56.96/28), 192.168.56.200 (outside)
    services                  10.96.0.60 .. 10.96.0.68, port 80 -> 8080
    LoadBalancer IPs          192.168.56.240 (ranges), 192.168.56.243 (Local)
    external IP               192.168.56.241
"""

from __future__ import annotations

from netplane.api.meta import Obj
from netplane.proxy.config import ProxyConfig

NODE = "node-1"
NODE_IP = "192.168.56.11"
CONFIG = ProxyConfig(node_ips=(NODE_IP,))
LOCAL_A, LOCAL_B, CLIENT_POD, REMOTE = "10.244.1.2", "10.244.1.3", "10.244.1.4", "10.244.2.2"
ALLOWED, DENIED = "192.168.56.100", "192.168.56.200"


def svc(name: str, ip: str, *, node_port: int = 0, **spec: object) -> Obj:
    port: Obj = {"name": "http", "port": 80, "protocol": "TCP"}
    if node_port:
        port["nodePort"] = node_port
    status = spec.pop("status", {})
    return {"kind": "Service", "metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": ip, "ports": [port], **spec}, "status": status}


def lb_status(ip: str) -> Obj:
    return {"loadBalancer": {"ingress": [{"ip": ip}]}}


def ep(ip: str, node: str, **conditions: bool) -> Obj:
    return {"addresses": [ip], "nodeName": node,
            "conditions": {"ready": True, "serving": True, "terminating": False, **conditions}}


def eslice(service: str, *endpoints: Obj) -> Obj:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": "default", "name": f"{service}-abc",
                         "labels": {"kubernetes.io/service-name": service}},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": list(endpoints)}


def both(service: str) -> Obj:
    return eslice(service, ep(LOCAL_A, NODE), ep(REMOTE, "node-2"))


def services() -> list[Obj]:
    return [
        svc("np", "10.96.0.60", type="NodePort", node_port=30080),
        svc("lb", "10.96.0.61", type="LoadBalancer", node_port=30081,
            loadBalancerSourceRanges=["192.168.56.96/28"], status=lb_status("192.168.56.240")),
        svc("extip", "10.96.0.69", externalIPs=["192.168.56.241"]),
        svc("aff", "10.96.0.62", sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
        svc("local", "10.96.0.63", type="LoadBalancer", node_port=30083,
            externalTrafficPolicy="Local", healthCheckNodePort=32000,
            status=lb_status("192.168.56.243")),
        svc("local-none", "10.96.0.64", type="NodePort", node_port=30084,
            externalTrafficPolicy="Local"),
        svc("int-local", "10.96.0.65", internalTrafficPolicy="Local"),
        svc("int-local-none", "10.96.0.66", internalTrafficPolicy="Local"),
        svc("term", "10.96.0.67"),
        svc("none", "10.96.0.68", type="NodePort", node_port=30088),
    ]


def endpoints() -> list[Obj]:
    return [
        both("np"), both("lb"), both("extip"), both("aff"), both("local"), both("int-local"),
        eslice("local-none", ep(REMOTE, "node-2")),
        eslice("int-local-none", ep(REMOTE, "node-2")),
        eslice("term", ep(LOCAL_B, NODE, ready=False, terminating=True),
               ep(REMOTE, "node-2", ready=False, serving=False, terminating=True)),
    ]
