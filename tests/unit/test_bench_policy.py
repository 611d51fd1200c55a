"""The parts of ``bench/policy.py`` that need no kernel: the synthetic
cluster's shape and the parsing of wrk's report."""

from __future__ import annotations

import pytest

from bench import policyworld as pw
from bench.podnet import Load, parse_wrk
from netplane.proxy import policy

WRK = """\
Running 3s test @ http://10.244.1.201:8080/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   180.12us  401.00us  12.02ms   97.10%
  Latency Distribution
     50%   95.00us
     75%  120.00us
     90%  160.00us
     99%    2.10ms
  301234 requests in 3.00s, 40.22MB read
Requests/sec: 100411.33
Transfer/sec:     13.41MB
"""


def test_wrk_report_is_read_in_milliseconds() -> None:
    assert parse_wrk(WRK) == Load(100411.33, 0.095, 2.1)
    with pytest.raises(ValueError, match="lacks"):
        parse_wrk("Running 3s test\n")


def test_the_synthetic_cluster_has_the_shape_the_tables_say() -> None:
    world = pw.World.build(1_000)
    assert len(world.pods) == 1_000 and len({p.ip for p in world.pods}) == 1_000
    assert len(world.local()) == 200
    assert {p.namespace for p in world.local()} == {f"ns-{n}" for n in range(50)}
    assert len(world.policies) == 1_000
    assert sum(p["metadata"]["name"] == "default-deny" for p in world.policies) == 50
    assert len(pw.policies(10)) == 10  # fewer than one default-deny per namespace
    infos = [policy.pod_info(pw.pod_object(p)) for p in world.pods]
    model = policy.compute(world.policies, [i for i in infos if i], world.namespaces,
                           local=lambda p: p.node == pw.MEASURED_NODE)
    assert len(model.pods) == 200  # default-deny isolates every local pod
