"""North-south: Gateways of the ``netplane`` GatewayClass, their listeners
(HTTP, and HTTPS terminated with ``kubernetes.io/tls`` Secrets chosen by
SNI), the HTTPRoutes that attach to them (allowedRoutes, sectionName,
port, hostname intersection) and the statuses the specification asks for
on Gateways, listeners and routes. Pure: objects in, tables and statuses
out; ``tls_context`` builds a listener port's TLS from its certificates."""

from __future__ import annotations

import base64
import contextlib
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from netplane.api import meta, selectors
from netplane.api.meta import Obj
from netplane.mesh.config import GATEWAY_GROUP, Backends, Index, condition, refusing
from netplane.mesh.routes import (
    Route,
    RouteError,
    RouteTable,
    attached_hostnames,
    hostname_matches,
)

CONTROLLER = "netplane.io/gateway-controller"
SUPPORTED = ("HTTP", "HTTPS")
TLS_SECRET = "kubernetes.io/tls"


@dataclass(frozen=True)
class Certificate:
    hostname: str | None  # the listener's, None for any
    cert_pem: bytes
    key_pem: bytes


@dataclass
class PortConfig:
    """What the gateway proxy serves on one port of a Gateway's address."""
    port: int
    scheme: str  # "http" or "https"
    table: RouteTable
    certificates: list[Certificate] = field(default_factory=list)


@dataclass
class GatewayConfig:
    ports: dict[tuple[str, str], dict[int, PortConfig]] = field(default_factory=dict)
    gateway_status: dict[str, Obj] = field(default_factory=dict)  # "ns/name" -> status
    route_status: dict[str, list[Obj]] = field(default_factory=dict)  # "ns/name" -> parents


def _is_gateway_ref(ref: Obj) -> bool:
    return bool(ref.get("group", GATEWAY_GROUP) == GATEWAY_GROUP
                and ref.get("kind", "Gateway") == "Gateway")


def _allows(listener: Obj, gw_ns: str, route_ns: str, ns_labels: dict[str, dict[str, str]]
            ) -> bool:
    allowed = listener.get("allowedRoutes") or {}
    kinds = allowed.get("kinds") or []
    if kinds and not any(k.get("kind") == "HTTPRoute" and k.get("group", GATEWAY_GROUP)
                         == GATEWAY_GROUP for k in kinds):
        return False
    namespaces = allowed.get("namespaces") or {}
    frm = namespaces.get("from", "Same")
    if frm == "All":
        return True
    if frm == "Selector":
        sel = selectors.from_label_selector(namespaces.get("selector") or {})
        return bool(sel.matches(ns_labels.get(route_ns, {})))
    return route_ns == gw_ns


def _certificates(listener: Obj, gw_ns: str, secrets: dict[tuple[str, str], Obj],
                  index: Index) -> tuple[list[Certificate], tuple[str, str] | None]:
    """The listener's certificates, or why they cannot be used."""
    out = []
    for ref in (listener.get("tls") or {}).get("certificateRefs") or ():
        ns, name = ref.get("namespace") or gw_ns, ref.get("name", "")
        if ref.get("kind", "Secret") != "Secret" or ref.get("group", "") not in ("", "core"):
            return [], ("InvalidCertificateRef", f"certificateRef {name}: not a Secret")
        if ns != gw_ns and not _gateway_granted(index, gw_ns, ns, name):
            return [], ("RefNotPermitted", f"certificateRef {ns}/{name}: no ReferenceGrant "
                                           f"in {ns} lets Gateways of {gw_ns} use it")
        secret = secrets.get((ns, name))
        data = (secret or {}).get("data") or {}
        if secret is None or secret.get("type") != TLS_SECRET or "tls.crt" not in data \
                or "tls.key" not in data:
            return [], ("InvalidCertificateRef", f"certificateRef {ns}/{name}: no "
                                                 f"{TLS_SECRET} Secret with tls.crt and tls.key")
        out.append(Certificate(listener.get("hostname"), base64.b64decode(data["tls.crt"]),
                               base64.b64decode(data["tls.key"])))
    if not out:
        return [], ("InvalidCertificateRef", "an HTTPS listener needs a certificateRef")
    return out, None


