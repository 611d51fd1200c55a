"""Field sets and managedFields, as structured-merge-diff and kube-apiserver
compute them: FieldsV1 of typical objects (the exact JSON kube writes), and
tables of apply merges, removals, conflicts and updates."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import pytest

from netplane.api import fieldpath, managedfields, typed
from netplane.api.fieldpath import Path
from netplane.api.managedfields import Conflicts, Entry, Operation, Scope
from netplane.api.meta import Obj

DEPLOY = Scope(typed.kind_node("apps", "v1", "Deployment"), "apps/v1")
SERVICE = Scope(typed.kind_node("", "v1", "Service"), "v1")
NOW = "2026-01-02T03:04:05Z"


def deployment(*, replicas: int | None = 3, image: str = "nginx:1.27",
               containers: list[Obj] | None = None, labels: dict[str, str] | None = None) -> Obj:
    spec: Obj = {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": containers or [
                                  {"name": "web", "image": image,
                                   "ports": [{"containerPort": 80}]}]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    md: Obj = {"name": "web"}
    if labels is not None:
        md["labels"] = labels
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": md, "spec": spec}


def fields_v1(entries: list[Entry], manager: str) -> Any:
    [entry] = [e for e in entries if e.manager == manager]
    return entry.to_json()["fieldsV1"]


def p(*elements: str) -> Path:
    return tuple(elements)


# -- FieldsV1 --

# What kube-apiserver 1.32 stores for ``kubectl apply --server-side`` of
# deployment(): only what the configuration sets, list items with ".", the
# port keyed with its defaulted protocol.
APPLIED_FIELDS = {
    "f:spec": {
        "f:replicas": {},
        "f:selector": {},
        "f:template": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {'k:{"name":"web"}': {
                ".": {}, "f:image": {}, "f:name": {},
                "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {
                    ".": {}, "f:containerPort": {}}}}}}}}}


def test_fields_of_an_applied_deployment() -> None:
    _, entries = managedfields.apply([], None, deployment(), DEPLOY, manager="kubectl",
                                     force=False, now=NOW)
    [entry] = managedfields.encode(entries)
    assert entry == {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
                     "time": NOW, "fieldsType": "FieldsV1", "fieldsV1": APPLIED_FIELDS}
    # kube's order: fields, then keys; "." first.
    assert json.dumps(entry["fieldsV1"]).startswith('{"f:spec": {"f:replicas": {}, "f:selector"')


def created_deployment() -> Obj:
    """What ``kubectl create deployment web --image=nginx --port=80`` stores,
    defaults included."""
    obj = deployment(labels={"app": "web"})
    obj["spec"].update(progressDeadlineSeconds=600, revisionHistoryLimit=10, strategy={
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    pod = obj["spec"]["template"]["spec"]
    pod.update(dnsPolicy="ClusterFirst", restartPolicy="Always", schedulerName="default-scheduler",
               securityContext={}, terminationGracePeriodSeconds=30)
    pod["containers"][0].update(imagePullPolicy="IfNotPresent", resources={},
                                terminationMessagePath="/dev/termination-log",
                                terminationMessagePolicy="File")
    pod["containers"][0]["ports"][0]["protocol"] = "TCP"
    return obj


# kube's entry for that create: maps, pointers and list items that appear
# whole get "."; spec, strategy, template (held by value in Go) do not.
CREATED_FIELDS = {
    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
    "f:spec": {
        "f:progressDeadlineSeconds": {}, "f:replicas": {}, "f:revisionHistoryLimit": {},
        "f:selector": {},
        "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}},
                       "f:type": {}},
        "f:template": {
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:containers": {'k:{"name":"web"}': {
                    ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
                    "f:ports": {".": {}, 'k:{"containerPort":80,"protocol":"TCP"}': {
                        ".": {}, "f:containerPort": {}, "f:protocol": {}}},
                    "f:resources": {}, "f:terminationMessagePath": {},
                    "f:terminationMessagePolicy": {}}},
                "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}}}}}


def test_fields_of_a_created_deployment() -> None:
    entries = managedfields.update([], None, created_deployment(), DEPLOY,
                                   manager="kubectl-create", now=NOW)
    [entry] = managedfields.encode(entries)
    assert (entry["manager"], entry["operation"]) == ("kubectl-create", "Update")
    assert entry["fieldsV1"] == CREATED_FIELDS


def test_service_ports_and_sets() -> None:
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "finalizers": ["a", "b"]},
           "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}}
    got = fieldpath.to_fields_v1(typed.field_set(svc, SERVICE.node))
    assert got["f:spec"] == {"f:ports": {'k:{"port":80,"protocol":"TCP"}': {
        ".": {}, "f:port": {}}}, "f:selector": {}}  # an atomic map
    assert got["f:metadata"]["f:finalizers"] == {'v:"a"': {}, 'v:"b"': {}}


def test_fields_v1_round_trip() -> None:
    paths = fieldpath.from_fields_v1(CREATED_FIELDS)
    assert p("f:metadata", "f:labels") in paths  # "." made it a member
    assert p("f:spec", "f:strategy") not in paths
    assert fieldpath.to_fields_v1(paths) == CREATED_FIELDS
    with pytest.raises(ValueError):
        fieldpath.from_fields_v1({"x:y": {}})


@pytest.mark.parametrize(("path", "shown"), [
    (p("f:spec", "f:replicas"), ".spec.replicas"),
    (p("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"web"}', "f:image"),
     '.spec.template.spec.containers[name="web"].image'),
    (p("f:ports", 'k:{"containerPort":80,"protocol":"TCP"}'),
     '.ports[containerPort=80,protocol="TCP"]'),
    (p("f:metadata", "f:finalizers", 'v:"a"'), '.metadata.finalizers[="a"]'),
])
def test_path_strings(path: Path, shown: str) -> None:
    assert fieldpath.path_string(path) == shown


def test_key_order_is_numeric() -> None:
    paths = {p("f:ports", 'k:{"port":10}'), p("f:ports", 'k:{"port":9}')}
    assert list(fieldpath.to_fields_v1(paths)["f:ports"]) == ['k:{"port":9}', 'k:{"port":10}']


# -- apply tables --

def entry(manager: str, *paths: Path, operation: Operation = Operation.UPDATE,
          subresource: str = "") -> Entry:
    return Entry(manager, operation, "apps/v1", frozenset(paths), "2026-01-01T00:00:00Z",
                 subresource)


REPLICAS = p("f:spec", "f:replicas")
CONTAINERS = p("f:spec", "f:template", "f:spec", "f:containers")
WEB = (*CONTAINERS, 'k:{"name":"web"}')
SIDE = (*CONTAINERS, 'k:{"name":"side"}')


def apply(entries: list[Entry], live: Obj | None, config: Obj, manager: str = "ci", *,
          force: bool = False) -> tuple[Obj, list[Entry]]:
    return managedfields.apply(entries, live, config, DEPLOY, manager=manager, force=force,
                               now=NOW)


def containers(obj: Obj) -> list[str]:
    return [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]]


def test_reapply_without_a_field_removes_it() -> None:
    live, entries = apply([], None, deployment(labels={"team": "a"}))
    new, entries = apply(entries, live, deployment(replicas=None))
    assert "replicas" not in new["spec"] and "labels" not in new["metadata"]
    assert REPLICAS not in fields_paths(entries, "ci")


def fields_paths(entries: list[Entry], manager: str) -> frozenset[Path]:
    return next(e.fields for e in entries if e.manager == manager)


def test_a_field_someone_else_owns_stays() -> None:
    live, entries = apply([], None, deployment())
    entries.append(entry("scaler", REPLICAS))
    new, _ = apply(entries, live, deployment(replicas=None))
    assert new["spec"]["replicas"] == 3


def test_conflict_and_force() -> None:
    live, entries = apply([], None, deployment(replicas=3))
    live["spec"]["replicas"] = 5
    entries = [*_without(entries, REPLICAS), entry("kubectl", REPLICAS, subresource="scale")]
    with pytest.raises(Conflicts) as e:
        apply(entries, live, deployment(replicas=3))
    assert e.value.message() == ('Apply failed with 1 conflict: conflict with "kubectl" with '
                                 'subresource "scale" using apps/v1: .spec.replicas')
    assert e.value.causes() == [{"reason": "FieldManagerConflict", "field": ".spec.replicas",
                                 "message": 'conflict with "kubectl" with subresource "scale" '
                                            "using apps/v1"}]
    new, entries = apply(entries, live, deployment(replicas=3), force=True)
    assert new["spec"]["replicas"] == 3
    assert [e.manager for e in entries] == ["ci"]  # the scaler owned nothing else
    assert REPLICAS in fields_paths(entries, "ci")


def _without(entries: list[Entry], path: Path) -> list[Entry]:
    return [Entry(e.manager, e.operation, e.api_version, e.fields - {path}, e.time,
                  e.subresource) for e in entries]


def test_same_value_is_shared_not_a_conflict() -> None:
    live, entries = apply([], None, deployment(replicas=3))
    only_replicas = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                     "spec": {"replicas": 3}}
    _, entries = apply(entries, live, only_replicas, "second")
    assert REPLICAS in fields_paths(entries, "ci") and REPLICAS in fields_paths(entries, "second")


def test_several_conflicts_are_listed_by_manager() -> None:
    live, entries = apply([], None, deployment(replicas=3), "b-team")
    _, more = apply([], None, deployment(replicas=3), "a-team")
    entries += more
    with pytest.raises(Conflicts) as e:
        apply(entries, live, deployment(replicas=4, image="x"), "c-team")
    assert e.value.message() == (
        'Apply failed with 4 conflicts: conflicts with "a-team":\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="web"].image\n'
        'conflicts with "b-team":\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="web"].image')


def test_two_appliers_share_a_list_map() -> None:
    live, entries = apply([], None, deployment())
    side = {"name": "side", "image": "busybox"}
    config = deployment(replicas=None, containers=[side])
    live, entries = apply(entries, live, config, "sidecar")
    assert containers(live) == ["web", "side"]
    assert SIDE in fields_paths(entries, "sidecar") and WEB not in fields_paths(entries, "sidecar")
    # The first applier re-applies: the sidecar's item stays, being owned.
    live, entries = apply(entries, live, deployment(image="nginx:1.28"))
    assert containers(live) == ["web", "side"]
    # The sidecar stops applying its container: only that one goes.
    without_side = {**config, "spec": {"selector": config["spec"]["selector"]}}
    live, entries = apply(entries, live, without_side, "sidecar")
    assert containers(live) == ["web"]


@dataclass(frozen=True)
class MergeCase:
    name: str
    live: Obj
    config: Obj
    want: Obj


MERGES = [
    MergeCase("list-map merges by key, live order kept for live-only items",
              {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]},
              {"containers": [{"name": "b", "image": "2"}]},
              {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}),
    MergeCase("atomic lists are replaced",
              {"containers": [{"name": "a", "command": ["x", "y"]}]},
              {"containers": [{"name": "a", "command": ["z"]}]},
              {"containers": [{"name": "a", "command": ["z"]}]}),
    MergeCase("strategic-merge keys make list-maps too (env by name)",
              {"containers": [{"name": "a", "env": [{"name": "A", "value": "1"}]}]},
              {"containers": [{"name": "a", "env": [{"name": "B", "value": "2"}]}]},
              {"containers": [{"name": "a", "env": [{"name": "A", "value": "1"},
                                                    {"name": "B", "value": "2"}]}]}),
    MergeCase("atomic maps are replaced (nodeSelector)",
              {"nodeSelector": {"a": "1"}, "containers": []},
              {"nodeSelector": {"b": "2"}},
              {"nodeSelector": {"b": "2"}, "containers": []}),
    MergeCase("granular maps merge key by key (resources limits)",
              {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1"}}}]},
              {"containers": [{"name": "a", "resources": {"limits": {"memory": "1Gi"}}}]},
              {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1",
                                                                     "memory": "1Gi"}}}]}),
]


@pytest.mark.parametrize("case", MERGES, ids=lambda c: c.name)
def test_merge(case: MergeCase) -> None:
    pod_spec = typed.node({"$ref": "#/$defs/io.k8s.api.core.v1.PodSpec"})
    assert typed.merge(case.live, case.config, pod_spec) == case.want


def test_sets_merge_and_selectors_are_atomic() -> None:
    meta_node = typed.node({"$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"})
    assert typed.merge({"finalizers": ["a"]}, {"finalizers": ["b", "a"]}, meta_node) == \
        {"finalizers": ["b", "a"]}
    assert typed.merge({"finalizers": ["a", "c"]}, {"finalizers": ["b"]}, meta_node) == \
        {"finalizers": ["a", "c", "b"]}
    spec = DEPLOY.node.child("spec")
    live = {"selector": {"matchLabels": {"a": "1"}}}
    assert typed.merge(live, {"selector": {"matchLabels": {"b": "2"}}}, spec) == \
        {"selector": {"matchLabels": {"b": "2"}}}


# -- updates --

def test_update_takes_changed_fields_from_others() -> None:
    live, entries = apply([], None, deployment())
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 7
    del new["spec"]["template"]["spec"]["containers"][0]["ports"]
    entries = managedfields.update(entries, live, new, DEPLOY, manager="hpa", now=NOW)
    assert fields_paths(entries, "hpa") == {REPLICAS}
    ci = fields_paths(entries, "ci")
    assert REPLICAS not in ci and not any("f:ports" in path for path in ci)


def test_an_update_that_changes_nothing_adds_no_entry() -> None:
    live, entries = apply([], None, deployment())
    assert managedfields.update(entries, live, copy.deepcopy(live), DEPLOY, manager="x",
                                now="later") == entries


def test_status_belongs_to_the_status_subresource() -> None:
    old = deployment()
    new = {**copy.deepcopy(old), "status": {"replicas": 3}}
    assert managedfields.update([], old, new, DEPLOY, manager="x", now=NOW) == []
    status_scope = Scope(DEPLOY.node, "apps/v1", "status")
    [e] = managedfields.update([], old, new, status_scope, manager="x", now=NOW)
    assert (e.subresource, e.fields) == ("status", frozenset({p("f:status", "f:replicas")}))


def test_kubectl_takes_over_what_client_side_apply_set() -> None:
    """Moving from ``kubectl apply`` to ``kubectl apply --server-side``: the
    fields the last-applied annotation vouches for are not conflicts."""
    config = deployment(replicas=3)
    live = copy.deepcopy(config)
    live["metadata"]["annotations"] = {managedfields.LAST_APPLIED: json.dumps(config)}
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "changed-by-edit"
    entries = managedfields.update([], None, live, DEPLOY, manager="kubectl-client-side-apply",
                                   now=NOW)
    with pytest.raises(Conflicts) as e:  # the edited image is not vouched for
        apply(entries, live, deployment(replicas=4, image="mine"), "kubectl")
    assert e.value.message().endswith('.spec.template.spec.containers[name="web"].image')
    new, entries = apply(entries, live, deployment(replicas=4, image="changed-by-edit"),
                         "kubectl")
    assert new["spec"]["replicas"] == 4
    assert REPLICAS not in fields_paths(entries, "kubectl-client-side-apply")
    annotation = json.loads(new["metadata"]["annotations"][managedfields.LAST_APPLIED])
    assert annotation["spec"]["replicas"] == 4


def test_entries_sort_and_decode() -> None:
    entries = [entry("b", REPLICAS), entry("a", REPLICAS, operation=Operation.APPLY)]
    encoded = managedfields.encode(entries)
    assert [e["manager"] for e in encoded] == ["a", "b"]
    assert managedfields.decode(encoded) == [entries[1], entries[0]]
    with pytest.raises(ValueError):
        managedfields.decode([{"manager": "x", "operation": "Other", "apiVersion": "v1",
                               "fieldsType": "FieldsV1"}])


def test_update_managers_are_capped() -> None:
    """Beyond ten Update entries the oldest fold into ``ancient-changes``."""
    entries = [Entry(f"m{i:02}", Operation.UPDATE, "apps/v1", frozenset({p("f:spec", f"f:x{i}")}),
                     f"2026-01-01T00:00:{i:02}Z") for i in range(12)]
    capped = managedfields.cap_updates(entries)
    assert len(capped) == 10
    ancient = next(e for e in capped if e.manager == "ancient-changes")
    assert ancient.fields == {p("f:spec", "f:x0"), p("f:spec", "f:x1"), p("f:spec", "f:x2")}
    assert ancient.time == "2026-01-01T00:00:02Z"
    assert {e.manager for e in capped} == {"ancient-changes"} | {f"m{i:02}" for i in range(3, 12)}
