"""NetworkPolicy in the API: kube-apiserver 1.32's defaults and checks as
table tests (field paths and words as kube prints them), then the kind
through a real in-process server: discovery, the Table kubectl prints, the
namespace name label selectors rely on, RBAC, a protobuf body, describe.

Address plan: only CIDRs written into policies (10.0.0.0/8 and parts of it,
192.168.0.0/16, 2001:db8::/32); nothing is routed or bound."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from netplane.api import defaults, netpol, resources, selectors, validation
from netplane.api.meta import Obj
from netplane.api.protobuf import decode
from netplane.cli.describe import network_policy, tabbed
from netplane.cluster.apiserver import bootstrap
from netplane.cluster.apiserver.registry import Registry, key_for
from netplane.cluster.apiserver.status import ApiError
from tests.unit.test_apiserver import TABLE, call, make_registry, ok
from tests.unit.test_protobuf import envelope, ld, meta, msg, num

Api = TestClient[Any, Any]
POLICIES = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies"
NAMESPACES = "/api/v1/namespaces"
NAME_LABEL = "kubernetes.io/metadata.name"


def policy(name: str = "p", **spec: Any) -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def ingress(*, ports: list[Obj] | None = None, peers: list[Obj] | None = None) -> Obj:
    rule: Obj = {}
    if ports is not None:
        rule["ports"] = ports
    if peers is not None:
        rule["from"] = peers
    return policy(podSelector={}, ingress=[rule])


def block(cidr: str, *excepts: str) -> Obj:
    return {"ipBlock": {"cidr": cidr, "except": list(excepts)} if excepts else {"cidr": cidr}}


# -- defaults (SetDefaults_NetworkPolicy, SetDefaults_NetworkPolicyPort) --

@pytest.mark.parametrize(("spec", "types"), [
    (None, ["Ingress"]),
    ({}, ["Ingress"]),
    ({"egress": [{}]}, ["Ingress", "Egress"]),
    ({"egress": []}, ["Ingress"]),
    ({"ingress": [{}], "egress": [{"to": [{"podSelector": {}}]}]}, ["Ingress", "Egress"]),
    ({"policyTypes": []}, ["Ingress"]),
    ({"policyTypes": ["Egress"], "ingress": [{}]}, ["Egress"]),
    ({"policyTypes": ["Egress"], "egress": [{}]}, ["Egress"]),
    ({"policyTypes": ["Ingress"], "egress": [{}]}, ["Ingress"]),
])
def test_policy_types_are_defaulted_only_when_empty(spec: Obj | None, types: list[str]) -> None:
    obj = policy()
    if spec is None:
        del obj["spec"]
    else:
        obj["spec"] = spec
    defaults.apply(obj)
    assert obj["spec"]["policyTypes"] == types
    assert obj["spec"]["podSelector"] == {}


def test_every_port_gets_tcp_unless_it_names_a_protocol() -> None:
    obj = policy(podSelector={"matchLabels": {"app": "web"}},
                 ingress=[{"ports": [{"port": 80}, {"port": "dns", "protocol": "UDP"}, {}]}],
                 egress=[{"ports": [{"port": 53, "protocol": "SCTP"}, {"endPort": 9}]}])
    defaults.apply(obj)
    spec = obj["spec"]
    assert [p["protocol"] for p in spec["ingress"][0]["ports"]] == ["TCP", "UDP", "TCP"]
    assert [p["protocol"] for p in spec["egress"][0]["ports"]] == ["SCTP", "TCP"]
    assert spec["podSelector"] == {"matchLabels": {"app": "web"}}


# -- validation (ValidateNetworkPolicy) --

VALID = [
    policy(podSelector={}),
    policy(podSelector={"matchLabels": {"app": "web"}}, policyTypes=["Ingress", "Egress"],
           ingress=[{"ports": [{"port": 80, "protocol": "TCP"}, {"port": "http"},
                               {"port": 8000, "endPort": 9000}, {"protocol": "UDP"},
                               {"port": 65535, "endPort": 65535, "protocol": "SCTP"}],
                     "from": [{"podSelector": {}}, {"namespaceSelector": {}},
                              {"namespaceSelector": {"matchLabels": {NAME_LABEL: "x"}},
                               "podSelector": {"matchExpressions": [
                                   {"key": "role", "operator": "In", "values": ["a", "b"]},
                                   {"key": "tier", "operator": "DoesNotExist"}]}},
                              block("10.0.0.0/8", "10.1.0.0/16", "10.2.3.0/24")]}],
           egress=[{"to": [block("2001:db8::/32", "2001:db8:1::/48")]}, {}]),
    # ParseCIDRSloppy: host bits set and leading zeros are read, not refused.
    ingress(peers=[block("192.168.1.1/24")]),
    ingress(peers=[block("010.0.0.0/08", "10.0.0.0/016")]),
    # The list is atomic: kube bounds its length and values, not repeats.
    policy(podSelector={}, policyTypes=["Ingress", "Ingress"]),
    ingress(ports=[{"port": "a-b-c-123456789"}]),
]


@pytest.mark.parametrize("obj", VALID)
def test_valid_policies_pass(obj: Obj) -> None:
    obj = copy.deepcopy(obj)
    defaults.apply(obj)
    assert validation.validate(obj, resources.NETWORKPOLICY) == []


PORT = "spec.ingress[0].ports[0]"
PEER = "spec.ingress[0].from[0]"
BLOCK = f"{PEER}.ipBlock"
QUALIFIED = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must "
             "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
             "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?"
             "[A-Za-z0-9]')")
VALUE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', "
         "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  "
         "or 'my_value',  or '12345', regex used for validation is "
         "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
ONLY_CHARS = "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
A_LETTER = "must contain at least one letter (a-z)"
RANGE = "must be between 1 and 65535, inclusive"

INVALID = [
    # ports
    (ingress(ports=[{"protocol": "ICMP"}]),
     [f'{PORT}.protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"']),
    (ingress(ports=[{"port": 0}]), [f"{PORT}.port: Invalid value: 0: {RANGE}"]),
    (ingress(ports=[{"port": 65536}]), [f"{PORT}.port: Invalid value: 65536: {RANGE}"]),
    (ingress(ports=[{"port": "HTTP"}]), [f'{PORT}.port: Invalid value: "HTTP": {ONLY_CHARS}',
                                         f'{PORT}.port: Invalid value: "HTTP": {A_LETTER}']),
    (ingress(ports=[{"port": "80"}]), [f'{PORT}.port: Invalid value: "80": {A_LETTER}']),
    (ingress(ports=[{"port": "a-very-long-name"}]),
     [f'{PORT}.port: Invalid value: "a-very-long-name": must be no more than 15 characters']),
    (ingress(ports=[{"port": "a--b"}]),
     [f'{PORT}.port: Invalid value: "a--b": must not contain consecutive hyphens']),
    (ingress(ports=[{"port": "-web"}]),
     [f'{PORT}.port: Invalid value: "-web": must not begin or end with a hyphen']),
    (ingress(ports=[{"port": "http", "endPort": 90}]),
     [f"{PORT}.endPort: Invalid value: 90: may not be specified when `port` is non-numeric"]),
    (ingress(ports=[{"port": 80, "endPort": 79}]),
     [f"{PORT}.endPort: Invalid value: 79: must be greater than or equal to `port`"]),
    (ingress(ports=[{"port": 80, "endPort": 70000}]),
     [f"{PORT}.endPort: Invalid value: 70000: {RANGE}"]),
    (ingress(ports=[{"endPort": 90}]),
     [f"{PORT}.endPort: Invalid value: 90: may not be specified when `port` is not specified"]),
    (ingress(ports=[{"port": 0, "endPort": 0}]),
     [f"{PORT}.port: Invalid value: 0: {RANGE}", f"{PORT}.endPort: Invalid value: 0: {RANGE}"]),
    # peers
    (ingress(peers=[{}]), [f"{PEER}: Required value: must specify a peer"]),
    (ingress(peers=[{**block("10.0.0.0/8"), "podSelector": {}}]),
     [f"{PEER}: Forbidden: may not specify both ipBlock and another peer"]),
    (ingress(peers=[{**block("10.0.0.0/8"), "namespaceSelector": {}, "podSelector": {}}]),
     [f"{PEER}: Forbidden: may not specify both ipBlock and another peer"]),
    (ingress(peers=[{"ipBlock": {}}]), [f"{BLOCK}.cidr: Required value"]),
    (ingress(peers=[block("10.0.0.0/33")]),
     [f'{BLOCK}.cidr: Invalid value: "10.0.0.0/33": not a valid CIDR']),
    (ingress(peers=[block("10.0.0.0")]),
     [f'{BLOCK}.cidr: Invalid value: "10.0.0.0": not a valid CIDR']),
    (ingress(peers=[block("256.0.0.0/8")]),
     [f'{BLOCK}.cidr: Invalid value: "256.0.0.0/8": not a valid CIDR']),
    (ingress(peers=[block("fe80::1%eth0/64")]),
     [f'{BLOCK}.cidr: Invalid value: "fe80::1%eth0/64": not a valid CIDR']),
    (ingress(peers=[block("10.0.0.0/8", "10.0.0.0/8")]),
     [f'{BLOCK}.except[0]: Invalid value: "10.0.0.0/8": must be a strict subset of `cidr`']),
    (ingress(peers=[block("10.0.0.0/16", "10.0.0.0/8")]),
     [f'{BLOCK}.except[0]: Invalid value: "10.0.0.0/8": must be a strict subset of `cidr`']),
    (ingress(peers=[block("10.0.0.0/8", "10.1.0.0/16", "11.0.0.0/16")]),
     [f'{BLOCK}.except[1]: Invalid value: "11.0.0.0/16": must be a strict subset of `cidr`']),
    (ingress(peers=[block("2001:db8::/32", "10.0.0.0/16")]),
     [f'{BLOCK}.except[0]: Invalid value: "10.0.0.0/16": must be a strict subset of `cidr`']),
    # kube stops at the first except it cannot read.
    (ingress(peers=[block("10.0.0.0/8", "nope", "11.0.0.0/16")]),
     [f'{BLOCK}.except[0]: Invalid value: "nope": not a valid CIDR']),
    # label selectors
    (policy(podSelector={"matchExpressions": [{"key": "app", "operator": "Equals",
                                               "values": ["web"]}]}),
     ['spec.podSelector.matchExpressions[0].operator: Invalid value: "Equals": not a valid '
      "selector operator"]),
    (policy(podSelector={"matchExpressions": [{"key": "app", "operator": "In"}]}),
     ["spec.podSelector.matchExpressions[0].values: Required value: must be specified when "
      "`operator` is 'In' or 'NotIn'"]),
    (policy(podSelector={"matchExpressions": [{"key": "app", "operator": "Exists",
                                               "values": ["web"]}]}),
     ["spec.podSelector.matchExpressions[0].values: Forbidden: may not be specified when "
      "`operator` is 'Exists' or 'DoesNotExist'"]),
    (policy(podSelector={"matchExpressions": [{"key": "a b", "operator": "NotIn",
                                               "values": ["x y"]}]}),
     [f'spec.podSelector.matchExpressions[0].key: Invalid value: "a b": {QUALIFIED}',
      f'spec.podSelector.matchExpressions[0].values[0]: Invalid value: "x y": {VALUE}']),
    (policy(podSelector={"matchLabels": {"bad key": "web"}}),
     [f'spec.podSelector.matchLabels: Invalid value: "bad key": {QUALIFIED}']),
    (ingress(peers=[{"namespaceSelector": {"matchLabels": {"team": "a b"}}}]),
     [f'{PEER}.namespaceSelector.matchLabels: Invalid value: "a b": {VALUE}']),
    (ingress(peers=[{"podSelector": {"matchLabels": {"Example.com/app": "web"}}}]),
     [f'{PEER}.podSelector.matchLabels: Invalid value: "Example.com/app": prefix part a '
      "lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
      "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
      f"used for validation is '{selectors.DNS1123_SUBDOMAIN_FMT}')"]),
    # policy types
    (policy(podSelector={}, policyTypes=["Ingress", "Egress", "Ingress"]),
     ['spec.policyTypes: Invalid value: []networking.PolicyType{"Ingress", "Egress", '
      '"Ingress"}: may not specify more than two policyTypes']),
    (policy(podSelector={}, policyTypes=["ingress"]),
     ['spec.policyTypes[0]: Unsupported value: "ingress": supported values: "Ingress", '
      '"Egress"']),
    # egress paths are named as such
    (policy(podSelector={}, egress=[{"ports": [{"port": "x", "endPort": 1}],
                                     "to": [{"ipBlock": {"cidr": ""}}]}]),
     ["spec.egress[0].ports[0].endPort: Invalid value: 1: may not be specified when `port` "
      "is non-numeric", "spec.egress[0].to[0].ipBlock.cidr: Required value"]),
]


@pytest.mark.parametrize(("obj", "errors"), INVALID)
def test_invalid_policies_are_refused_with_kubes_words(obj: Obj, errors: list[str]) -> None:
    obj = copy.deepcopy(obj)
    defaults.apply(obj)
    assert [str(e) for e in validation.validate(obj, resources.NETWORKPOLICY)] == errors


def test_the_name_is_a_dns_subdomain() -> None:
    errs = validation.validate(policy("Not_A_Name", podSelector={}), resources.NETWORKPOLICY)
    assert [e.path for e in errs] == ["metadata.name"]
    assert validation.validate(policy("a.b-c", podSelector={}), resources.NETWORKPOLICY) == []


@pytest.mark.parametrize(("text", "network"), [
    ("10.0.0.0/8", "10.0.0.0/8"), ("10.1.2.3/8", "10.0.0.0/8"), ("010.001.0.0/016", "10.1.0.0/16"),
    ("0.0.0.0/0", "0.0.0.0/0"), ("2001:db8::1/32", "2001:db8::/32"), ("::/0", "::/0"),
    ("10.0.0.0/", None), ("10.0.0/8", None), ("10.0.0.0/-1", None), ("10.0.0.0/8 ", None),
    ("10.0.0.0/255.0.0.0", None), ("::/129", None), ("", None), ("/8", None),
])
def test_cidrs_are_read_as_go_reads_them(text: str, network: str | None) -> None:
    found = netpol.parse_cidr(text)
    assert (str(found) if found else None) == network


# -- the selector as kubectl shows it (metav1.FormatLabelSelector) --

@pytest.mark.parametrize(("sel", "text"), [
    (None, "<none>"), ({}, "<none>"), ({"matchLabels": {}}, "<none>"),
    ({"matchLabels": {"app": "web"}}, "app=web"),
    ({"matchLabels": {"tier": "db", "app": "web"}}, "app=web,tier=db"),
    ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                           {"key": "app", "operator": "Exists"},
                           {"key": "b", "operator": "DoesNotExist"},
                           {"key": "c", "operator": "NotIn", "values": ["x"]}]},
     "app,!b,c notin (x),env in (dev,prod)"),
    ({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "app", "operator": "Exists"}]},
     "app=web,app"),
    ({"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["x"]}]}, "<error>"),
])
def test_selectors_print_as_kube_formats_them(sel: Obj | None, text: str) -> None:
    assert selectors.format_label_selector(sel) == text


# -- through the API server --

async def test_discovery_serves_the_kind(api: Api) -> None:
    groups = {g["name"] for g in (await ok(api, "GET", "/apis"))["groups"]}
    assert "networking.k8s.io" in groups
    listed = await ok(api, "GET", "/apis/networking.k8s.io/v1")
    (entry,) = [r for r in listed["resources"] if r["name"] == "networkpolicies"]
    assert entry["kind"] == "NetworkPolicy" and entry["namespaced"]
    assert entry["singularName"] == "networkpolicy" and entry["shortNames"] == ["netpol"]
    assert "categories" not in entry  # not part of `kubectl get all`
    assert set(entry["verbs"]) >= {"create", "list", "watch", "deletecollection"}
    assert [r["name"] for r in listed["resources"]] == ["networkpolicies"]  # no status


async def test_create_defaults_and_round_trips(api: Api) -> None:
    created = await ok(api, "POST", POLICIES, policy(
        "web", podSelector={"matchLabels": {"app": "web"}},
        egress=[{"ports": [{"port": 53}], "to": [{"namespaceSelector": {}}]}]))
    assert created["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert created["spec"]["egress"][0]["ports"] == [{"port": 53, "protocol": "TCP"}]
    got = await ok(api, "GET", f"{POLICIES}/web")
    assert got["spec"] == created["spec"] and got["metadata"]["uid"]
    listed = await ok(api, "GET", POLICIES)
    assert listed["kind"] == "NetworkPolicyList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["web"]
    await ok(api, "DELETE", f"{POLICIES}/web")
    code, _ = await call(api, "GET", f"{POLICIES}/web")
    assert code == 404


async def test_an_invalid_policy_is_a_422_naming_the_field(api: Api) -> None:
    code, st = await call(api, "POST", POLICIES, ingress(
        ports=[{"port": 80, "endPort": 70}], peers=[block("10.0.0.0/8", "192.168.0.0/16")]))
    assert code == 422 and st["reason"] == "Invalid"
    assert st["message"] == (
        'NetworkPolicy.networking.k8s.io "p" is invalid: [spec.ingress[0].ports[0].endPort: '
        "Invalid value: 70: must be greater than or equal to `port`, "
        'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "192.168.0.0/16": must be a '
        "strict subset of `cidr`]")
    assert st["details"]["kind"] == "NetworkPolicy"
    assert st["details"]["group"] == "networking.k8s.io"
    assert [c["field"] for c in st["details"]["causes"]] == [
        "spec.ingress[0].ports[0].endPort", "spec.ingress[0].from[0].ipBlock.except[0]"]
    code, _ = await call(api, "GET", f"{POLICIES}/p")
    assert code == 404  # nothing invalid is stored


async def test_updates_are_checked_and_defaulted_too(api: Api) -> None:
    created = await ok(api, "POST", POLICIES, policy("u", podSelector={}))
    created["spec"]["policyTypes"] = ["Sideways"]
    code, st = await call(api, "PUT", f"{POLICIES}/u", created)
    assert code == 422 and "spec.policyTypes[0]" in st["message"]
    patched = await ok(api, "PATCH", f"{POLICIES}/u",
                       {"spec": {"policyTypes": None, "egress": [{"ports": [{"port": 1}]}]}},
                       ctype="application/merge-patch+json")
    assert patched["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert patched["spec"]["egress"][0]["ports"][0]["protocol"] == "TCP"


async def test_the_table_shows_the_pod_selector(api: Api) -> None:
    await ok(api, "POST", POLICIES, policy("all", podSelector={}))
    await ok(api, "POST", POLICIES, policy("web", podSelector={"matchLabels": {"app": "web"}}))
    await ok(api, "POST", POLICIES, policy("expr", podSelector={"matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["b", "a"]}]}))
    table = await ok(api, "GET", POLICIES, accept=TABLE)
    assert [(c["name"], c["type"], c["priority"]) for c in table["columnDefinitions"]] == [
        ("Name", "string", 0), ("Pod-Selector", "string", 0), ("Age", "string", 0)]
    cells = {r["cells"][0]: r["cells"][1] for r in table["rows"]}
    assert cells == {"all": "<none>", "web": "app=web", "expr": "tier in (a,b)"}
    assert all(r["cells"][2].endswith("s") for r in table["rows"])


async def test_the_openapi_documents_have_the_kind(api: Api) -> None:
    paths = (await ok(api, "GET", "/openapi/v3"))["paths"]
    doc = await ok(api, "GET", paths["apis/networking.k8s.io/v1"]["serverRelativeURL"])
    assert "io.k8s.api.networking.v1.NetworkPolicy" in doc["components"]["schemas"]
    assert "/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/{name}" \
        in doc["paths"]


# -- the namespace name label --

async def test_namespaces_carry_their_name_label(api: Api) -> None:
    made = await ok(api, "POST", NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": {"name": "team-a", "labels": {
                                                  NAME_LABEL: "someone-else", "team": "a"}}})
    assert made["metadata"]["labels"] == {NAME_LABEL: "team-a", "team": "a"}
    made["metadata"]["labels"] = {}
    put = await ok(api, "PUT", f"{NAMESPACES}/team-a", made)
    assert put["metadata"]["labels"] == {NAME_LABEL: "team-a"}
    patched = await ok(api, "PATCH", f"{NAMESPACES}/team-a",
                       {"metadata": {"labels": {NAME_LABEL: "x", "team": "b"}}},
                       ctype="application/merge-patch+json")
    assert patched["metadata"]["labels"] == {NAME_LABEL: "team-a", "team": "b"}
    generated = await ok(api, "POST", NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"generateName": "gen-"}})
    name = generated["metadata"]["name"]
    assert name.startswith("gen-") and generated["metadata"]["labels"] == {NAME_LABEL: name}
    # What selectors see: the label picks the namespace by name.
    listed = await ok(api, "GET", NAMESPACES, params={"labelSelector": f"{NAME_LABEL}=team-a"})
    assert [n["metadata"]["name"] for n in listed["items"]] == ["team-a"]


async def test_bootstrap_namespaces_have_the_label(api: Api) -> None:
    listed = await ok(api, "GET", NAMESPACES)
    labels = {n["metadata"]["name"]: n["metadata"].get("labels") for n in listed["items"]}
    for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert labels[name] == {NAME_LABEL: name}


def test_namespaces_stored_without_the_label_get_it_at_start(tmp_path: Path) -> None:
    registry = make_registry(tmp_path)
    try:
        # As an older version stored them: no name label.
        for name in ("default", "old"):
            value = {"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": name, "uid": f"uid-{name}", "labels": {"keep": "me"}}}
            key = key_for(resources.NAMESPACE, None, name)
            if registry.store.get(key) is None:
                registry.store.create(key, value)
            else:
                registry.store.update(key, value, expected_revision=None)
        bootstrap.label_namespaces(registry)
        for name in ("default", "old"):
            got = registry.get(resources.NAMESPACE, None, name)
            assert got["metadata"]["labels"] == {"keep": "me", NAME_LABEL: name}
        before = registry.store.revision
        bootstrap.label_namespaces(registry)
        assert registry.store.revision == before  # nothing left to write
    finally:
        registry.store.close()


def test_a_start_beside_another_server_leaves_its_writes_alone(registry: Registry) -> None:
    """Two servers starting on one store: the one that loses the race to
    label a namespace or add a role's rules finds the work done (a 409)."""
    stale = registry.get(resources.NAMESPACE, None, "default")
    registry.update(resources.NAMESPACE, None, "default", copy.deepcopy(stale))
    bootstrap._update_once(registry, resources.NAMESPACE, stale)  # stale: a Conflict, ignored
    # Any other error is not the race, and is raised.
    stale["metadata"]["name"] = "gone"
    with pytest.raises(ApiError, match='namespaces "gone" not found'):
        bootstrap._update_once(registry, resources.NAMESPACE, stale)


