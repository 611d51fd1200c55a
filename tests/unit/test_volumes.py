"""Pod volumes' content as the kubelet writes it, and a container's
environment from its sources: pure logic over files in a temporary folder."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import time
from pathlib import Path

import pytest

from netplane.api.meta import Obj
from netplane.node import envvars
from netplane.node.volumes import (
    DATA_LINK,
    NodeFacts,
    PodVolumes,
    Sources,
    VolumeError,
    atomic_write,
    field_value,
    host_path,
    quantity,
    resource_value,
)

POD: Obj = {"metadata": {"name": "web-0", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web", "tier": "front"},
                         "annotations": {"note": 'say "hi"'}},
            "spec": {"nodeName": "node-1", "containers": [
                {"name": "app", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"},
                                              "requests": {"cpu": "250m"}}}]}}
FACTS = NodeFacts(pod_ip="10.244.1.2", host_ip="192.168.56.11", cpus=2, memory=2**31)


def _sources(configmaps: dict[str, Obj] | None = None,
             secrets: dict[str, Obj] | None = None) -> Sources:
    cms, scs = configmaps or {}, secrets or {}
    return Sources(configmaps=lambda ns, name: cms.get(f"{ns}/{name}"),
                   secrets=lambda ns, name: scs.get(f"{ns}/{name}"))


def test_atomic_write_links_through_data_and_swaps_in_one_rename(tmp_path: Path) -> None:
    folder = tmp_path / "cfg"
    assert atomic_write(folder, {"a.conf": (b"one", 0o644), "sub/b": (b"two", 0o600)})
    assert os.readlink(folder / "a.conf") == f"{DATA_LINK}/a.conf"
    assert os.readlink(folder / "sub") == f"{DATA_LINK}/sub"
    first = os.readlink(folder / DATA_LINK)
    assert first.startswith("..") and (folder / "a.conf").read_text() == "one"
    assert oct((folder / "sub" / "b").stat().st_mode & 0o777) == oct(0o600)
    assert not atomic_write(folder, {"a.conf": (b"one", 0o644), "sub/b": (b"two", 0o600)})
    assert atomic_write(folder, {"a.conf": (b"changed", 0o644)})
    assert os.readlink(folder / DATA_LINK) != first
    assert not (folder / first).exists()  # the old generation is gone
    assert not (folder / "sub").exists()  # so is a key no longer there
    assert (folder / "a.conf").read_text() == "changed"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("..")) == ["a.conf"]


def _volumes(tmp_path: Path, volumes: list[Obj], sources: Sources) -> PodVolumes:
    pod = {**POD, "spec": {**POD["spec"], "volumes": volumes}}
    vols = PodVolumes(pod, tmp_path / "volumes", sources, FACTS)
    asyncio.run(vols.set_up())
    return vols


def test_configmap_items_modes_and_a_missing_key(tmp_path: Path) -> None:
    cm = {"data": {"game.properties": "lives=3", "ui": "dark"},
          "binaryData": {"logo": base64.b64encode(b"\x89PNG").decode()}}
    vols = _volumes(tmp_path, [
        {"name": "all", "configMap": {"name": "game"}},
        {"name": "some", "configMap": {"name": "game", "defaultMode": 0o400,
                                       "items": [{"key": "ui", "path": "theme/ui.txt"}]}},
    ], _sources({"shop/game": cm}))
    all_ = vols.paths["all"]
    assert sorted(p.name for p in all_.iterdir() if not p.name.startswith("..")) == [
        "game.properties", "logo", "ui"]
    assert (all_ / "logo").read_bytes() == b"\x89PNG"
    some = vols.paths["some"] / "theme" / "ui.txt"
    assert some.read_text() == "dark" and some.stat().st_mode & 0o777 == 0o400
    with pytest.raises(VolumeError, match="non-existent config key: nope"):
        _volumes(tmp_path / "b", [{"name": "x", "configMap": {
            "name": "game", "items": [{"key": "nope", "path": "p"}]}}], _sources({"shop/game": cm}))
    with pytest.raises(VolumeError, match='configmap "absent" not found'):
        _volumes(tmp_path / "c", [{"name": "x", "configMap": {"name": "absent"}}], _sources())
    optional = _volumes(tmp_path / "d", [{"name": "x", "configMap": {
        "name": "absent", "optional": True}}], _sources())
    # An optional ConfigMap that is absent: an empty volume.
    assert not [p for p in optional.paths["x"].iterdir() if not p.name.startswith("..")]
    assert (optional.paths["x"] / DATA_LINK).is_dir()


def test_a_changed_configmap_is_rewritten_on_refresh(tmp_path: Path) -> None:
    cms = {"shop/game": {"data": {"level": "1"}}}
    vols = _volumes(tmp_path, [{"name": "cfg", "configMap": {"name": "game"}}], _sources(cms))
    assert asyncio.run(vols.refresh()) == []
    cms["shop/game"] = {"data": {"level": "2"}}
    assert asyncio.run(vols.refresh()) == ["cfg"]
    assert (vols.paths["cfg"] / "level").read_text() == "2"


def test_secret_and_projected_sources(tmp_path: Path) -> None:
    secret = {"data": {"password": base64.b64encode(b"s3cret").decode()}}
    cms = {"shop/game": {"data": {"level": "1"}}}
    tokens: list[Obj] = []

    async def token(src: Obj) -> str:
        tokens.append(src)
        return "eyJ.token"

    sources = Sources(configmaps=lambda ns, n: cms.get(f"{ns}/{n}"),
                      secrets=lambda ns, n: {"shop/db": secret}.get(f"{ns}/{n}"), token=token)
    vols = _volumes(tmp_path, [
        {"name": "db", "secret": {"secretName": "db"}},
        {"name": "all-in-one", "projected": {"sources": [
            {"configMap": {"name": "game"}},
            {"secret": {"name": "db", "items": [{"key": "password", "path": "db/pw"}]}},
            {"downwardAPI": {"items": [{"path": "labels",
                                        "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"serviceAccountToken": {"path": "token", "audience": "vault",
                                     "expirationSeconds": 600}}]}},
    ], sources)
    assert (vols.paths["db"] / "password").read_bytes() == b"s3cret"
    one = vols.paths["all-in-one"]
    assert (one / "level").read_text() == "1" and (one / "db" / "pw").read_text() == "s3cret"
    assert (one / "labels").read_text() == 'app="web"\ntier="front"'
    assert (one / "token").read_text() == "eyJ.token" and tokens[0]["audience"] == "vault"


async def test_projected_tokens_are_due_again_at_80_percent_of_their_life(
        tmp_path: Path) -> None:
    issued = iter(["short-1", "long-1", "short-2", "long-2"])

    async def token(src: Obj) -> str:
        return next(issued)

    pod = {**POD, "spec": {**POD["spec"], "volumes": [{"name": "t", "projected": {"sources": [
        {"serviceAccountToken": {"path": "short", "expirationSeconds": 600}},
        {"serviceAccountToken": {"path": "long", "expirationSeconds": 7200}}]}}]}}
    vols = PodVolumes(pod, tmp_path / "volumes", dataclasses.replace(_sources(), token=token),
                      FACTS)
    before = time.time()
    await vols.set_up()
    assert before + 480 <= vols.tokens_due <= time.time() + 480  # the shorter one counts
    assert await vols.refresh() == ["t"]
    assert (vols.paths["t"] / "short").read_text() == "short-2"
    assert (vols.paths["t"] / "long").read_text() == "long-2"


def test_mounts_subpath_and_read_only_projections(tmp_path: Path) -> None:
    vols = _volumes(tmp_path, [{"name": "scratch", "emptyDir": {}},
                               {"name": "cfg", "configMap": {"name": "game"}}],
                    _sources({"shop/game": {"data": {"k": "v"}}}))
    container = {"name": "app", "volumeMounts": [
        {"name": "scratch", "mountPath": "/data"},
        {"name": "scratch", "mountPath": "/cache", "subPath": "cache"},
        {"name": "cfg", "mountPath": "/etc/cfg"}]}
    mounts = vols.mounts(container)
    assert [(str(src.relative_to(tmp_path)), dst, ro) for src, dst, ro in mounts] == [
        ("volumes/scratch", "/data", False), ("volumes/scratch/cache", "/cache", False),
        ("volumes/cfg", "/etc/cfg", True)]
    assert (tmp_path / "volumes" / "scratch" / "cache").is_dir()
    with pytest.raises(VolumeError, match="not set up"):
        vols.mounts({"name": "x", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]})


def test_unsupported_volume_kinds_say_so(tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match="nfs volumes are not supported"):
        _volumes(tmp_path, [{"name": "n", "nfs": {"server": "x", "path": "/"}}], _sources())


@pytest.mark.parametrize(("path", "value"), [
    ("metadata.name", "web-0"), ("metadata.namespace", "shop"), ("metadata.uid", "u-1"),
    ("metadata.labels['tier']", "front"), ("metadata.annotations['note']", 'say "hi"'),
    ("metadata.annotations", 'note="say \\"hi\\""'), ("spec.nodeName", "node-1"),
    ("status.podIP", "10.244.1.2"), ("status.hostIP", "192.168.56.11"),
])
def test_downward_api_fields(path: str, value: str) -> None:
    assert field_value(POD, path, pod_ip="10.244.1.2", host_ip="192.168.56.11") == value


@pytest.mark.parametrize(("ref", "value"), [
    ({"resource": "limits.cpu"}, "1"),  # 0.5 core rounds up to 1
    ({"resource": "limits.cpu", "divisor": "1m"}, "500"),
    ({"resource": "requests.cpu", "divisor": "1m"}, "250"),
    ({"resource": "limits.memory", "divisor": "1Mi"}, "64"),
    ({"resource": "requests.memory"}, str(2**31)),  # unset: the node's capacity
])
def test_resource_fields(ref: Obj, value: str) -> None:
    assert resource_value(POD, ref, node_cpus=2, node_memory=2**31,
                          container_name="app") == value


def test_quantities() -> None:
    assert quantity("500m") == 0.5 and quantity("64Mi") == 64 * 2**20
    assert quantity("1G") == 10**9 and quantity("2") == 2


def test_host_path_types(tmp_path: Path) -> None:
    made = host_path({"path": str(tmp_path / "new"), "type": "DirectoryOrCreate"})
    assert made.is_dir()
    assert host_path({"path": str(tmp_path / "f"), "type": "FileOrCreate"}).is_file()
    with pytest.raises(VolumeError, match="is not a Directory"):
        host_path({"path": str(tmp_path / "f"), "type": "Directory"})
    with pytest.raises(VolumeError, match="not absolute"):
        host_path({"path": "relative"})


def test_env_from_value_from_and_literal_dollars() -> None:
    sources = _sources({"shop/game": {"data": {"LEVEL": "3", "COST": "$(HOME)", "bad=key": "x"}}},
                       {"shop/db": {"data": {"pw": base64.b64encode(b"s3cret").decode()}}})
    container = {"name": "app", "envFrom": [{"configMapRef": {"name": "game"}, "prefix": "G_"}],
                 "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db",
                                                                       "key": "pw"}}},
                         {"name": "ME", "valueFrom": {"fieldRef": {
                             "fieldPath": "metadata.name"}}},
                         {"name": "CPU", "valueFrom": {"resourceFieldRef": {
                             "resource": "limits.cpu", "divisor": "1m"}}},
                         {"name": "MAYBE", "valueFrom": {"configMapKeyRef": {
                             "name": "absent", "key": "x", "optional": True}}},
                         {"name": "GREETING", "value": "hi $(ME)"}]}
    out = envvars.resolve(POD, container, sources, FACTS)
    assert "envFrom" not in out
    assert out["env"] == [{"name": "G_COST", "value": "$$(HOME)"},
                          {"name": "G_LEVEL", "value": "3"},
                          {"name": "PW", "value": "s3cret"}, {"name": "ME", "value": "web-0"},
                          {"name": "CPU", "value": "500"},
                          {"name": "GREETING", "value": "hi $(ME)"}]
    with pytest.raises(envvars.EnvError, match='configmap "absent" not found'):
        envvars.resolve(POD, {"name": "app", "env": [{"name": "X", "valueFrom": {
            "configMapKeyRef": {"name": "absent", "key": "x"}}}]}, sources, FACTS)
    with pytest.raises(envvars.EnvError, match="couldn't find key nope in Secret shop/db"):
        envvars.resolve(POD, {"name": "app", "env": [{"name": "X", "valueFrom": {
            "secretKeyRef": {"name": "db", "key": "nope"}}}]}, sources, FACTS)


def test_env_reads_the_pods_labels_and_annotations_by_field_path() -> None:
    """How an Indexed Job's pod learns its index."""
    pod = {"metadata": {"name": "pi-0-abcde", "namespace": "default", "uid": "u1",
                        "labels": {"batch.kubernetes.io/job-completion-index": "3"},
                        "annotations": {"note": "x"}},
           "spec": {"nodeName": "node-1", "containers": []}}
    ref = "metadata.labels['batch.kubernetes.io/job-completion-index']"
    container = {"name": "c", "image": "busybox", "env": [
        {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": ref}}},
        {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}
    env = {e["name"]: e["value"] for e in envvars.resolve(pod, container, _sources(),
                                                           FACTS)["env"]}
    assert (env["JOB_COMPLETION_INDEX"], env["NOTE"], env["NODE"]) == ("3", "x", "node-1")
