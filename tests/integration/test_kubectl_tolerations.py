"""DefaultTolerationSeconds through a real ``netplane server`` started with
kube-apiserver's flags: a pod created with kubectl shows the two
tolerations in ``kubectl get pod -o yaml``; one that tolerates a taint
already keeps its own. Loopback only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from tests.integration.loopback import HAVE_KUBECTL, Cluster, api_server, scratch_namespace

pytestmark = pytest.mark.skipif(not HAVE_KUBECTL, reason="kubectl is not installed (looked "
                                                         "on PATH and in /usr/bin/kubectl)")

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers: [{name: c, image: netplane/echo}]
---
apiVersion: v1
kind: Pod
metadata: {name: patient}
spec:
  containers: [{name: c, image: netplane/echo}]
  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with api_server(tmp_path_factory.mktemp("tolerations"),
                    "--default-not-ready-toleration-seconds", "20",
                    "--default-unreachable-toleration-seconds", "45") as running:
        yield running


def tolerations(cluster: Cluster, ns: str, pod: str) -> list[object]:
    shown = yaml.safe_load(cluster.kubectl("get", "pod", pod, "-n", ns, "-o", "yaml").stdout)
    return list(shown["spec"]["tolerations"])


def test_kubectl_shows_the_default_tolerations(cluster: Cluster) -> None:
    with scratch_namespace(cluster, "tol") as ns:
        cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=POD)
        assert tolerations(cluster, ns, "web") == [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 20},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 45}]
        assert tolerations(cluster, ns, "patient") == [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
             "effect": "NoExecute"},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 20}]