# -- RBAC --

def _rules(registry: Registry, role: str) -> list[Obj]:
    return list(registry.get(resources.CLUSTERROLE, None, role)["rules"])


def test_view_edit_and_admin_cover_network_policies(registry: Registry) -> None:
    def verbs(role: str) -> set[str]:
        return {v for r in _rules(registry, role) if "networking.k8s.io" in r.get("apiGroups", [])
                and "networkpolicies" in r.get("resources", []) for v in r["verbs"]}
    assert verbs("view") == {"get", "list", "watch"}
    assert verbs("edit") >= {"create", "update", "patch", "delete", "deletecollection", "list"}
    assert verbs("admin") == verbs("edit")
    assert verbs("system:node") == {"get", "list", "watch"}


def test_a_role_stored_before_the_kind_gains_its_rules(registry: Registry) -> None:
    role = registry.get(resources.CLUSTERROLE, None, "view")
    mine = {"apiGroups": ["example.com"], "resources": ["things"], "verbs": ["get"]}
    role["rules"] = [r for r in role["rules"] if "networking.k8s.io" not in r["apiGroups"]]
    role["rules"].append(mine)
    registry.update(resources.CLUSTERROLE, None, "view", role)
    bootstrap.ensure_rbac(registry)
    rules = _rules(registry, "view")
    assert bootstrap.NETPOL_READ in rules and mine in rules
    # A role its owner froze is left alone.
    role = registry.get(resources.CLUSTERROLE, None, "edit")
    role["metadata"].setdefault("annotations", {})[bootstrap.AUTOUPDATE] = "false"
    role["rules"] = [mine]
    registry.update(resources.CLUSTERROLE, None, "edit", role)
    bootstrap.ensure_rbac(registry)
    assert _rules(registry, "edit") == [mine]


