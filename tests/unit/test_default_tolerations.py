"""The DefaultTolerationSeconds admission plugin: the pure rule, then a pod
created through a real in-process server with the server's flags set."""

from __future__ import annotations

from pathlib import Path

import pytest

from netplane.api import resources
from netplane.api.meta import Obj
from netplane.cluster.apiserver.tolerations import (
    KUBE_DEFAULTS,
    DefaultTolerationSeconds,
    add_default_tolerations,
)
from netplane.cluster.client import Client, Connection
from tests.unit.test_client import Server, pod

NOT_READY = {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 300}
UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
               "effect": "NoExecute", "tolerationSeconds": 300}


def admitted(*tolerations: Obj) -> list[Obj]:
    p: Obj = {"spec": {"tolerations": list(tolerations)} if tolerations else {}}
    add_default_tolerations(p, KUBE_DEFAULTS)
    return list(p["spec"]["tolerations"])


def test_a_pod_without_tolerations_gets_both() -> None:
    assert admitted() == [NOT_READY, UNREACHABLE]


@pytest.mark.parametrize(("given", "added"), [
    # Its own toleration of one key is kept, the other one is added.
    ({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
      "tolerationSeconds": 5}, [UNREACHABLE]),
    # No effect means every effect; no key (Exists) every key.
    ({"key": "node.kubernetes.io/unreachable", "operator": "Exists"}, [NOT_READY]),
    ({"operator": "Exists"}, []),
    ({"operator": "Exists", "effect": "NoExecute"}, []),
    # Another effect or key does not count.
    ({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"},
     [NOT_READY, UNREACHABLE]),
    ({"key": "dedicated", "operator": "Equal", "value": "db"}, [NOT_READY, UNREACHABLE]),
])
def test_what_the_pod_tolerates_already_is_not_added(given: Obj, added: list[Obj]) -> None:
    assert admitted(given) == [given, *added]


def test_the_seconds_are_the_servers() -> None:
    p: Obj = {"spec": {}}
    add_default_tolerations(p, DefaultTolerationSeconds(not_ready=20, unreachable=30))
    assert [t["tolerationSeconds"] for t in p["spec"]["tolerations"]] == [20, 30]


async def test_created_pods_get_them_from_the_server_flags(tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.cfg.default_not_ready_toleration_seconds = 20
    server.cfg.default_unreachable_toleration_seconds = 25
    await server.start()
    try:
        async with Client(Connection(socket=str(server.cfg.socket))) as client:
            created = await client.create(resources.POD, pod("web"))
            assert created["spec"]["tolerations"] == [
                dict(NOT_READY, tolerationSeconds=20), dict(UNREACHABLE, tolerationSeconds=25)]
            # Admission on create only: an update keeps what the pod has.
            got = await client.get(resources.POD, "web", "default")
            got["metadata"]["labels"]["v"] = "2"
            updated = await client.update(resources.POD, got)
            assert updated["spec"]["tolerations"] == created["spec"]["tolerations"]
    finally:
        await server.stop()
