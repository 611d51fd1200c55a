"""The mesh controller beside a real ``netplane server``: what ``kubectl
get``/``describe`` show a user of the Gateway API. GatewayClass accepted,
a Gateway given a LoadBalancer address through its Service, routes'
statuses for their Gateway and Service parents side by side, and the
reasons the specification names when a reference is wrong; and node
proxies' certificates through CertificateSigningRequests, approved and
signed by the controller."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509 import verification

from netplane.cluster.client import Client, Connection
from netplane.mesh import enroll
from netplane.mesh.identity import Identity, Issued, identity_of, utcnow
from netplane.mesh.manifests import mesh_crds
from netplane.mesh.tunnel import Credentials, TunnelClient, TunnelServer, node_identity
from tests.integration.loopback import HAVE_KUBECTL, Cluster, api_server, wait_for

pytestmark = pytest.mark.skipif(not HAVE_KUBECTL, reason="kubectl is not installed")

OBJECTS = """
apiVersion: v1
kind: Node
metadata: {name: n1}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: shop}
spec:
  gatewayClassName: netplane
  listeners:
  - {name: http, protocol: HTTP, port: 80}
  - {name: other, protocol: HTTP, port: 8080, hostname: other.example}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: both, namespace: shop}
spec:
  parentRefs:
  - {name: edge, sectionName: http}
  - {group: "", kind: Service, name: web, port: 80}
  rules:
  - backendRefs: [{name: web, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken, namespace: shop}
spec:
  parentRefs: [{name: edge}]
  rules:
  - backendRefs: [{name: nowhere, port: 80}]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("meshctl")
    with api_server(base, "--node-monitor-grace-period", "1h",
                    "--load-balancer-pool", "192.168.56.200-192.168.56.201") as c:
        crds = base / "crds.yaml"
        crds.write_text(yaml.safe_dump_all(mesh_crds()))
        c.kubectl("apply", "-f", str(crds))
        wait_for("the Gateway API served",
                 lambda: c.kubectl("get", "gateways", "-A", check=False).returncode == 0)
        c.kubectl("apply", "-f", "-", stdin=OBJECTS)
        c.kubectl("patch", "node", "n1", "--subresource=status", "--type=merge", "-p",
                  json.dumps({"status": {"addresses": [{"type": "InternalIP",
                                                        "address": "192.168.56.11"}],
                                         "conditions": [{"type": "Ready", "status": "True",
                                                         "reason": "KubeletReady"}]}}))
        yield c


def get(cluster: Cluster, *what: str) -> dict:
    return json.loads(cluster.kubectl("get", *what, "-o", "json").stdout)


def conditions(obj: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in obj.get("conditions") or ()}


def test_the_netplane_gateway_class_is_made_and_accepted(cluster: Cluster) -> None:
    # No manifest names it: the controller makes it, as Istio makes its own.
    wait_for("Accepted", lambda: conditions(get(cluster, "gatewayclass", "netplane")
                                            .get("status", {})).get("Accepted")
             == ("True", "Accepted"))


def test_the_gateway_gets_an_address_from_the_pool_through_its_service(cluster: Cluster
                                                                     ) -> None:
    def programmed() -> dict | None:
        gw = get(cluster, "gateway", "-n", "shop", "edge")
        return gw if conditions(gw.get("status", {})).get("Programmed") == \
            ("True", "Programmed") else None
    gw = wait_for("the Gateway programmed", programmed)
    assert [a["value"] for a in gw["status"]["addresses"]] == ["192.168.56.200"]
    listeners = {ln["name"]: ln for ln in gw["status"]["listeners"]}
    # "broken" names no listener and no hostnames: it attaches to both.
    assert listeners["http"]["attachedRoutes"] == 2 and listeners["other"]["attachedRoutes"] == 1
    svc = get(cluster, "service", "-n", "shop", "edge-netplane")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == \
        [(80, 15100), (8080, 15101)]
    assert svc["status"]["loadBalancer"]["ingress"][0]["ip"] == "192.168.56.200"
    # The nodes' proxies are the Service's endpoints, on the node-proxy ports.
    slices = get(cluster, "endpointslices", "-n", "shop",
                 "-l", "kubernetes.io/service-name=edge-netplane")["items"]
    assert [(e["addresses"], e["nodeName"], e["conditions"]["ready"])
            for s in slices for e in s["endpoints"]] == [(["192.168.56.11"], "n1", True)]
    assert sorted(p["port"] for s in slices for p in s["ports"]) == [15100, 15101]
    printed = cluster.kubectl("get", "gateway", "-n", "shop", "edge").stdout
    assert "192.168.56.200" in printed and "True" in printed


def test_a_route_reports_on_its_gateway_and_its_service(cluster: Cluster) -> None:
    def parents() -> dict[str, dict] | None:
        route = get(cluster, "httproute", "-n", "shop", "both")
        got = {p["parentRef"].get("kind", "Gateway"): p
               for p in (route.get("status") or {}).get("parents") or ()}
        return got if len(got) == 2 else None
    got = wait_for("both parents' statuses", parents)
    assert got["Gateway"]["controllerName"] == "netplane.io/gateway-controller"
    assert got["Service"]["controllerName"] == "netplane.io/mesh"
    for p in got.values():
        assert conditions(p)["Accepted"] == ("True", "Accepted")
        assert conditions(p)["ResolvedRefs"] == ("True", "ResolvedRefs")


def test_a_missing_backend_is_named_in_the_route_status(cluster: Cluster) -> None:
    def resolved() -> tuple[str, str] | None:
        route = get(cluster, "httproute", "-n", "shop", "broken")
        parents = (route.get("status") or {}).get("parents") or []
        return conditions(parents[0]).get("ResolvedRefs") if parents else None
    assert wait_for("ResolvedRefs", resolved) == ("False", "BackendNotFound")
    described = cluster.kubectl("describe", "httproute", "-n", "shop", "broken").stdout
    assert "BackendNotFound" in described


def test_a_listener_port_added_later_gets_the_next_node_port(cluster: Cluster) -> None:
    before = get(cluster, "service", "-n", "shop", "edge-netplane")["spec"]["ports"]
    cluster.kubectl("patch", "gateway", "-n", "shop", "edge", "--type=json", "-p", json.dumps(
        [{"op": "add", "path": "/spec/listeners/-",
          "value": {"name": "alt", "protocol": "HTTP", "port": 81}}]))

    def ports() -> list[tuple[int, int]] | None:
        svc = get(cluster, "service", "-n", "shop", "edge-netplane")
        got = [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]]
        return got if len(got) == 3 else None
    # The ports listeners had keep their node ports: connections in flight stay.
    assert wait_for("the new port", ports) == [(80, 15100), (81, 15102), (8080, 15101)]
    after = get(cluster, "service", "-n", "shop", "edge-netplane")["spec"]["ports"]
    kept = {p["port"]: p["nodePort"] for p in before}
    assert {p["port"]: p["nodePort"] for p in after if p["port"] in kept} == kept


