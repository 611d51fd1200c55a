"""NetworkPolicy through a real ``netplane server`` with the real kubectl
1.32, the Python ``kubernetes`` client and the ``netplane`` command: apply,
get, describe, explain, an invalid policy refused with the field named, the
namespace label policies select by. Everything stays on loopback
(127.0.0.1, a free port, the server's own Unix socket).

Address plan: the CIDRs in the policies (10.0.0.0/8 minus 10.1.0.0/16 and
10.2.0.0/16) are only data; nothing is routed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.loopback import HAVE_KUBECTL, Cluster, api_server, scratch_namespace

pytestmark = pytest.mark.skipif(not HAVE_KUBECTL, reason="kubectl is not installed (looked "
                                                         "on PATH and in /usr/bin/kubectl)")
NETPLANE = str(Path(sys.executable).with_name("netplane"))

POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-allow
  labels: {team: web}
spec:
  podSelector:
    matchLabels: {app: web}
  ingress:
  - ports:
    - port: http
    - port: 8000
      endPort: 9000
    from:
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: clients}
      podSelector:
        matchExpressions:
        - {key: role, operator: In, values: [frontend, api]}
    - ipBlock:
        cidr: 10.0.0.0/8
        except: [10.1.0.0/16, 10.2.0.0/16]
  egress:
  - ports:
    - {port: 53, protocol: UDP}
"""
DENY_ALL = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
"""
BAD = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: 80, endPort: 70}]
"""