def _gateway_granted(index: Index, gw_ns: str, target_ns: str, name: str) -> bool:
    for g in index.grants:
        if meta.namespace(g) != target_ns:
            continue
        spec = g.get("spec") or {}
        if any(f.get("group") == GATEWAY_GROUP and f.get("kind") == "Gateway"
               and f.get("namespace") == gw_ns for f in spec.get("from") or ()) and \
                any(t.get("kind") == "Secret" and t.get("name") in (None, "", name)
                    for t in spec.get("to") or ()):
            return True
    return False


def build(classes: Iterable[Obj], gateways: Iterable[Obj], routes: Iterable[Obj], *,
          namespaces: Iterable[Obj] = (), secrets: Iterable[Obj] = (),
          services: Iterable[Obj] = (), grants: Iterable[Obj] = (),
          addresses: dict[str, list[str]] | None = None) -> GatewayConfig:
    ours = {meta.name(c) for c in classes
            if (c.get("spec") or {}).get("controllerName") == CONTROLLER}
    ns_labels = {meta.name(n): meta.labels(n) for n in namespaces}
    secret_map = {(meta.namespace(s), meta.name(s)): s for s in secrets}
    index = Index(services={(meta.namespace(s), meta.name(s)): s for s in services},
                   slices={}, grants=list(grants))
    gws = {(meta.namespace(g), meta.name(g)): g for g in gateways
           if (g.get("spec") or {}).get("gatewayClassName") in ours}
    out = GatewayConfig()
    attached: dict[tuple[str, str, str], list[Route]] = {}  # (gw ns, gw, listener) -> routes
    for obj in routes:
        ns, generation = meta.namespace(obj), int(obj["metadata"].get("generation", 1))
        parents = [p for p in (obj.get("spec") or {}).get("parentRefs") or ()
                   if _is_gateway_ref(p) and (p.get("namespace") or ns, p.get("name")) in gws]
        if not parents:
            continue
        backends = Backends.of(index, obj, generation)
        refused, resolved = backends.refused, backends.resolved
        statuses = []
        for parent in parents:
            key = (parent.get("namespace") or ns, str(parent.get("name")))
            gw = gws[key]
            listeners = [ln for ln in (gw.get("spec") or {}).get("listeners") or ()
                         if parent.get("sectionName") in (None, ln.get("name"))
                         and parent.get("port") in (None, ln.get("port"))]
            reason, took = "NoMatchingParent", 0
            for ln in listeners:
                if ln.get("protocol") not in SUPPORTED:
                    continue
                if not _allows(ln, key[0], ns, ns_labels):
                    reason = "NotAllowedByListeners" if reason == "NoMatchingParent" else reason
                    continue
                names = attached_hostnames(ln.get("hostname"),
                                           (obj.get("spec") or {}).get("hostnames") or ())
                if names is None:
                    reason = "NoMatchingListenerHostname"
                    continue
                try:
                    compiled = Route.compile(obj, hostnames=names)
                except RouteError as e:
                    reason = e.reason
                    break
                if refused:
                    compiled = refusing(compiled, refused)
                attached.setdefault((*key, ln["name"]), []).append(compiled)
                took += 1
            accepted = condition("Accepted", took > 0, "Accepted" if took else reason,
                                  "" if took else f"not attached to {key[0]}/{key[1]}",
                                  generation)
            statuses.append({"parentRef": parent, "controllerName": CONTROLLER,
                             "conditions": [accepted, resolved]})
        out.route_status[meta.namespaced_name(obj)] = statuses
    for key, gw in gws.items():
        out.ports[key], out.gateway_status[f"{key[0]}/{key[1]}"] = _gateway(
            key, gw, attached, secret_map, index, (addresses or {}).get(f"{key[0]}/{key[1]}"))
    return out


