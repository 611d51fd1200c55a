"""The mesh's words in ``netplane trace``: which connections the node's
capture takes, and how a matched rule and its weights read."""

from __future__ import annotations

from netplane.cli.tracemesh import _rule_text, captured

VIEW = {"captured": {"sources": ["10.244.2.3"], "http": ["10.96.0.50:80"],
                     "streams": ["10.96.0.53:9000"]}}


def test_only_enrolled_sources_to_captured_ports_go_to_the_proxy() -> None:
    assert captured(VIEW, "10.244.2.3", "10.96.0.50", 80) == "http"
    assert captured(VIEW, "10.244.2.3", "10.96.0.53", 9000) == "streams"
    assert captured(VIEW, "10.244.2.3", "10.96.0.50", 443) is None
    assert captured(VIEW, "10.244.2.9", "10.96.0.50", 80) is None
    assert captured(None, "10.244.2.3", "10.96.0.50", 80) is None


def test_a_rule_reads_as_its_matches_and_its_weights() -> None:
    route = {"spec": {"rules": [
        {"matches": [{"path": {"type": "Exact", "value": "/a"},
                      "headers": [{"name": "x-canary", "value": "1"}]},
                     {"method": "POST"}],
         "backendRefs": [{"name": "v1", "port": 80, "weight": 80},
                         {"name": "v2", "port": 80, "weight": 20}]},
        {"backendRefs": [{"name": "v1", "port": 80}]}]}}
    assert _rule_text(route, 0) == [
        "      rule 0 matches path Exact /a and header x-canary=1 or method POST",
        "      backendRefs: v1:80 weight 80 (80%), v2:80 weight 20 (20%)"]
    assert _rule_text(route, 1) == [
        "      rule 1 matches path PathPrefix /",
        "      backendRefs: v1:80 weight 1 (100%)"]
    assert _rule_text(route, 5) == [] and _rule_text(None, 0) == []
