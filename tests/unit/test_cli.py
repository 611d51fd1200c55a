"""The ``netplane`` command line: kubectl's conventions for flags, and the
verbs that print objects, against a real in-process server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from netplane.api import resources
from netplane.cli import main as cli_main
from netplane.cli import objects
from netplane.cli.objects import CliError
from netplane.cluster.client import Client, Connection
from netplane.cluster.events import Reason, Recorder, Source
from tests.unit.test_client import Server, pod


def test_flags_go_anywhere_before_the_command() -> None:
    own, command = cli_main.split_command(["exec", "web", "-n", "team", "--", "ls", "-n"])
    args = cli_main.parser().parse_args(own)
    assert (args.pod, args.namespace, args.command) == ("web", "team", [])
    assert command == ["ls", "-n"]


def test_a_command_after_dashes_only_where_a_verb_takes_one(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main.main(["get", "pods", "--", "ls"])
    assert "get takes no command after --" in capsys.readouterr().err


@pytest.fixture
async def cli(tmp_path: Path) -> AsyncIterator[Client]:
    srv = Server(tmp_path)
    await srv.start()
    try:
        async with Client(Connection(socket=str(srv.cfg.socket))) as c:
            yield c
    finally:
        await srv.stop()


def deployment(name: str) -> dict[str, object]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "x"}]}}}}


async def test_scale_takes_kind_slash_name(cli: Client) -> None:
    await cli.create(resources.DEPLOYMENT, deployment("web"))
    assert await objects.scale(cli, "deploy/web", [], replicas=3, namespace=None) == [
        "deployment.apps/web scaled"]
    assert (await cli.get(resources.DEPLOYMENT, "web", "default"))["spec"]["replicas"] == 3
    with pytest.raises(CliError, match="give a name"):
        await objects.scale(cli, "deploy", [], replicas=3, namespace=None)


async def test_describe_ends_with_the_objects_events(cli: Client) -> None:
    web = await cli.create(resources.POD, pod("web"))
    other = await cli.create(resources.POD, pod("other"))
    rec = Recorder(cli, Source("default-scheduler"))
    rec.normal(web, Reason.SCHEDULED, "Successfully assigned default/web to node-1")
    rec.normal(other, Reason.SCHEDULED, "Successfully assigned default/other to node-2")
    await rec.flush()
    [text] = await objects.describe(cli, "pod", ["web"], namespace=None)
    lines = text.splitlines()
    assert lines[0].split() == ["Name:", "web"]
    assert "Labels:             app=web" in lines
    events = lines[lines.index("Events:") + 1:]
    assert events[0].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert events[2].split()[:2] == ["Normal", "Scheduled"]
    assert events[2].endswith("Successfully assigned default/web to node-1")
    assert len(events) == 3  # the other pod's event is not shown


def test_describe_names_the_fields_netplane_does_not_act_on() -> None:
    from netplane.cli.describe import ignored_fields

    pod = {"kind": "Pod", "spec": {
        "containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": "1"}},
                        "securityContext": {}}],
        "restartPolicy": "Always", "volumes": [{"name": "v", "emptyDir": {}}],
        "tolerations": [], "priorityClassName": "high"}}
    assert ignored_fields(pod) == ["spec.priorityClassName", "spec.containers[0].resources"]
    deploy = {"kind": "Deployment", "spec": {"replicas": 1, "paused": True,
                                             "template": {"spec": pod["spec"]}}}
    assert ignored_fields(deploy) == ["spec.paused", "spec.template.spec.priorityClassName",
                                      "spec.template.spec.containers[0].resources"]
    sts = {"kind": "StatefulSet", "spec": {
        "replicas": 1, "serviceName": "nginx", "podManagementPolicy": "Parallel",
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain"},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}}],
        "template": {"spec": {"containers": [{"name": "c", "image": "x"}],
                              "tolerations": [{"operator": "Exists"}]}}}}
    assert ignored_fields(sts) == []
    ds = {"kind": "DaemonSet", "spec": {"updateStrategy": {"type": "OnDelete"},
                                        "template": {"spec": pod["spec"]}}}
    assert ignored_fields(ds) == ["spec.template.spec.priorityClassName",
                                  "spec.template.spec.containers[0].resources"]


async def test_delete_cascade_sends_kubectls_policies(cli: Client) -> None:
    """No collector runs here: what the server keeps shows the policy sent."""
    for name in ("kept", "held", "gone"):
        await cli.create(resources.DEPLOYMENT, deployment(name))
    assert await objects.delete(cli, "deploy", ["kept"], namespace=None, grace_period=None,
                                cascade="orphan") == ['deployment.apps "kept" deleted']
    await objects.delete(cli, "deploy", ["held"], namespace=None, grace_period=None,
                         cascade="foreground")
    await objects.delete(cli, "deploy", ["gone"], namespace=None, grace_period=None)
    kept = await cli.get(resources.DEPLOYMENT, "kept", "default")
    held = await cli.get(resources.DEPLOYMENT, "held", "default")
    assert (kept["metadata"]["finalizers"], held["metadata"]["finalizers"]) == (
        ["orphan"], ["foregroundDeletion"])
    assert [d["metadata"]["name"] for d in
            (await cli.list(resources.DEPLOYMENT, "default"))["items"]] == ["held", "kept"]
    args = cli_main.parser().parse_args(["delete", "deploy", "x", "--cascade=orphan"])
    assert args.cascade == "orphan"


def _netpol(name: str, namespace: str, labels: dict[str, str]) -> dict[str, object]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"podSelector": {}}}


async def test_delete_all_or_by_selector_in_one_namespace(cli: Client) -> None:
    await cli.create(resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": "np-x"}})
    for name, ns in (("a", "np-x"), ("b", "np-x"), ("c", "np-x"), ("a", "default")):
        await cli.create(resources.NETWORKPOLICY, _netpol(name, ns, {"keep": str(name == "c")}),
                         ns)
    assert await objects.delete(cli, "netpol", [], namespace="np-x", grace_period=None,
                                selector="keep=False") == [
        'networkpolicy.networking.k8s.io "a" deleted',
        'networkpolicy.networking.k8s.io "b" deleted']
    assert await objects.delete(cli, "networkpolicies", [], namespace="np-x", grace_period=None,
                                everything=True) == ['networkpolicy.networking.k8s.io "c" deleted']
    assert await objects.delete(cli, "networkpolicy", [], namespace="np-x", grace_period=None,
                                everything=True) == ["No resources found"]
    assert [p["metadata"]["name"] for p in
            (await cli.list(resources.NETWORKPOLICY, "default"))["items"]] == ["a"]
    with pytest.raises(CliError, match="name cannot be provided"):
        await objects.delete(cli, "netpol", ["a"], namespace=None, grace_period=None,
                             everything=True)
    deleted = await objects.delete(cli, "netpol/a", [], namespace=None, grace_period=None)
    assert deleted == ['networkpolicy.networking.k8s.io "a" deleted']
    args = cli_main.parser().parse_args(["delete", "networkpolicy", "--all", "-n", "np-x"])
    assert (args.all, args.namespace, args.names) == (True, "np-x", [])
