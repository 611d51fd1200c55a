"""explain(): the answer to a name with the object behind each record, or why
there is none. Uses the index of the answer table tests."""

from __future__ import annotations

import pytest

from netplane.dns.explain import explain, qtype_number
from netplane.dns.index import RecordIndex
from netplane.dns.sources import SourceRef
from netplane.dns.wire import Rcode
from tests.unit.test_dns_answer import build_index


@pytest.fixture(scope="module")
def index() -> RecordIndex:
    return build_index()


def test_records_name_their_source(index: RecordIndex) -> None:
    result = explain(index, "web.default.svc.cluster.local")
    assert result.rcode is Rcode.NOERROR
    assert [str(r) for r in result.answer] == [
        "web.default.svc.cluster.local. 5 IN A 10.96.0.20"]
    assert result.answer[0].source == SourceRef("Service", "default", "web", 1)
    assert "from Service default/web" in "\n".join(result.lines())


def test_headless_records_come_from_endpoint_slices_and_pods(index: RecordIndex) -> None:
    result = explain(index, "_http._tcp.peers.default.svc.cluster.local", "SRV")
    assert {r.source.kind for r in result.records if r.source} == {"EndpointSlice"}
    solo = explain(index, "solo.peers.default.svc.cluster.local", "a")
    assert [str(r.source) for r in solo.answer] == ["Pod default/standalone"]
    ptr = explain(index, "3.3.244.10.in-addr.arpa", "PTR")
    assert [str(r.source) for r in ptr.answer] == ["Endpoints legacy/old"]


@pytest.mark.parametrize(("name", "qtype", "rcode", "reason"), [
    ("x.default.svc.cluster.local", "A", Rcode.NXDOMAIN, "no service 'x' in namespace 'default'"),
    ("web.nowhere.svc.cluster.local", "A", Rcode.NXDOMAIN,
     "namespace 'nowhere' (the namespace has no services)"),
    ("lonely.default.svc.cluster.local", "A", Rcode.NXDOMAIN,
     "headless service has no ready endpoints (1 not ready"),
    ("web.default.svc.cluster.local", "AAAA", Rcode.NOERROR, "cluster IPs give only A records"),
    ("_x._tcp.web.default.svc.cluster.local", "SRV", Rcode.NXDOMAIN,
     "no named port 'x' with protocol 'tcp' on default/web"),
    ("peer-9.peers.default.svc.cluster.local", "A", Rcode.NXDOMAIN,
     "no ready endpoint with hostname 'peer-9'"),
    ("nope.cluster.local", "A", Rcode.NXDOMAIN, "not a Kubernetes name"),
    ("99.0.96.10.in-addr.arpa", "PTR", Rcode.NXDOMAIN, "no service or named endpoint has"),
    ("example.com", "A", Rcode.REFUSED,
     "outside the cluster zone: refused (no upstream configured)"),
])
def test_negative_answers_say_why(index: RecordIndex, name: str, qtype: str, rcode: Rcode,
                                  reason: str) -> None:
    result = explain(index, name, qtype)
    assert result.rcode is rcode
    assert reason in result.reason


def test_outside_names_with_an_upstream_are_left_to_it(index: RecordIndex) -> None:
    result = explain(index, "example.com.", "AAAA", upstreams=["192.0.2.53:53"])
    assert result.rcode is None
    assert result.reason.endswith("would be forwarded to 192.0.2.53:53")
    assert result.lines()[0] == "example.com. AAAA: (decided upstream)"


def test_query_types_by_name_or_number() -> None:
    assert [qtype_number(t) for t in ("a", "SRV", "TYPE65", 28)] == [1, 33, 65, 28]
    with pytest.raises(ValueError, match="unknown query type"):
        qtype_number("BOGUS")
