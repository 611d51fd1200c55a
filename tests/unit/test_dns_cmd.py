"""``netplane dns``: the answer cluster DNS gives and where each record came
from, built from what a real in-process API server lists. The command runs
as a user runs it (a ``netplane`` process on the server's socket); the
``--from POD`` expansion is tested on the function, since asking for real
from inside a pod needs a lab (tests/e2e/test_dns.py does that).

Address plan: ClusterIPs come from the server's allocator (10.96.0.0/12);
headless default/db has endpoints 10.244.1.5 (db-0) and 10.244.2.6 (db-1).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from netplane.api import resources
from netplane.cli import dnscmd
from netplane.cli.objects import CliError
from netplane.cluster.client import Client, Connection
from tests.unit.test_client import Server

NETPLANE = str(Path(sys.executable).with_name("netplane"))


@dataclass
class Api:
    client: Client
    socket: str
    web_ip: str

    async def netplane(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            NETPLANE, "--socket", self.socket, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        async with asyncio.timeout(60):  # a hang guard
            out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    server = Server(tmp_path)
    await server.start()
    try:
        async with Client(Connection(socket=str(server.cfg.socket))) as c:
            await c.create(resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": "shop"}})
            web = await c.create(resources.SERVICE, {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"},
                         "ports": [{"name": "http", "port": 80}]}}, "default")
            await c.create(resources.SERVICE, {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
                "spec": {"clusterIP": "None", "selector": {"app": "db"},
                         "ports": [{"name": "pg", "port": 5432}]}}, "default")
            await c.create(resources.ENDPOINTS, {
                "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "db"},
                "subsets": [{"addresses": [
                    {"ip": "10.244.1.5", "hostname": "db-0"},
                    {"ip": "10.244.2.6", "hostname": "db-1"}],
                    "ports": [{"name": "pg", "port": 5432}]}]}, "default")
            await c.create(resources.POD, {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, "shop")
            yield Api(c, str(server.cfg.socket), web["spec"]["clusterIP"])
    finally:
        await server.stop()


async def test_a_service_name_answers_its_cluster_ip_and_names_the_service(api: Api) -> None:
    code, out, err = await api.netplane("dns", "web.default.svc.cluster.local")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "web.default.svc.cluster.local. A: NOERROR"
    assert f"  answer: web.default.svc.cluster.local. 5 IN A {api.web_ip}  " \
           "; from Service default/web" in lines


async def test_a_short_name_is_answered_by_the_first_search_domain_that_has_it(
        api: Api) -> None:
    code, out, _ = await api.netplane("dns", "web.default", "-n", "shop")
    assert code == 0
    lines = out.splitlines()
    # web.default.shop.svc.cluster.local does not exist; the next domain has it.
    assert lines[0] == "web.default.svc.cluster.local. A: NOERROR"
    assert lines[-1] == (f"  answer: web.default.svc.cluster.local. 5 IN A {api.web_ip}  "
                         "; from Service default/web")


async def test_a_short_name_nobody_has_lists_every_name_tried_in_order(api: Api) -> None:
    code, out, _ = await api.netplane("dns", "web", "-n", "shop")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "; web is not fully qualified: tried the search path in order"
    tried = [line for line in lines if not line.startswith((" ", ";"))]
    assert tried == ["web.shop.svc.cluster.local. A: NXDOMAIN",
                     "web.svc.cluster.local. A: NXDOMAIN",
                     "web.cluster.local. A: NXDOMAIN",
                     "web. A: REFUSED"]


async def test_nxdomain_says_why(api: Api) -> None:
    code, out, _ = await api.netplane("dns", "nope.default.svc.cluster.local")
    assert code == 0
    assert out.splitlines()[:2] == ["nope.default.svc.cluster.local. A: NXDOMAIN",
                                    "  why: no service 'nope' in namespace 'default'"]


async def test_headless_service_and_srv_records_come_from_endpoints(api: Api) -> None:
    _, out, _ = await api.netplane("dns", "db.default.svc.cluster.local")
    answers = sorted(line.split(" IN A ")[1].split()[0] for line in out.splitlines()
                     if line.startswith("  answer:"))
    assert answers == ["10.244.1.5", "10.244.2.6"]
    _, srv, _ = await api.netplane("dns", "_pg._tcp.db.default.svc.cluster.local", "SRV")
    targets = sorted(line.split(" IN SRV ")[1].split("  ;")[0] for line in srv.splitlines()
                     if line.startswith("  answer:"))
    assert targets == ["0 50 5432 db-0.db.default.svc.cluster.local.",
                       "0 50 5432 db-1.db.default.svc.cluster.local."]


async def test_bad_query_type_and_unknown_pod_are_errors_for_the_user(api: Api) -> None:
    code, out, err = await api.netplane("dns", "web", "BOGUS")
    assert code == 1 and out == ""
    assert err.strip() == ("error: unknown query type 'BOGUS': use a name such as A, AAAA, "
                           "SRV, PTR, TXT, or TYPEnn")
    code, _, err = await api.netplane("dns", "web", "--from", "ghost")
    assert code == 1 and err.strip() == 'error: pods "ghost" not found in namespace default'


async def test_from_a_pod_the_name_is_expanded_with_that_pods_namespace(api: Api) -> None:
    # The pod lives in shop: "web" is looked for there first (and is not there).
    lines = await dnscmd.dns(api.client, "web", "A", namespace="shop", from_pod="client")
    assert lines[1] == "web.shop.svc.cluster.local. A: NXDOMAIN"
    found = await dnscmd.dns(api.client, "web.default", "A", namespace="shop",
                             from_pod="client")
    assert found[0] == "web.default.svc.cluster.local. A: NOERROR"
    with pytest.raises(CliError, match='pods "client" not found in namespace default'):
        await dnscmd.dns(api.client, "web", "A", namespace="default", from_pod="client")


def test_candidates_follow_ndots_5() -> None:
    assert dnscmd.candidates("web", "shop") == [
        "web.shop.svc.cluster.local.", "web.svc.cluster.local.", "web.cluster.local.", "web."]
    assert dnscmd.candidates("a.b.c.d.e.f", "shop")[0] == "a.b.c.d.e.f."  # 5 dots: as is
    assert dnscmd.candidates("web.", "shop") == ["web."]
