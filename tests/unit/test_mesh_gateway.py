"""Gateways of the netplane class: which HTTPRoutes attach to which
listeners and the statuses that say so, then an HTTPS listener on loopback
that picks its certificate by SNI and routes by hostname to real echo
servers."""

from __future__ import annotations

import base64
import datetime
import random
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from netplane.api.meta import Obj
from netplane.mesh import gateway
from netplane.mesh.identity import self_signed_root
from netplane.mesh.proxy import Listener, Proxy, serve
from netplane.mesh.resilience import Balancer
from netplane.mesh.routes import BackendKey
from tests.echoserver import LOOPBACK, WHO, Echo, start

CLASS = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
         "metadata": {"name": "netplane"}, "spec": {"controllerName": gateway.CONTROLLER}}
OTHER_CLASS = {**CLASS, "metadata": {"name": "other"},
               "spec": {"controllerName": "example.com/elsewhere"}}


def gw(name: str, listeners: list[Obj], ns: str = "infra", cls: str = "netplane") -> Obj:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": ns, "generation": 1},
            "spec": {"gatewayClassName": cls, "listeners": listeners}}


def listener(name: str, port: int = 80, protocol: str = "HTTP", **more: Any) -> Obj:
    return {"name": name, "port": port, "protocol": protocol, **more}


def route(name: str, parent: Obj, *, ns: str = "infra", hostnames: list[str] | None = None,
          backend: str = "web") -> Obj:
    spec: dict[str, Any] = {"parentRefs": [parent],
                            "rules": [{"backendRefs": [{"name": backend, "port": 80}]}]}
    if hostnames:
        spec["hostnames"] = hostnames
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": ns, "generation": 1,
                         "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec}


def service(name: str, ns: str = "infra") -> Obj:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80}]}}


def accepted(config: gateway.GatewayConfig, name: str) -> list[tuple[str, str]]:
    return [(c["status"], c["reason"]) for p in config.route_status[name]
            for c in p["conditions"] if c["type"] == "Accepted"]


def test_which_routes_attach_and_what_their_status_says() -> None:
    gateways = [gw("main", [
        listener("http", hostname="*.example.com"),
        listener("all", port=8080, allowedRoutes={"namespaces": {"from": "All"}}),
        listener("team", port=8081, allowedRoutes={"namespaces": {
            "from": "Selector", "selector": {"matchLabels": {"team": "a"}}}}),
        listener("udp", port=53, protocol="UDP")]),
        gw("theirs", [listener("http")], cls="other")]
    ref = {"name": "main"}
    config = gateway.build([CLASS, OTHER_CLASS], gateways, [
        route("same-ns", ref, hostnames=["a.example.com"]),
        route("wrong-host", {**ref, "sectionName": "http"}, hostnames=["a.example.org"]),
        route("other-ns", {**ref, "namespace": "infra", "sectionName": "all"}, ns="apps",
              backend="api"),
        route("team-a", {**ref, "namespace": "infra", "sectionName": "team"}, ns="apps-a"),
        route("team-b", {**ref, "namespace": "infra", "sectionName": "team"}, ns="apps-b"),
        route("not-ours", {"name": "theirs"}),
        route("bad-backend", {**ref, "sectionName": "all"}, backend="nowhere"),
    ], namespaces=[{"metadata": {"name": "apps-a", "labels": {"team": "a"}}},
                   {"metadata": {"name": "apps-b", "labels": {"team": "b"}}}],
        services=[service("web"), service("api", ns="apps"), service("web", ns="apps-a"),
                  service("web", ns="apps-b")],
        addresses={"infra/main": ["192.168.56.200"]})
    assert accepted(config, "infra/same-ns") == [("True", "Accepted")]
    assert accepted(config, "infra/wrong-host") == [("False", "NoMatchingListenerHostname")]
    assert accepted(config, "apps/other-ns") == [("True", "Accepted")]
    assert accepted(config, "apps-a/team-a") == [("True", "Accepted")]
    assert accepted(config, "apps-b/team-b") == [("False", "NotAllowedByListeners")]
    assert "infra/not-ours" not in config.route_status  # another controller's Gateway
    bad = config.route_status["infra/bad-backend"][0]["conditions"]
    assert [(c["type"], c["status"], c["reason"]) for c in bad][1] == (
        "ResolvedRefs", "False", "BackendNotFound")
    status = config.gateway_status["infra/main"]
    listeners = {ln["name"]: ln for ln in status["listeners"]}
    assert listeners["http"]["attachedRoutes"] == 1  # same-ns (all listeners in its namespace)
    assert listeners["all"]["attachedRoutes"] == 3  # same-ns, other-ns, bad-backend
    assert [c["reason"] for c in listeners["udp"]["conditions"]] == ["UnsupportedProtocol"]
    assert [(c["status"], c["reason"]) for c in status["conditions"]] == [
        ("True", "ListenersNotValid"), ("True", "Programmed")]  # the valid listeners serve
    assert status["addresses"] == [{"type": "IPAddress", "value": "192.168.56.200"}]
    assert set(config.ports[("infra", "main")]) == {80, 8080, 8081}
    assert "infra/theirs" not in config.gateway_status