def test_deleting_the_gateway_removes_its_service(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
        "metadata: {name: brief, namespace: shop}\n"
        "spec: {gatewayClassName: netplane, listeners: [{name: h, protocol: HTTP, port: 80}]}\n"))
    wait_for("its Service", lambda: cluster.kubectl(
        "get", "service", "-n", "shop", "brief-netplane", check=False).returncode == 0)
    cluster.kubectl("delete", "gateway", "-n", "shop", "brief")
    wait_for("its Service gone", lambda: cluster.kubectl(
        "get", "service", "-n", "shop", "brief-netplane", check=False).returncode != 0)



def node_client(cluster: Cluster) -> Client:
    """A client as the node agents are (the join token)."""
    token = (cluster.data / "pki" / "join.token").read_text().strip()
    return Client(Connection(url=f"https://127.0.0.1:{cluster.port}", token=token,
                             ca_file=str(cluster.data / "pki" / "ca.crt")))


def test_a_node_proxy_gets_its_certificate_through_a_signing_request(cluster: Cluster) -> None:
    async def obtain() -> tuple[Issued, list[x509.Certificate]]:
        async with node_client(cluster) as client:
            return await asyncio.wait_for(enroll.obtain(client, "n1"), 60)
    issued, chain = asyncio.run(obtain())
    assert identity_of(issued.cert) == node_identity("n1")
    root = x509.load_pem_x509_certificate((cluster.data / "pki" / "ca.crt").read_bytes())
    assert chain[0].issuer == root.subject and issued.cert.issuer == chain[0].subject
    verifier = verification.PolicyBuilder().store(verification.Store([root])) \
        .build_client_verifier()
    verifier.verify(issued.cert, chain)  # raises unless the chain leads to the cluster CA
    printed = cluster.kubectl("get", "csr").stdout
    line = next(ln for ln in printed.splitlines() if "netplane-node-n1-" in ln)
    assert "netplane.io/mesh-node" in line and "Approved,Issued" in line
    assert "system:node-agent" in line


