"""Reading manifests (multi-document YAML, JSON, List kinds) and writing objects."""

from __future__ import annotations

import json

import pytest
import yaml

from netplane.api import codec

MANIFEST = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
  - port: 80
---
# a comment-only document is skipped
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
"""


def test_multi_document_yaml() -> None:
    docs = codec.load_documents(MANIFEST, "web.yaml")
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("Service", "web"), ("Deployment", "web")]
    assert docs[0]["spec"]["ports"] == [{"port": 80}]


def test_json_is_yaml_too() -> None:
    text = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})
    assert codec.load_documents(text)[0]["metadata"]["name"] == "p"


def test_list_kinds_are_flattened() -> None:
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"}}]})
    assert [d["metadata"]["name"] for d in codec.load_documents(text)] == ["a", "b"]


def test_empty_input_is_no_documents() -> None:
    assert codec.load_documents("") == []
    assert codec.load_documents("---\n---\n") == []


def test_syntax_error_names_source_line_and_column() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [a\n"
    with pytest.raises(codec.ManifestError, match=r"^pod\.yaml:\d+:\d+: invalid YAML"):
        codec.load_documents(text, "pod.yaml")


@pytest.mark.parametrize(("text", "message"), [
    ("- a\n- b\n", "document 1 is not a mapping"),
    ("kind: Pod\nmetadata: {name: a}\n", "document 1: apiVersion is not set"),
    ("apiVersion: v1\nkind: Pod\n---\napiVersion: v1\n", "document 2: kind is not set"),
])
def test_incomplete_documents_are_errors(text: str, message: str) -> None:
    with pytest.raises(codec.ManifestError, match=f"^m.yaml: {message}"):
        codec.load_documents(text, "m.yaml")


def test_writers_round_trip() -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}},
           "spec": {"containers": [{"name": "c", "image": "i", "args": ["--x", "80"]}]}}
    assert json.loads(codec.to_json(obj)) == obj
    assert yaml.safe_load(codec.to_yaml(obj)) == obj
    # Key order is the object's own, as kubectl prints it.
    assert codec.to_yaml(obj).splitlines()[0] == "apiVersion: v1"
    assert codec.load_documents(codec.to_yaml(obj)) == [obj]