def test_an_https_listener_needs_a_tls_secret_it_may_use() -> None:
    https = listener("https", port=443, protocol="HTTPS",
                     tls={"certificateRefs": [{"name": "cert", "namespace": "secrets"}]})
    config = gateway.build([CLASS], [gw("main", [https])], [])
    conditions = config.gateway_status["infra/main"]["listeners"][0]["conditions"]
    assert [(c["type"], c["reason"]) for c in conditions] == [
        ("Accepted", "Accepted"), ("ResolvedRefs", "RefNotPermitted"), ("Programmed", "Invalid")]
    assert config.ports[("infra", "main")] == {}
    config = gateway.build([CLASS], [gw("main", [{**https, "tls": {
        "certificateRefs": [{"name": "missing"}]}}])], [], addresses={"infra/main": ["1.2.3.4"]})
    conditions = config.gateway_status["infra/main"]["listeners"][0]["conditions"]
    assert conditions[1]["reason"] == "InvalidCertificateRef"


# -- an HTTPS listener on loopback -------------------------------------------------------

def leaf(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, host: str
         ) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return cert.public_bytes(pem), key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def tls_secret(name: str, cert: bytes, key: bytes) -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": "infra"},
            "data": {"tls.crt": base64.b64encode(cert).decode(),
                     "tls.key": base64.b64encode(key).decode()}}


@pytest.fixture(scope="module")
def shops(c_echo: Path) -> Iterator[dict[str, Echo]]:
    servers = {name: start([str(c_echo)], {**WHO, "POD_NAME": f"{name}-0"})
               for name in ("shop", "blog")}
    yield servers
    for s in servers.values():
        s.close()


async def test_https_picks_the_certificate_by_sni_and_routes_by_hostname(
        shops: dict[str, Echo], tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = self_signed_root(ca_key, "test-ca")
    secrets = [tls_secret(h.split(".")[0], *leaf(ca_key, ca, h))
               for h in ("shop.example.com", "blog.example.com")]
    listeners = [listener(h.split(".")[0], port=443, protocol="HTTPS", hostname=h,
                          tls={"certificateRefs": [{"name": h.split(".")[0]}]})
                 for h in ("shop.example.com", "blog.example.com")]
    config = gateway.build([CLASS], [gw("main", listeners)], [
        route("shop", {"name": "main", "sectionName": "shop"}, backend="shop"),
        route("blog", {"name": "main", "sectionName": "blog"}, backend="blog")],
        secrets=secrets, services=[service("shop"), service("blog")],
        addresses={"infra/main": [LOOPBACK]})
    port = config.ports[("infra", "main")][443]
    balancers = {}
    for name, echo in shops.items():
        b = Balancer(rng=random.Random(1))
        b.update([f"{LOOPBACK}:{echo.port}"])
        balancers[BackendKey("infra", name, 80)] = b
    proxy = Proxy(backends=balancers)
    server = await serve(proxy, LOOPBACK, 0, tls=gateway.tls_context(port.certificates))
    bound = int(server.sockets[0].getsockname()[1])
    proxy.listeners[bound] = Listener(port.table, bound, scheme="https")
    trust = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM)
                                       .decode())
    try:
        async with aiohttp.ClientSession() as session:
            for host in ("shop.example.com", "blog.example.com"):
                async with session.get(f"https://{LOOPBACK}:{bound}/", ssl=trust,
                                       server_hostname=host, headers={"Host": host}) as resp:
                    # the certificate verified for ``host``: SNI chose it
                    assert resp.status == 200
                    assert (await resp.text()).startswith(f"pod={host.split('.')[0]}-0")
            async with session.get(f"https://{LOOPBACK}:{bound}/", ssl=trust,
                                   server_hostname="shop.example.com",
                                   headers={"Host": "other.example.com"}) as resp:
                assert resp.status == 404  # no route for that host
    finally:
        server.close()
        proxy.close()