def test_a_request_for_a_node_that_does_not_exist_is_denied(cluster: Cluster) -> None:
    async def obtain() -> None:
        async with node_client(cluster) as client:
            await asyncio.wait_for(enroll.obtain(client, "ghost"), 60)
    with pytest.raises(enroll.Denied, match="no node proxy of this cluster"):
        asyncio.run(obtain())
    described = cluster.kubectl("get", "csr", "-o", "json").stdout
    denied = [c for c in json.loads(described)["items"]
              if c["metadata"]["name"].startswith("netplane-node-ghost-")]
    assert [cond["type"] for cond in denied[0]["status"]["conditions"]] == ["Denied"]


def test_certificates_rotate_under_a_running_tunnel(cluster: Cluster, tmp_path: Path) -> None:
    """Both ends renew half a second after each certificate, through the
    API: the stream opened first keeps flowing across renewals, and a new
    connection is made with the newer certificate."""
    cluster.kubectl("apply", "-f", "-", stdin="apiVersion: v1\nkind: Node\n"
                                              "metadata: {name: n2}\n")
    root = x509.load_pem_x509_certificate((cluster.data / "pki" / "ca.crt").read_bytes())

    async def run() -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()
        backend = await asyncio.start_server(echo, "127.0.0.1", 0)
        target = f"127.0.0.1:{backend.sockets[0].getsockname()[1]}"
        async with node_client(cluster) as client:
            loop = asyncio.get_running_loop()
            ready1: asyncio.Future[Credentials] = loop.create_future()
            ready2: asyncio.Future[Credentials] = loop.create_future()
            soon = lambda issued: utcnow() + datetime.timedelta(seconds=0.5)  # noqa: E731
            keepers = [asyncio.create_task(enroll.keep(client, "n1", tmp_path / "n1", root,
                                                       ready1, renew=soon)),
                       asyncio.create_task(enroll.keep(client, "n2", tmp_path / "n2", root,
                                                       ready2, renew=soon))]
            server_creds, client_creds = await ready1, await ready2
            server = TunnelServer(server_creds, lambda node, source, target: True)
            listener = await server.serve("127.0.0.1", 0)
            address = f"127.0.0.1:{listener.sockets[0].getsockname()[1]}"
            tunnels = TunnelClient(client_creds)
            who = Identity("cluster.local", "shop", "web")
            stream = await tunnels.open(address, node_identity("n1"), target, who)
            first = server_creds.issued.cert
            sent = 0
            # Traffic on the first stream until the server's end has renewed.
            while server_creds.issued.cert == first:
                await stream.write(b"x" * 1024)
                got = b""
                while len(got) < 1024:
                    got += await stream.read()
                sent += 1
                await asyncio.sleep(0.05)
            assert sent > 1
            await stream.write(b"still here")
            assert await stream.read() == b"still here"
            fresh = TunnelClient(client_creds)
            again = await fresh.open(address, node_identity("n1"), target, who)
            await again.write(b"new")
            assert await again.read() == b"new"
            der = fresh.links[address].writer.get_extra_info("ssl_object") \
                .getpeercert(binary_form=True)
            assert x509.load_der_x509_certificate(der) != first
            for k in keepers:
                k.cancel()
            fresh.close()
            tunnels.close()
            listener.close()
            backend.close()
    asyncio.run(asyncio.wait_for(run(), 120))