# -- protobuf --

def test_a_protobuf_policy_decodes_to_its_json() -> None:
    selector = msg(1, msg(1, ld(1, "app"), ld(2, "web")))
    port = msg(1, ld(1, "TCP"), msg(2, num(1, 0), num(2, 8000)), num(3, 9000))
    peer = msg(2, msg(3, ld(1, "10.0.0.0/8"), ld(2, "10.1.0.0/16")))
    spec = msg(2, selector, msg(2, port, peer), ld(4, "Ingress"))
    obj = decode(envelope("networking.k8s.io/v1", "NetworkPolicy", meta("p") + spec))
    assert obj == {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": "p"},
                   "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                            "ingress": [{"ports": [{"protocol": "TCP", "port": 8000,
                                                    "endPort": 9000}],
                                         "from": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                                               "except": ["10.1.0.0/16"]}}]}],
                            "policyTypes": ["Ingress"]}}


# -- describe, as kubectl prints it --

def test_tabbed_pads_each_run_of_cells_to_its_widest() -> None:
    assert tabbed(["a:\t1", "long:\t2", "\t3", "break", "b:\t4"]) == [
        "a:     1", "long:  2", "       3", "break", "b:  4"]


def test_describe_prints_as_kubectl() -> None:
    obj = policy("web", podSelector={"matchLabels": {"app": "web"}},
                 ingress=[{"ports": [{"port": "http"}, {"port": 8000, "endPort": 9000,
                                                        "protocol": "UDP"}],
                           "from": [{"namespaceSelector": {"matchLabels": {"team": "a"}},
                                     "podSelector": {"matchLabels": {"role": "client"}}},
                                    block("10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16")]},
                          {}])
    obj["metadata"].update(creationTimestamp="2025-01-02T03:04:05Z",
                           labels={"b": "2", "a": "1"},
                           annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}",
                                        "note": "hi"})
    defaults.apply(obj)
    text = network_policy(obj)
    head, body = text.split("\nSpec:\n")
    assert head.splitlines()[0] == "Name:         web"
    assert head.splitlines()[1:2] == ["Namespace:    default"]
    assert head.splitlines()[2].startswith("Created on:   2025-")
    assert head.splitlines()[3:] == ["Labels:       a=1", "              b=2",
                                     "Annotations:  note: hi"]
    assert body.splitlines() == [
        "  PodSelector:     app=web",
        "  Allowing ingress traffic:",
        "    To Port: http/TCP",
        "    To Port Range: 8000-9000/UDP",
        "    From:",
        "      NamespaceSelector: team=a",
        "      PodSelector: role=client",
        "    From:",
        "      IPBlock:",
        "        CIDR: 10.0.0.0/8",
        "        Except: 10.1.0.0/16, 10.2.0.0/16",
        "    ----------",
        "    To Port: <any> (traffic allowed to all ports)",
        "    From: <any> (traffic not restricted by source)",
        "  Not affecting egress traffic",
        "  Policy Types: Ingress"]


def test_describe_a_default_deny_of_both_directions() -> None:
    obj = policy("deny", podSelector={}, policyTypes=["Ingress", "Egress"])
    defaults.apply(obj)
    assert network_policy(obj).split("\nSpec:\n")[1].splitlines() == [
        "  PodSelector:     <none> (Allowing the specific traffic to all pods in this namespace)",
        "  Allowing ingress traffic:",
        "    <none> (Selected pods are isolated for ingress connectivity)",
        "  Allowing egress traffic:",
        "    <none> (Selected pods are isolated for egress connectivity)",
        "  Policy Types: Ingress, Egress"]
