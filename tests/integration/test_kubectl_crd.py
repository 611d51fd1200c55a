"""CustomResourceDefinitions with the real kubectl and the Python client
against ``netplane server`` on loopback: install a definition, wait for it
to be Established, apply, get (-o wide, -o yaml), explain, patch and watch
its objects, and delete the definition to see them go."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import yaml

from tests.integration.loopback import HAVE_KUBECTL, Cluster, api_server, wait_for

pytestmark = pytest.mark.skipif(not HAVE_KUBECTL, reason="kubectl is not installed")

GROUP = "example.netplane.io"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP, "scope": "Namespaced",
        "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"],
                  "categories": ["all"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                {"name": "Mode", "type": "string", "jsonPath": ".spec.rules[0].mode",
                 "priority": 1},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "description": "A Widget is a thing made for testing.",
                "properties": {
                    "spec": {
                        "type": "object", "required": ["size"],
                        "description": "What the widget should be.",
                        "properties": {
                            "size": {"type": "integer", "minimum": 1, "maximum": 10,
                                     "description": "How big, from 1 to 10."},
                            "color": {"type": "string", "default": "red",
                                      "enum": ["red", "green", "blue"]},
                            "rules": {"type": "array", "description": "How it behaves.",
                                      "items": {"type": "object", "properties": {
                                          "mode": {"type": "string",
                                                   "enum": ["Fast", "Slow"],
                                                   "default": "Slow",
                                                   "description": "Fast or Slow."}}}},
                        }},
                    "status": {"type": "object", "properties": {
                        "phase": {"type": "string"}}},
                }}},
        }]},
}


def widget(name: str, **spec: Any) -> str:
    return yaml.safe_dump({"apiVersion": f"{GROUP}/v1", "kind": "Widget",
                           "metadata": {"name": name}, "spec": spec})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with api_server(tmp_path_factory.mktemp("kubectl-crd")) as running:
        yield running


def test_custom_resources_end_to_end(cluster: Cluster) -> None:
    out = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(CRD))
    assert out.stdout.strip() == f"customresourcedefinition.apiextensions.k8s.io/widgets.{GROUP}" \
                                 " created"
    cluster.kubectl("wait", "--for=condition=Established", f"crd/widgets.{GROUP}",
                    "--timeout=30s")
    resources = cluster.kubectl("api-resources", "--api-group", GROUP).stdout
    assert resources.split("\n")[1].split() == ["widgets", "wd", f"{GROUP}/v1", "true", "Widget"]

    out = cluster.kubectl("apply", "-f", "-", stdin=widget("w1", size=3, rules=[{}]))
    assert out.stdout.strip() == f"widget.{GROUP}/w1 created"
    out = cluster.kubectl("apply", "-f", "-", stdin=widget("w1", size=4, rules=[{}]))
    assert out.stdout.strip() == f"widget.{GROUP}/w1 configured"

    wide = cluster.kubectl("get", "widgets", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "SIZE", "COLOR", "PHASE", "MODE", "AGE"]
    # No phase yet: a null cell, which kubectl prints as nothing.
    assert wide[1].split()[:4] == ["w1", "4", "red", "Slow"]
    assert cluster.kubectl("get", "wd").stdout.splitlines()[0].split() == [
        "NAME", "SIZE", "COLOR", "PHASE", "AGE"]
    assert f"widget.{GROUP}/w1" in cluster.kubectl("get", "all").stdout
    got = yaml.safe_load(cluster.kubectl("get", "widget", "w1", "-o", "yaml").stdout)
    assert got["spec"] == {"size": 4, "color": "red", "rules": [{"mode": "Slow"}]}
    assert got["metadata"]["generation"] == 2

    explained = cluster.kubectl("explain", "widgets.spec.rules").stdout
    assert "How it behaves." in explained and "Fast or Slow." in explained
    assert "How big, from 1 to 10." in cluster.kubectl("explain", "widget.spec").stdout

    bad = cluster.kubectl("apply", "-f", "-", stdin=widget("w2", size=30, color="pink"),
                          check=False)
    assert bad.returncode != 0
    assert 'The Widget "w2" is invalid' in bad.stderr
    assert 'spec.color: Unsupported value: "pink": supported values: "red", "green", "blue"' \
        in bad.stderr
    assert "spec.size: Invalid value: 30: spec.size in body should be less than or equal " \
           "to 10" in bad.stderr
    unknown = cluster.kubectl("apply", "-f", "-", stdin=widget("w3", size=1, shape="round"),
                              check=False)
    assert unknown.returncode != 0 and 'unknown field "spec.shape"' in unknown.stderr

    cluster.kubectl("patch", "widget", "w1", "--type=merge", "-p", '{"spec":{"color":"blue"}}')
    cluster.kubectl("patch", "widget", "w1", "--type=json",
                    "-p", '[{"op":"replace","path":"/spec/size","value":5}]')
    cluster.kubectl("patch", "widget", "w1", "--subresource=status", "--type=merge",
                    "-p", '{"status":{"phase":"Ready"}}')
    row = cluster.kubectl("get", "widget", "w1", "--no-headers").stdout.split()
    assert row[:4] == ["w1", "5", "blue", "Ready"]

    out = cluster.kubectl("apply", "--server-side", "-f", "-", stdin=widget("ssa", size=2))
    assert out.stdout.strip() == f"widget.{GROUP}/ssa serverside-applied"
    conflict = cluster.kubectl("apply", "--server-side", "--field-manager=other", "-f", "-",
                               stdin=widget("ssa", size=3), check=False)
    assert conflict.returncode != 0 and "conflict" in conflict.stderr.lower()


def test_python_client_and_deletion(cluster: Cluster) -> None:
    # Server-side, as large definitions are applied (their last-applied
    # annotation would pass the annotations' size limit).
    out = cluster.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(CRD))
    assert out.stdout.strip() == f"customresourcedefinition.apiextensions.k8s.io/widgets.{GROUP}" \
                                 " serverside-applied"
    cluster.kubectl("wait", "--for=condition=Established", f"crd/widgets.{GROUP}",
                    "--timeout=30s")
    api = kubernetes.config.new_client_from_config(str(cluster.kubeconfig))
    objects = kubernetes.client.CustomObjectsApi(api)
    seen: list[tuple[str, str]] = []
    started = threading.Event()

    def watch() -> None:
        w = kubernetes.watch.Watch()
        started.set()
        for ev in w.stream(objects.list_namespaced_custom_object, GROUP, "v1", "default",
                           "widgets", timeout_seconds=60):
            seen.append((ev["type"], ev["object"]["metadata"]["name"]))
            if ev["type"] == "DELETED" and ev["object"]["metadata"]["name"] == "py":
                w.stop()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    started.wait()
    made = objects.create_namespaced_custom_object(
        GROUP, "v1", "default", "widgets",
        {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "py"},
         "spec": {"size": 2}})
    assert made["spec"]["color"] == "red"
    patched = objects.patch_namespaced_custom_object(GROUP, "v1", "default", "widgets", "py",
                                                     {"spec": {"size": 6}})
    assert patched["spec"]["size"] == 6 and patched["metadata"]["generation"] == 2
    status = objects.patch_namespaced_custom_object_status(
        GROUP, "v1", "default", "widgets", "py", {"status": {"phase": "Up"}})
    assert status["status"] == {"phase": "Up"}
    listing = objects.list_namespaced_custom_object(GROUP, "v1", "default", "widgets")
    assert "py" in [i["metadata"]["name"] for i in listing["items"]]
    objects.delete_namespaced_custom_object(GROUP, "v1", "default", "widgets", "py")
    thread.join(timeout=60)
    assert ("ADDED", "py") in seen and ("MODIFIED", "py") in seen
    assert seen[-1] == ("DELETED", "py")

    objects.create_namespaced_custom_object(
        GROUP, "v1", "default", "widgets",
        {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "left"},
         "spec": {"size": 1}})
    cluster.kubectl("delete", "crd", f"widgets.{GROUP}")
    gone = cluster.kubectl("get", "widgets", check=False)
    assert gone.returncode != 0
    # Which of the two kubectl says depends on whether its discovery cache
    # still had the kind: either way, nothing serves it.
    assert "Error from server (NotFound)" in gone.stderr \
        or 'the server doesn\'t have a resource type "widgets"' in gone.stderr
    crds = json.loads(cluster.kubectl("get", "crd", "-o", "json").stdout)
    assert crds["items"] == []
    wait_for("the custom group to leave discovery",
             lambda: GROUP not in cluster.kubectl("api-resources").stdout)
