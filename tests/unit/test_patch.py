"""Strategic merge patch and its directives (``$patch``, ``$retainKeys``,
``$deleteFromPrimitiveList/``, ``$setElementOrder/``): first as pure
functions, then through a real in-process API server, where what a
directive says must never end up stored as a field."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from netplane.api import resources
from netplane.api.meta import Obj
from netplane.cluster.apiserver.patch import STRATEGIC, JSONPatchError, merge_patch
from netplane.cluster.client import ApiError, Client, Connection
from tests.unit.test_client import Server

POD: Obj = {
    "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"},
                 "finalizers": ["a.example/x", "b.example/y", "c.example/z"]},
    "spec": {
        "containers": [
            {"name": "web", "image": "nginx:1", "ports": [{"name": "http", "containerPort": 80}],
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "sidecar", "image": "busybox"},
        ],
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
    },
}


def smp(target: Obj, patch: Obj) -> Obj:
    before = copy.deepcopy(target)
    out = merge_patch(target, patch, strategic=True)
    assert target == before  # the stored object is never changed in place
    assert isinstance(out, dict)
    return out


def names(items: list[Obj]) -> list[str]:
    return [str(i["name"]) for i in items]


def test_named_lists_merge_by_key_and_null_removes_a_field() -> None:
    out = smp(POD, {"metadata": {"labels": {"tier": None}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:2"},
                                            {"name": "new", "image": "redis"}]}})
    assert out["metadata"]["labels"] == {"app": "web"}
    assert names(out["spec"]["containers"]) == ["web", "sidecar", "new"]
    web = out["spec"]["containers"][0]
    assert web["image"] == "nginx:2" and web["ports"] == [{"name": "http", "containerPort": 80}]


def test_patch_delete_in_a_list_item_removes_that_item_only() -> None:
    out = smp(POD, {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"},
                                            {"name": "absent", "$patch": "delete"}]}})
    assert names(out["spec"]["containers"]) == ["web"]


def test_patch_delete_in_a_map_removes_the_map() -> None:
    out = smp(POD, {"spec": {"strategy": {"$patch": "delete"}}})
    assert "strategy" not in out["spec"] and "containers" in out["spec"]
    with pytest.raises(JSONPatchError, match="DELETE"):
        merge_patch(POD, {"$patch": "delete"}, strategic=True)


def test_patch_replace_in_a_map_replaces_instead_of_merging() -> None:
    out = smp(POD, {"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}})
    assert out["spec"]["strategy"] == {"type": "Recreate"}  # rollingUpdate gone
    merged = smp(POD, {"spec": {"strategy": {"type": "Recreate"}}})
    assert merged["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1}  # without it, kept


def test_patch_replace_as_a_list_item_replaces_the_whole_list() -> None:
    out = smp(POD, {"spec": {"containers": [{"$patch": "replace"},
                                            {"name": "only", "image": "redis"}]}})
    assert out["spec"]["containers"] == [{"name": "only", "image": "redis"}]
    env = smp(POD, {"spec": {"containers": [
        {"name": "web", "env": [{"name": "C", "value": "3"}, {"$patch": "replace"}]}]}})
    assert env["spec"]["containers"][0]["env"] == [{"name": "C", "value": "3"}]
    assert env["spec"]["containers"][0]["image"] == "nginx:1"  # the item itself merged


def test_patch_replace_on_one_list_item_replaces_that_item() -> None:
    out = smp(POD, {"spec": {"containers": [{"name": "web", "image": "nginx:3",
                                             "$patch": "replace"}]}})
    assert out["spec"]["containers"][0] == {"name": "web", "image": "nginx:3"}
    assert names(out["spec"]["containers"]) == ["web", "sidecar"]


def test_unknown_patch_directive_is_an_error() -> None:
    with pytest.raises(JSONPatchError, match="unknown \\$patch directive 'squash'"):
        merge_patch(POD, {"spec": {"strategy": {"$patch": "squash"}}}, strategic=True)


def test_retain_keys_clears_the_fields_not_named() -> None:
    out = smp(POD, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}})
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    kept = smp(POD, {"spec": {"strategy": {"$retainKeys": ["type", "rollingUpdate"],
                                           "rollingUpdate": {"maxSurge": 2}}}})
    assert kept["spec"]["strategy"] == {"type": "RollingUpdate",
                                        "rollingUpdate": {"maxSurge": 2}}


def test_delete_from_primitive_list_removes_those_values() -> None:
    out = smp(POD, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b.example/y",
                                                                         "not.there/q"]}})
    assert out["metadata"]["finalizers"] == ["a.example/x", "c.example/z"]


def test_set_element_order_orders_merged_items_and_primitives() -> None:
    out = smp(POD, {"spec": {"$setElementOrder/containers": [{"name": "sidecar"},
                                                             {"name": "web"}],
                             "containers": [{"name": "web", "image": "nginx:2"}]}})
    assert names(out["spec"]["containers"]) == ["sidecar", "web"]
    assert out["spec"]["containers"][1]["image"] == "nginx:2"
    # Items the order leaves out keep their order, after the ones it names.
    env = smp(POD, {"spec": {"containers": [{
        "name": "web", "$setElementOrder/env": [{"name": "C"}, {"name": "A"}],
        "env": [{"name": "C", "value": "3"}]}]}})
    assert names(env["spec"]["containers"][0]["env"]) == ["C", "A", "B"]
    fin = smp(POD, {"metadata": {"$setElementOrder/finalizers": ["c.example/z",
                                                                 "a.example/x"]}})
    assert fin["metadata"]["finalizers"] == ["c.example/z", "a.example/x", "b.example/y"]


def test_json_merge_patch_takes_lists_whole() -> None:
    out = merge_patch(POD, {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}})
    assert out["spec"]["containers"] == [{"name": "web", "image": "nginx:2"}]


# -- through the API server ------------------------------------------------------------------


@pytest.fixture
async def cli(tmp_path: Path) -> AsyncIterator[Client]:
    server = Server(tmp_path)
    await server.start()
    try:
        async with Client(Connection(socket=str(server.cfg.socket))) as c:
            yield c
    finally:
        await server.stop()


def stored_deployment() -> Obj:
    containers = [{"name": "web", "image": "nginx:1",
                   "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                  {"name": "sidecar", "image": "busybox"}]
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": containers}}}}


def template(obj: Obj) -> Obj:
    return dict(obj["spec"]["template"]["spec"])


def has_directive(value: object) -> bool:
    if isinstance(value, dict):
        return any(str(k).startswith("$") or has_directive(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_directive(v) for v in value)
    return False


async def test_directives_through_the_api_are_obeyed_and_never_stored(cli: Client) -> None:
    dep = resources.DEPLOYMENT
    await cli.create(dep, stored_deployment(), "default")
    patched = await cli.patch(dep, "web", {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}],
        "containers": [{"name": "web", "$setElementOrder/env": [{"name": "B"}, {"name": "A"}],
                        "env": [{"name": "A", "value": "one"}]}]}}}},
        "default", content_type=STRATEGIC)
    assert names(template(patched)["containers"]) == ["sidecar", "web"]
    web = template(patched)["containers"][1]
    assert web["env"] == [{"name": "B", "value": "2"}, {"name": "A", "value": "one"}]
    stored = await cli.get(dep, "web", "default")
    assert stored == patched and not has_directive(stored)


async def test_patch_replace_and_delete_through_the_api(cli: Client) -> None:
    dep = resources.DEPLOYMENT
    await cli.create(dep, stored_deployment(), "default")
    patched = await cli.patch(dep, "web", {
        "metadata": {"labels": {"$patch": "replace", "tier": "back"}},
        "spec": {"template": {"spec": {"containers": [
            {"name": "web", "env": [{"name": "A", "$patch": "delete"}]},
            {"name": "sidecar", "$patch": "delete"}]}}}},
        "default", content_type=STRATEGIC)
    assert patched["metadata"]["labels"] == {"tier": "back"}
    assert names(template(patched)["containers"]) == ["web"]
    assert template(patched)["containers"][0]["env"] == [{"name": "B", "value": "2"}]
    with pytest.raises(ApiError) as err:
        await cli.patch(dep, "web", {"$patch": "delete"}, "default", content_type=STRATEGIC)
    assert err.value.code == 422
    assert (await cli.get(dep, "web", "default"))["metadata"]["labels"] == {"tier": "back"}
