"""coordination.k8s.io/v1 Lease through a real ``netplane server``: the
Python client's create, read, update and list, kubectl's table, kube's
validation, and the node agent's renewal against it. Loopback only."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from netplane.api import resources
from netplane.cluster.client import Client, Connection
from netplane.node import registration
from tests.integration.loopback import HAVE_KUBECTL, Cluster, api_server, scratch_namespace

pytestmark = pytest.mark.skipif(not HAVE_KUBECTL, reason="kubectl is not installed (looked "
                                                         "on PATH and in /usr/bin/kubectl)")

LEASE = """\
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {{name: {name}}}
spec: {{holderIdentity: {holder}, leaseDurationSeconds: {duration}}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with api_server(tmp_path_factory.mktemp("lease")) as running:
        yield running


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    with scratch_namespace(cluster, "ls") as name:
        yield name


def test_kubectl_applies_lists_and_refuses_a_bad_lease(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-",
                    stdin=LEASE.format(name="leader", holder="control-1_a1", duration=15))
    table = cluster.kubectl("get", "leases", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "HOLDER", "AGE"]
    assert table[1].split()[:2] == ["leader", "control-1_a1"]
    bad = cluster.kubectl("apply", "-n", ns, "-f", "-", check=False,
                          stdin=LEASE.format(name="bad", holder="x", duration=0))
    assert bad.returncode != 0
    assert "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0" in bad.stderr


def test_python_client_round_trips_a_lease(cluster: Cluster, ns: str) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    client: Any = kubernetes.client
    api = client.CoordinationV1Api(kubernetes.config.new_client_from_config(
        str(cluster.kubeconfig)))
    created = api.create_namespaced_lease(ns, client.V1Lease(
        metadata=client.V1ObjectMeta(name="py"),
        spec=client.V1LeaseSpec(holder_identity="me", lease_duration_seconds=10,
                                lease_transitions=0)))
    assert created.metadata.uid and created.spec.holder_identity == "me"
    created.spec.holder_identity = "you"
    created.spec.lease_transitions = 1
    updated = api.replace_namespaced_lease("py", ns, created)
    assert (updated.spec.holder_identity, updated.spec.lease_transitions) == ("you", 1)
    assert [x.metadata.name for x in api.list_namespaced_lease(ns).items] == ["py"]
    updated.spec.lease_transitions = -1
    with pytest.raises(client.ApiException) as refused:
        api.replace_namespaced_lease("py", ns, updated)
    assert refused.value.status == 422
    causes = json.loads(refused.value.body)["details"]["causes"]
    assert causes[0]["field"] == "spec.leaseTransitions"


def test_the_agent_creates_then_renews_its_node_lease(cluster: Cluster) -> None:
    assert cluster.data is not None
    sock = str(cluster.data.parent / "api.sock")

    async def scenario() -> tuple[Any, Any]:
        api = Client(Connection(socket=sock))
        try:
            # A real Node: the garbage collector deletes a Lease whose owner is missing.
            node = await api.create(resources.NODE, {"metadata": {"name": "lease-node"}})
            first = await registration.renew_lease_once(api, node, None)
            again = await registration.renew_lease_once(api, node, first)
            stale = await registration.renew_lease_once(api, node, None)  # reads it first
            return first, (again, stale)
        finally:
            await api.close()

    first, (again, stale) = asyncio.run(scenario())
    assert first["metadata"]["namespace"] == "kube-node-lease"
    assert first["spec"]["holderIdentity"] == "lease-node"
    assert again["spec"]["renewTime"] > first["spec"]["renewTime"]
    assert stale["spec"]["renewTime"] > again["spec"]["renewTime"]
    assert int(stale["metadata"]["resourceVersion"]) > int(again["metadata"]["resourceVersion"])