DESCRIBED = """\
Spec:
  PodSelector:     app=web
  Allowing ingress traffic:
    To Port: http/TCP
    To Port Range: 8000-9000/TCP
    From:
      NamespaceSelector: kubernetes.io/metadata.name=clients
      PodSelector: role in (api,frontend)
    From:
      IPBlock:
        CIDR: 10.0.0.0/8
        Except: 10.1.0.0/16, 10.2.0.0/16
  Allowing egress traffic:
    To Port: 53/UDP
    To: <any> (traffic not restricted by destination)
  Policy Types: Ingress, Egress
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with api_server(tmp_path_factory.mktemp("netpol")) as running:
        yield running


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    with scratch_namespace(cluster, "np") as name:
        yield name


def netplane(cluster: Cluster, *args: str, stdin: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    assert cluster.data is not None
    out = subprocess.run([NETPLANE, "--socket", str(cluster.data.parent / "api.sock"), *args],
                         capture_output=True, text=True, input=stdin, timeout=60, check=False)
    if check:
        assert out.returncode == 0, f"netplane {' '.join(args)}: {out.stderr}"
    return out


def rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


def test_kubectl_applies_gets_and_describes_a_policy(cluster: Cluster, ns: str) -> None:
    applied = cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=POLICY)
    assert applied.stdout.strip() == "networkpolicy.networking.k8s.io/web-allow created"
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=DENY_ALL)
    again = cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=DENY_ALL)
    assert again.stdout.strip() == "networkpolicy.networking.k8s.io/deny-all unchanged"
    # The ports list is atomic and the live one has the defaulted protocols,
    # so kubectl's patch replaces it each time, as against kube-apiserver.
    again = cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=POLICY)
    assert again.stdout.strip() == "networkpolicy.networking.k8s.io/web-allow configured"

    got = rows(cluster.kubectl("get", "netpol", "-n", ns).stdout)
    assert got[0] == ["NAME", "POD-SELECTOR", "AGE"]
    assert {r[0]: r[1] for r in got[1:]} == {"web-allow": "app=web", "deny-all": "<none>"}
    assert rows(cluster.kubectl("get", "networkpolicies", "-n", ns, "-o", "wide").stdout)[0] \
        == ["NAME", "POD-SELECTOR", "AGE"]
    everywhere = rows(cluster.kubectl("get", "netpol", "-A").stdout)
    assert everywhere[0] == ["NAMESPACE", "NAME", "POD-SELECTOR", "AGE"]

    stored = json.loads(cluster.kubectl("get", "netpol", "web-allow", "-n", ns,
                                        "-o", "json").stdout)
    assert stored["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert [p["protocol"] for p in stored["spec"]["ingress"][0]["ports"]] == ["TCP", "TCP"]

    described = cluster.kubectl("describe", "netpol", "web-allow", "-n", ns).stdout
    head, _, body = described.partition("Spec:\n")
    assert "Spec:\n" + body == DESCRIBED
    lines = head.splitlines()
    assert lines[:2] == ["Name:         web-allow", f"Namespace:    {ns}"]
    assert lines[2].startswith("Created on:   20")
    assert lines[3:] == ["Labels:       team=web", "Annotations:  <none>"]
    # netplane's describe prints the same text.
    mine = netplane(cluster, "describe", "networkpolicy", "web-allow", "-n", ns).stdout
    assert mine == described


def test_an_invalid_policy_is_refused_naming_the_field(cluster: Cluster, ns: str) -> None:
    out = cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=BAD, check=False)
    assert out.returncode != 0
    assert ('The NetworkPolicy "bad" is invalid: spec.ingress[0].ports[0].endPort: Invalid '
            "value: 70: must be greater than or equal to `port`") in out.stderr
    bad_cidr = BAD.replace("ports: [{port: 80, endPort: 70}]",
                           "from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]")
    out = cluster.kubectl("create", "-n", ns, "-f", "-", stdin=bad_cidr, check=False)
    assert out.returncode != 0
    assert ('spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "11.0.0.0/16": must be '
            "a strict subset of `cidr`") in out.stderr
    missing = cluster.kubectl("get", "netpol", "bad", "-n", ns, check=False)
    assert 'networkpolicies.networking.k8s.io "bad" not found' in missing.stderr


def test_kubectl_explains_the_spec(cluster: Cluster) -> None:
    out = cluster.kubectl("explain", "networkpolicy.spec").stdout
    assert "KIND:       NetworkPolicy" in out
    assert "GROUP:      networking.k8s.io" in out and "VERSION:    v1" in out
    assert "FIELD: spec <NetworkPolicySpec>" in out
    assert "podSelector\t<LabelSelector> -required-" in out
    assert "policyTypes\t<[]string>" in out
    ports = cluster.kubectl("explain", "netpol.spec.ingress.ports.endPort").stdout
    assert "FIELD: endPort <integer>" in ports


def test_namespaces_have_the_name_label(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("label", "namespace", ns, "kubernetes.io/metadata.name=other",
                    "team=x", "--overwrite")
    labels = json.loads(cluster.kubectl("get", "ns", ns, "-o", "json").stdout)[
        "metadata"]["labels"]
    assert labels == {"kubernetes.io/metadata.name": ns, "team": "x"}
    picked = rows(cluster.kubectl("get", "ns", "-l", f"kubernetes.io/metadata.name={ns}").stdout)
    assert [r[0] for r in picked[1:]] == [ns]
    system = json.loads(cluster.kubectl("get", "ns", "kube-system", "-o", "json").stdout)
    assert system["metadata"]["labels"]["kubernetes.io/metadata.name"] == "kube-system"


def test_python_client_round_trips_policies(cluster: Cluster, ns: str) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    client: Any = kubernetes.client
    api = client.NetworkingV1Api(kubernetes.config.new_client_from_config(
        str(cluster.kubeconfig)))
    body = client.V1NetworkPolicy(
        metadata=client.V1ObjectMeta(name="py-policy"),
        spec=client.V1NetworkPolicySpec(
            pod_selector=client.V1LabelSelector(match_labels={"app": "db"}),
            ingress=[client.V1NetworkPolicyIngressRule(
                ports=[client.V1NetworkPolicyPort(port=5432, end_port=5433)],
                _from=[client.V1NetworkPolicyPeer(
                    namespace_selector=client.V1LabelSelector(
                        match_labels={"kubernetes.io/metadata.name": ns}),
                    pod_selector=client.V1LabelSelector(match_labels={"app": "web"}))])],
            egress=[client.V1NetworkPolicyEgressRule(to=[client.V1NetworkPolicyPeer(
                ip_block=client.V1IPBlock(cidr="10.0.0.0/8", _except=["10.1.0.0/16"]))])]))
    created = api.create_namespaced_network_policy(ns, body)
    assert created.metadata.uid and created.spec.policy_types == ["Ingress", "Egress"]
    assert created.spec.ingress[0].ports[0].protocol == "TCP"
    assert created.spec.ingress[0].ports[0].end_port == 5433

    listed = api.list_namespaced_network_policy(ns)
    assert [p.metadata.name for p in listed.items] == ["py-policy"]
    assert "py-policy" in {p.metadata.name for p in
                           api.list_network_policy_for_all_namespaces().items}
    read = api.read_namespaced_network_policy("py-policy", ns)
    assert read.spec.egress[0].to[0].ip_block._except == ["10.1.0.0/16"]
    assert read.spec.ingress[0]._from[0].pod_selector.match_labels == {"app": "web"}

    body.metadata.name = "py-bad"
    body.spec.ingress[0].ports[0].end_port = 1
    with pytest.raises(client.ApiException) as refused:
        api.create_namespaced_network_policy(ns, body)
    assert refused.value.status == 422
    status = json.loads(refused.value.body)
    assert status["details"]["causes"][0]["field"] == "spec.ingress[0].ports[0].endPort"

    api.delete_namespaced_network_policy("py-policy", ns)
    with pytest.raises(client.ApiException) as gone:
        api.read_namespaced_network_policy("py-policy", ns)
    assert gone.value.status == 404


def test_the_netplane_command_handles_the_kind(cluster: Cluster, ns: str) -> None:
    applied = netplane(cluster, "apply", "-n", ns, "-f", "-", stdin=POLICY + "---\n" + DENY_ALL)
    assert applied.stdout.splitlines() == ["networkpolicy.networking.k8s.io/web-allow created",
                                           "networkpolicy.networking.k8s.io/deny-all created"]
    got = rows(netplane(cluster, "get", "netpol", "-n", ns).stdout)
    assert got[0] == ["NAME", "POD-SELECTOR", "AGE"]
    assert {r[0]: r[1] for r in got[1:]} == {"web-allow": "app=web", "deny-all": "<none>"}
    refused = netplane(cluster, "apply", "-n", ns, "-f", "-", stdin=BAD, check=False)
    assert refused.returncode == 1 and "spec.ingress[0].ports[0].endPort" in refused.stderr
    deleted = netplane(cluster, "delete", "netpol", "deny-all", "-n", ns)
    assert deleted.stdout.strip() == 'networkpolicy.networking.k8s.io "deny-all" deleted'
    netplane(cluster, "apply", "-n", ns, "-f", "-", stdin=DENY_ALL)
    # kubectl's own words for the same deletion.
    by_kubectl = cluster.kubectl("delete", "netpol", "deny-all", "-n", ns)
    assert by_kubectl.stdout.strip() == deleted.stdout.strip()
    netplane(cluster, "apply", "-n", ns, "-f", "-", stdin=DENY_ALL)
    every = netplane(cluster, "delete", "networkpolicy", "--all", "-n", ns)
    assert sorted(every.stdout.splitlines()) == [
        'networkpolicy.networking.k8s.io "deny-all" deleted',
        'networkpolicy.networking.k8s.io "web-allow" deleted']
    assert "No resources found" in netplane(cluster, "get", "networkpolicies", "-n", ns).stdout
