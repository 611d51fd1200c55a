"""Printer columns of custom kinds: the JSONPaths CRDs declare, read as
apiextensions-apiserver's table convertor reads them (the first result)."""

from __future__ import annotations

from netplane.cluster.apiserver.customresources import column_value

GATEWAY = {"spec": {"gatewayClassName": "netplane"},
           "metadata": {"labels": {"a.b/c": "d"}},
           "status": {"addresses": [{"value": "192.168.56.200"}, {"value": "192.168.56.201"}],
                      "conditions": [{"type": "Accepted", "status": "True"},
                                     {"type": "Programmed", "status": "False"}]}}


def test_fields_indexes_and_quoted_keys() -> None:
    assert column_value(GATEWAY, ".spec.gatewayClassName") == "netplane"
    assert column_value(GATEWAY, ".status.conditions[1].type") == "Programmed"
    assert column_value(GATEWAY, ".status.conditions[-1].status") == "False"
    assert column_value(GATEWAY, "{.metadata.labels['a.b/c']}") == "d"


def test_a_filter_picks_the_element_whose_field_matches() -> None:
    assert column_value(GATEWAY, '.status.conditions[?(@.type=="Programmed")].status') == "False"
    assert column_value(GATEWAY, ".status.conditions[?(@.type=='Accepted')].status") == "True"
    assert column_value(GATEWAY, '.status.conditions[?(@.type=="Gone")].status') is None


def test_a_wildcard_shows_the_first_of_its_results() -> None:
    assert column_value(GATEWAY, ".status.addresses[*].value") == "192.168.56.200"
    assert column_value({"status": {}}, ".status.addresses[*].value") is None
    assert column_value(GATEWAY, ".spec.missing.deeper") is None
