"""The mesh in a lab: a pod of an enrolled namespace curls a Service by
name and its node's proxy routes each request by the Service's HTTPRoute:
x-canary: 1 to v2, everything else to v1 (the plain Service would have
sent a third of it to v2).

Address plan: the lab's defaults (underlay 192.168.56.0/24, pods
10.244.N.0/24, Services 10.96.0.0/12); the proxy on :15001 of each node."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from netplane.api import meta
from tests.e2e.conftest import Lab, started_lab, wait_for

pytestmark = pytest.mark.e2e
MANIFEST = Path(__file__).parent / "manifests" / "mesh.yaml"
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
            return len(pods) == 5 and all(meta.pod_ready(p) for p in pods)
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
