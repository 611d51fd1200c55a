"""The mesh in a lab: a pod of an enrolled namespace curls a Service by
name and its node's proxy routes each request by the Service's HTTPRoute:
x-canary: 1 to v2, everything else to v1 (the plain Service would have
sent a third of it to v2). And north-south: a Gateway on a LoadBalancer
address, reached from outside the cluster (the control node), routing by
host over HTTP and over TLS with a certificate per hostname.

Address plan: the lab's defaults (underlay 192.168.56.0/24, pods
10.244.N.0/24, Services 10.96.0.0/12); the proxy on :15001 of each node."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from netplane.api import meta
from tests.e2e.conftest import NETPLANE, Lab, started_lab, wait_for

pytestmark = pytest.mark.e2e
MANIFEST = Path(__file__).parent / "manifests" / "mesh.yaml"
GATEWAY_MANIFEST = Path(__file__).parent / "manifests" / "gateway.yaml"
URL = "http://web.shop.svc.cluster.local/"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with started_lab() as the_lab:
        # kubectl, as a user applies Gateway API objects (netplane apply knows
        # only the built-in kinds).
        subprocess.run([KUBECTL, "apply", "-f", str(MANIFEST)], check=True, capture_output=True,
                       env={**os.environ, "KUBECONFIG": str(the_lab.paths.kubeconfig)},
                       timeout=60)

        def ready() -> bool:
            pods = json.loads(the_lab.netplane("get", "pods", "-n", "shop", "-o",
                                               "json").stdout)["items"]
            plain = json.loads(the_lab.netplane("get", "pods", "-n", "plain", "-o",
                                                "json").stdout)["items"]
            return len(pods) == 7 and len(plain) == 1 and all(
                meta.pod_ready(p) for p in pods + plain)
        wait_for("pods ready", ready, timeout=120)
        yield the_lab


def pod_of(lab: Lab, *headers: str) -> str:
    args = [a for h in headers for a in ("-H", h)]
    out = lab.netplane("exec", "-n", "shop", "client", "--", "curl", "-sS", "--max-time", "5",
                       *args, URL, check=False)
    return out.stdout.split()[0].removeprefix("pod=").rsplit("-", 2)[0] \
        if out.returncode == 0 and out.stdout else f"ERR:{out.stderr.strip()}"


def test_the_route_decides_where_each_request_goes(lab: Lab) -> None:
    # The node's proxy learns the route and captures the client's connections.
    wait_for("the canary route in force", lambda: pod_of(lab, "x-canary: 1") == "web-v2",
             timeout=60)
    assert Counter(pod_of(lab) for _ in range(20)) == {"web-v1": 20}
    assert Counter(pod_of(lab, "x-canary: 1") for _ in range(10)) == {"web-v2": 10}


def test_the_node_shows_the_capture_and_the_proxys_metrics(lab: Lab) -> None:
    table = lab.netplane("lab", "exec", "node-2", "--", "nft", "list", "table", "ip",
                         "netplane-mesh").stdout
    assert "redirect to :15001" in table
    metrics = lab.netplane("lab", "exec", "control", "--", "curl", "-sS", "--max-time", "3",
                           "http://192.168.56.12:10249/metrics").stdout
    assert "netplane_mesh_requests_total{" in metrics
    assert 'destination_service="web.shop.svc.cluster.local"' in metrics


def codes_and_pods(lab: Lab, url: str, n: int) -> Counter[str]:
    """``n`` requests from the client pod in one shell loop: each line the
    status code and the pod that answered."""
    loop = (f'for i in $(seq {n}); do curl -s --max-time 5 -w " %{{http_code}}" {url} '
            f'| tr -d "\\n"; echo; done')
    out = lab.netplane("exec", "-n", "shop", "client", "--", "sh", "-c", loop, timeout=300)
    return Counter(f"{line.split()[-1]} {line.split()[0].removeprefix('pod=').rsplit('-', 2)[0]}"
                   for line in out.stdout.splitlines() if line.strip())


def test_an_80_20_split_holds_over_a_thousand_requests(lab: Lab) -> None:
    # The route in force: the flaky Service's route answers its 504 (below)
    # only once the node has the routes of the manifest.
    wait_for("the routes in force", lambda: lab.netplane(
        "exec", "-n", "shop", "client", "--", "curl", "-s", "--max-time", "10", "-o",
        "/dev/null", "-w", "%{http_code}", "http://flaky.shop/delay?ms=3000").stdout == "504")
    got = codes_and_pods(lab, "http://split.shop/", 1000)
    assert set(got) == {"200 web-v1", "200 web-v2"}
    assert 750 <= got["200 web-v1"] <= 850  # 80 % +- 5 %


def test_retries_hide_a_backend_that_fails_half_its_answers(lab: Lab) -> None:
    bare = codes_and_pods(lab, "http://flaky-bare.shop/", 200)
    assert 40 <= bare["503 flaky"] <= 160  # no route: about half fail
    got = codes_and_pods(lab, "http://flaky.shop/", 1000)
    assert got["200 flaky"] >= 990  # all ten tries fail for 1 request in 1,024


def test_a_request_timeout_answers_504(lab: Lab) -> None:
    out = lab.netplane("exec", "-n", "shop", "client", "--", "curl", "-s", "--max-time", "10",
                       "-o", "/dev/null", "-w", "%{http_code}", "http://flaky.shop/delay?ms=3000")
    assert out.stdout.strip() == "504"


def tls_pair(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], host: str
             ) -> tuple[bytes, bytes]:
    """A certificate for ``host`` signed by ``ca`` and its key, as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca[0].subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(ca[1], hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return cert.public_bytes(pem), key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.fixture(scope="module")
def gateway(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The Gateway's address, and the CA file that verifies its certificates."""
    home = tmp_path_factory.mktemp("gateway")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "e2e gateway CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(ca_key, hashes.SHA256()))
    ca_file = home / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for host, secret in (("a.example", "a-tls"), ("b.example", "b-tls")):
        cert, key = tls_pair((ca_cert, ca_key), host)
        (home / f"{host}.crt").write_bytes(cert)
        (home / f"{host}.key").write_bytes(key)
        kubectl(lab, "create", "secret", "tls", secret, "-n", "shop",
                f"--cert={home / f'{host}.crt'}", f"--key={home / f'{host}.key'}")
    kubectl(lab, "apply", "-f", str(GATEWAY_MANIFEST))

    def programmed() -> str | None:
        gw = json.loads(kubectl(lab, "get", "gateway", "-n", "shop", "edge", "-o",
                                "json").stdout)
        status = gw.get("status") or {}
        ok = any(c["type"] == "Programmed" and c["status"] == "True"
                 for c in status.get("conditions") or ())
        return status["addresses"][0]["value"] if ok and status.get("addresses") else None
    return wait_for("the Gateway programmed", programmed, timeout=60), ca_file


def kubectl(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBECTL, *args], check=True, capture_output=True, text=True,
                          env={**os.environ, "KUBECONFIG": str(lab.paths.kubeconfig)},
                          timeout=60)


def from_outside(lab: Lab, *curl: str) -> str:
    """curl from the control node, which stands in for a host outside the
    cluster: the pod that answered, or the status code when none did."""
    out = lab.netplane("lab", "exec", "control", "--", "curl", "-sS", "--max-time", "5",
                       "-w", " %{http_code}", *curl, check=False)
    words = out.stdout.split()
    if out.returncode != 0 or not words:
        return f"ERR:{out.returncode}:{out.stderr.strip()}"
    return words[0].removeprefix("pod=").rsplit("-", 2)[0] if words[0].startswith("pod=") \
        else words[-1]


def test_the_gateway_routes_by_host_on_its_load_balancer_address(
        lab: Lab, gateway: tuple[str, Path]) -> None:
    address, _ = gateway
    assert address.startswith("192.168.56.2")
    wait_for("a.example served", lambda: from_outside(
        lab, "-H", "Host: a.example", f"http://{address}/") == "web-v1")
    assert Counter(from_outside(lab, "-H", "Host: a.example", f"http://{address}/")
                   for _ in range(5)) == {"web-v1": 5}
    assert Counter(from_outside(lab, "-H", "Host: b.example", f"http://{address}/")
                   for _ in range(5)) == {"web-v2": 5}
    # No route for that host: the Gateway's proxy answers 404 itself.
    assert from_outside(lab, "-H", "Host: c.example", f"http://{address}/") == "404"


def test_the_gateway_terminates_tls_with_each_hostnames_certificate(
        lab: Lab, gateway: tuple[str, Path]) -> None:
    address, ca = gateway

    def https(host: str) -> str:
        return from_outside(lab, "--cacert", str(ca), "--resolve", f"{host}:443:{address}",
                            f"https://{host}/")
    # curl checks that the certificate is for the name it asked for, so each
    # answer also proves the SNI choice.
    assert wait_for("a.example over TLS", lambda: https("a.example") == "web-v1")
    assert Counter(https("b.example") for _ in range(5)) == {"web-v2": 5}
    assert Counter(https("a.example") for _ in range(5)) == {"web-v1": 5}


def test_the_gateway_answers_on_its_node_ports_and_says_so_in_its_status(
        lab: Lab, gateway: tuple[str, Path]) -> None:
    svc = json.loads(kubectl(lab, "get", "service", "-n", "shop", "edge-netplane", "-o",
                             "json").stdout)
    node_port = next(p["nodePort"] for p in svc["spec"]["ports"] if p["port"] == 80)
    assert from_outside(lab, "-H", "Host: b.example",
                        f"http://192.168.56.11:{node_port}/") == "web-v2"
    printed = kubectl(lab, "get", "gateway", "-n", "shop").stdout
    assert "edge" in printed and gateway[0] in printed and "True" in printed
    described = kubectl(lab, "describe", "httproute", "-n", "shop", "site-a").stdout
    assert "netplane.io/gateway-controller" in described and "Accepted" in described


def test_a_policy_denies_with_403_from_the_proxy(lab: Lab) -> None:
    def code(method: str, path: str) -> str:
        return lab.netplane("exec", "-n", "shop", "client", "--", "curl", "-s", "--max-time",
                            "5", "-o", "/dev/null", "-w", "%{http_code}", "-X", method,
                            f"http://far.shop{path}", check=False).stdout.strip()
    assert wait_for("the policy in force", lambda: code("POST", "/admin") == "403")
    assert code("GET", "/admin") == "200"
    assert code("POST", "/other") == "200"


class Capture:
    """tcpdump on node-2's underlay (eth0), for the packets to and from
    node-1 and its pods."""

    def __init__(self, lab: Lab, path: Path) -> None:
        self.lab, self.path = lab, path
        self.proc = subprocess.Popen(
            # -Z root: the file is in a folder only root may write to; immediate
            # mode: each packet is read as it comes, none left in the kernel's
            # buffer when tcpdump is stopped.
            [NETPLANE, "--lab", lab.name, "lab", "exec", "node-2", "--", "tcpdump", "-i", "eth0",
             "-Z", "root", "--immediate-mode", "-U", "-n", "-w", str(path),
             "tcp and (host 192.168.56.11 or net 10.244.1.0/24)"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        said = []
        while line := self.proc.stderr.readline():  # "listening on ...": it captures now
            said.append(line)
            if "listening" in line:
                break
        assert said and "listening" in said[-1], said

    def stop(self) -> str:
        """What was seen, as tcpdump prints it with payloads."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        return subprocess.run(["tcpdump", "-r", str(self.path), "-n", "-A"],
                              capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_between_nodes_enrolled_traffic_is_tls_and_other_traffic_is_plain(
        lab: Lab, tmp_path: Path) -> None:
    # The enrolled client's requests to far (on node-1) cross in the tunnel.
    marker = f"x-probe-{os.getpid()}"
    wait_for("the route for far in force", lambda: lab.netplane(
        "exec", "-n", "shop", "client", "--", "curl", "-s", "--max-time", "5", "-o",
        "/dev/null", "-w", "%{http_code}", "-X", "POST", "http://far.shop/admin",
        check=False).stdout == "403")
    capture = Capture(lab, tmp_path / "mesh.pcap")
    for _ in range(3):
        out = lab.netplane("exec", "-n", "shop", "client", "--", "curl", "-sS", "--max-time",
                           "5", "-H", f"{marker}: 1", "http://far.shop/headers", check=False)
        assert out.returncode == 0 and marker in out.stdout, out.stderr
    # A port not declared HTTP: the L4 proxy carries the bytes, in the tunnel too.
    out = lab.netplane("exec", "-n", "shop", "client", "--", "curl", "-sS", "--max-time", "5",
                       "-H", f"{marker}: 1", "http://far-tcp.shop:9000/headers", check=False)
    assert out.returncode == 0 and marker in out.stdout, out.stderr
    seen = capture.stop()
    assert ".15008:" in seen or ".15008 " in seen  # node to node on the tunnel's port
    assert marker not in seen and "GET /headers" not in seen
    metrics = lab.netplane("lab", "exec", "control", "--", "curl", "-sS", "--max-time", "3",
                           "http://192.168.56.12:10249/metrics").stdout
    assert any(line.startswith("netplane_mesh_tcp_connections_opened_total{")
               and 'destination_service="far-tcp.shop.svc.cluster.local"' in line
               for line in metrics.splitlines())
    assert 'netplane_mesh_tunnel_connections_total{direction="out",outcome="connected"}' \
        in metrics
    # The same request from a pod outside the mesh takes the kernel path, in the clear.
    capture = Capture(lab, tmp_path / "plain.pcap")
    out = lab.netplane("exec", "-n", "plain", "client", "--", "curl", "-sS", "--max-time", "5",
                       "-H", f"{marker}: 1", "http://far.shop/headers", check=False)
    assert out.returncode == 0, out.stderr
    seen = capture.stop()
    assert marker in seen and "GET /headers" in seen


def test_the_nodes_tunnel_certificates_came_through_signing_requests(lab: Lab) -> None:
    out = lab.netplane("exec", "-n", "shop", "client", "--", "curl", "-sS", "--max-time", "5",
                       "http://far.shop/", check=False)
    assert out.returncode == 0 and out.stdout.startswith("pod=far"), out.stderr
    csrs = kubectl(lab, "get", "csr").stdout
    assert "netplane.io/mesh-node" in csrs and "Approved,Issued" in csrs


def test_trace_shows_the_proxys_l7_decision_for_a_real_request(lab: Lab) -> None:
    out = lab.netplane("trace", "--from", "client", "-n", "shop", "http://web/",
                       "-H", "x-canary: 1").stdout
    assert "redirects" in out and "L7 proxy (:15001)" in out
    assert "HTTPRoute shop/canary matched, rule 0:" in out
    assert "header x-canary=1" in out and "backendRefs: web-v2:80" in out
    assert "try 1: backend shop/web-v2:80 endpoint" in out and "answer 200" in out
    # far is on node-1, the client on node-2: the try crossed in the tunnel.
    far = lab.netplane("trace", "--from", "client", "-n", "shop", "http://far/").stdout
    assert "through the tunnel to node-1's proxy (:15008, mutual TLS 1.3" in far
    l4 = lab.netplane("trace", "--from", "client", "-n", "shop", "far-tcp:9000").stdout
    assert "L4 proxy (:15002)" in l4 and "carried whole" in l4


def test_mesh_status_and_logs_show_each_nodes_proxy(lab: Lab) -> None:
    lab.netplane("exec", "-n", "shop", "client", "--", "curl", "-sS", "--max-time", "5",
                 "http://far.shop/logged", check=False)
    status = lab.netplane("mesh", "status").stdout
    assert "Enrolled namespaces (netplane.io/mesh=enabled): shop" in status
    assert "shop/canary" in status and "Service shop/web:80: Accepted ResolvedRefs" in status
    for node in ("node-1", "node-2"):
        assert f"certificate spiffe://cluster.local/ns/kube-system/sa/netplane-node.{node}" \
            in status
    assert "tunnels: listening on :15008" in status
    logs = lab.netplane("mesh", "logs", "--service", "far", "--node", "node-2").stdout
    line = next(ln for ln in logs.splitlines() if '"GET /logged"' in ln)
    assert line.startswith("node-2 ") and "shop/far#0" in line and " 200 " in line


def test_a_policy_denies_one_source_identity_and_allows_another(lab: Lab) -> None:
    def code(pod: str, url: str) -> str:
        return lab.netplane("exec", "-n", "shop", pod, "--", "curl", "-s", "--max-time", "5",
                            "-o", "/dev/null", "-w", "%{http_code}", url,
                            check=False).stdout.strip()
    assert wait_for("the policy in force", lambda: code("intruder", "http://far.shop/") == "403")
    assert code("client", "http://far.shop/") == "200"
    # At L4 the policy's source rule holds too: the connection is closed unserved.
    assert code("intruder", "http://far-tcp.shop:9000/") == "000"
    assert code("client", "http://far-tcp.shop:9000/") == "200"


def test_certificate_rotation_under_load_drops_no_request(lab: Lab) -> None:
    n = 1000
    loop = (f"for i in $(seq {n}); do curl -s -o /dev/null --max-time 5 -w '%{{http_code}}\\n' "
            f"http://far.shop/; done")
    load = subprocess.Popen([NETPLANE, "--lab", lab.name, "exec", "-n", "shop", "client", "--",
                             "sh", "-c", loop], stdout=subprocess.PIPE, text=True)
    assert load.stdout is not None
    codes: list[str] = []
    reader = threading.Thread(target=lambda: codes.extend(line.strip() for line in load.stdout))
    reader.start()
    try:
        wait_for("the load running", lambda: len(codes) >= 20)
        for _ in range(2):  # both nodes renew, twice, while requests cross between them
            out = lab.netplane("mesh", "rotate").stdout
            assert out.count(": renewed: serial") == 2, out
        during = len(codes)
        load.wait(timeout=600)
    finally:
        if load.poll() is None:
            load.kill()
        reader.join(timeout=30)
    assert during < n, "the load ended before the renewals did"
    assert Counter(codes) == {"200": n}


def test_across_nodes_the_pod_sees_the_client_pods_address(lab: Lab) -> None:
    client = json.loads(kubectl(lab, "get", "pod", "-n", "shop", "client", "-o",
                                "json").stdout)["status"]["podIP"]
    for url in ("http://far.shop/", "http://far-tcp.shop:9000/"):  # L7, and L4
        out = lab.netplane("exec", "-n", "shop", "client", "--", "curl", "-sS", "--max-time",
                           "5", url, check=False)
        assert out.returncode == 0 and f"client={client}" in out.stdout, (url, out.stdout)