def _gateway(key: tuple[str, str], gw: Obj, attached: dict[tuple[str, str, str], list[Route]],
             secrets: dict[tuple[str, str], Obj], index: Index, addresses: list[str] | None
             ) -> tuple[dict[int, PortConfig], Obj]:
    generation = int(gw["metadata"].get("generation", 1))
    ports: dict[int, PortConfig] = {}
    listener_status = []
    valid = True  # every listener
    serving = False  # some listener
    for ln in (gw.get("spec") or {}).get("listeners") or ():
        routes = attached.get((*key, ln["name"]), [])
        conditions = []
        protocol = ln.get("protocol")
        certs: list[Certificate] = []
        problem = None
        if protocol not in SUPPORTED:
            conditions.append(condition("Accepted", False, "UnsupportedProtocol",
                                         f"protocol {protocol} is not supported", generation))
            valid = False
        else:
            conditions.append(condition("Accepted", True, "Accepted", "", generation))
            if protocol == "HTTPS":
                certs, problem = _certificates(ln, key[0], secrets, index)
            conditions.append(condition("ResolvedRefs", problem is None,
                                         problem[0] if problem else "ResolvedRefs",
                                         problem[1] if problem else "", generation))
            programmed = problem is None
            conditions.append(condition("Programmed", programmed,
                                         "Programmed" if programmed else "Invalid", "",
                                         generation))
            valid = valid and programmed
            serving = serving or programmed
            if programmed:
                scheme = "https" if protocol == "HTTPS" else "http"
                port = ports.get(ln["port"])
                if port is None:
                    port = ports[ln["port"]] = PortConfig(ln["port"], scheme, RouteTable([]))
                port.certificates += certs
                port.table = RouteTable(port.table.routes + routes)
        listener_status.append({"name": ln["name"], "attachedRoutes": len(routes),
                                "supportedKinds": [{"group": GATEWAY_GROUP,
                                                    "kind": "HTTPRoute"}],
                                "conditions": conditions})
    # A Gateway with some invalid listeners still serves the others: Accepted,
    # saying ListenersNotValid, as the specification allows.
    assigned = bool(addresses)
    programmed = serving and assigned
    status = {"addresses": [{"type": "IPAddress", "value": a} for a in addresses or ()],
              "listeners": listener_status,
              "conditions": [
                  condition("Accepted", serving, "Accepted" if valid else "ListenersNotValid",
                            "", generation),
                  condition("Programmed", programmed, "Programmed" if programmed else
                            ("AddressNotAssigned" if serving else "Invalid"), "", generation)]}
    return ports, status


def tls_context(certs: list[Certificate]) -> ssl.SSLContext:
    """A server context that picks each connection's certificate by SNI:
    the listener whose hostname matches (exact before wildcard), else the
    first."""
    contexts: list[tuple[str | None, ssl.SSLContext]] = []
    for cert in certs:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        with tempfile.TemporaryDirectory(prefix="np-gw-") as tmp:  # ssl loads files only
            Path(tmp).chmod(0o700)
            chain, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            chain.write_bytes(cert.cert_pem)
            key.touch(0o600)
            key.write_bytes(cert.key_pem)
            ctx.load_cert_chain(chain, key)
        contexts.append((cert.hostname, ctx))
    if not contexts:
        raise ValueError("a TLS listener needs a certificate")
    ranked = sorted(contexts, key=lambda c: (c[0] is None, (c[0] or "").startswith("*.")))

    def choose(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        for hostname, ctx in ranked:
            if name and hostname and hostname_matches(hostname.lower(), name.lower()):
                with contextlib.suppress(Exception):
                    sock.context = ctx
                return
        sock.context = contexts[0][1]

    first = contexts[0][1]
    first.sni_callback = choose
    return first
