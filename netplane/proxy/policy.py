"""NetworkPolicy as the node enforces it: which pods are isolated, and what
each policy allows, resolved to addresses and ports.

Pure conversion from API objects into ``NodePolicy``, the one input of
every mode's policy renderer. A pod is isolated for a direction when any
policy of its namespace selects it with that direction in ``policyTypes``;
an isolated pod takes only what the union of its policies allows. Each
policy rule becomes ``Clause``s: the peer addresses (pods chosen by
selectors as /32s, ``ipBlock`` CIDRs with their ``except`` cut out), the
port ranges, and, for named ports, the pods on which the name means that
number. Named ports resolve on the destination pod, as the specification
says: on the selected pod for ingress, on each peer pod for egress (so an
``ipBlock`` peer never matches a named port). ``evaluate`` answers for one
packet from the same model, for traces, tests and conntrack clean-up.
Host-network pods are neither selected nor peers: their address is the
node's.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import ipaddress
import json
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from netplane.api import selectors
from netplane.api.meta import Obj, labels, name, namespace

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
PROTOCOLS = ("TCP", "UDP", "SCTP")


class Direction(enum.StrEnum):
    INGRESS = "Ingress"
    EGRESS = "Egress"


@dataclass(frozen=True, order=True)
class PodInfo:
    """What policy needs of one pod with an address."""

    namespace: str
    name: str
    ip: str
    node: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    # Named container ports: (name, protocol, number).
    ports: tuple[tuple[str, str, int], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def named_port(self, port_name: str, protocol: str) -> int | None:
        for n, proto, number in self.ports:
            if n == port_name and proto == protocol:
                return number
        return None


def pod_info(pod: Obj) -> PodInfo | None:
    """The pod as policy sees it; None for one without an address of its
    own (pending, host network, finished: its address may be reused)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ip = status.get("podIP")
    if not ip or spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    ports = []
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") and p.get("containerPort"):
                ports.append((str(p["name"]), str(p.get("protocol") or "TCP"),
                              int(p["containerPort"])))
    return PodInfo(namespace(pod), name(pod), str(ip), str(spec.get("nodeName") or ""),
                   tuple(sorted(labels(pod).items())), tuple(sorted(ports)))


@dataclass(frozen=True, order=True)
class PortRange:
    protocol: str
    first: int
    last: int

    def __str__(self) -> str:
        if (self.first, self.last) == (0, 65535):
            return f"{self.protocol} any port"
        span = str(self.first) if self.first == self.last else f"{self.first}-{self.last}"
        return f"{self.protocol} {span}"

    def holds(self, protocol: str, port: int) -> bool:
        return protocol == self.protocol and self.first <= port <= self.last


@dataclass(frozen=True)
class Clause:
    """One thing a policy rule allows.

    ``peers``: networks the other end must be in (None: anywhere).
    ``ports``: what the destination port must be (None: any protocol and
    port). ``targets``: for a named port, the selected pods whose port of
    that name has this number (None: every pod the policy selects)."""

    peers: frozenset[str] | None
    ports: tuple[PortRange, ...] | None
    targets: frozenset[str] | None = None
    rule: int = 0  # index of the rule in the policy, for explanations
    # What ``peers`` and ``targets`` are worked out from (the peers' spec,
    # the policy's pod selector, the port name), in words: clauses with the
    # same key hold the same addresses, in whichever policy they are, so
    # they share one set in the kernel.
    peer_key: str = ""
    target_key: str = ""

    def allows(self, peer: str, protocol: str, port: int, target: str) -> bool:
        if self.targets is not None and target not in self.targets:
            return False
        if self.ports is not None and not any(r.holds(protocol, port) for r in self.ports):
            return False
        return self.peers is None or _in_networks(peer, self.peers)


@dataclass(frozen=True)
class PolicyRules:
    """What one policy allows in one direction, for the pods it selects here."""

    policy: str  # namespace/name
    direction: Direction
    clauses: tuple[Clause, ...]


@dataclass(frozen=True)
class PodIsolation:
    pod: PodInfo
    ingress: tuple[str, ...]  # keys of the policies isolating it, sorted
    egress: tuple[str, ...]


@dataclass
class NodePolicy:
    """Every local pod that some policy isolates, and those policies' rules."""

    pods: dict[str, PodIsolation] = field(default_factory=dict)  # by pod IP
    rules: dict[tuple[str, Direction], PolicyRules] = field(default_factory=dict)

    def isolated(self, ip: str, direction: Direction) -> tuple[str, ...]:
        iso = self.pods.get(ip)
        if iso is None:
            return ()
        return iso.ingress if direction is Direction.INGRESS else iso.egress


@functools.lru_cache(maxsize=1 << 16)
def _span(network: str) -> tuple[int, int, str]:
    """First and last address of an IPv4 network (host bits ignored) and its
    canonical text. Memoised: the same pod addresses recur in many peer
    sets, and ``ipaddress`` objects cost microseconds each."""
    net = ipaddress.IPv4Network(network, strict=False)
    return int(net.network_address), int(net.broadcast_address), str(net)


def _in_networks(ip: str, networks: Iterable[str]) -> bool:
    addr = _span(ip)[0]
    return any(first <= addr <= last for first, last, _ in map(_span, networks))


def _host(ip: str) -> str:
    return f"{ip}/32"


def collapse(networks: Iterable[str]) -> frozenset[str]:
    """The same addresses as networks none of which overlaps another
    (nftables' interval sets refuse overlaps). Two CIDRs overlap only when
    one holds the other, so dropping every network inside another is
    enough; adjacent ones are not merged, so that a pod that comes or goes
    adds or removes its own element and never rewrites a neighbour's."""
    out: list[str] = []
    end = -1
    for first, last, text in sorted({_span(n) for n in networks}, key=lambda s: (s[0], -s[1])):
        if first > end:
            out.append(text)
            end = last
    return frozenset(out)


def block_networks(block: Obj) -> list[str]:
    """``cidr`` minus every ``except``, as the fewest networks (IPv4: the
    cluster's family; an IPv6 block matches nothing here)."""
    return list(_block_networks(str(block.get("cidr")),
                                tuple(str(raw) for raw in block.get("except") or [])))


@functools.lru_cache(maxsize=4096)
def _block_networks(cidr: str, excepts: tuple[str, ...]) -> tuple[str, ...]:
    # Memoised: a pure function of its text, and ``ipaddress`` is slow.
    top = ipaddress.ip_network(cidr, strict=False)
    if not isinstance(top, ipaddress.IPv4Network):
        return ()
    nets = [top]
    for raw in excepts:
        cut = ipaddress.ip_network(raw, strict=False)
        if not isinstance(cut, ipaddress.IPv4Network):
            continue
        out: list[ipaddress.IPv4Network] = []
        for n in nets:
            if cut.subnet_of(n):
                out.extend(n.address_exclude(cut))
            elif not n.subnet_of(cut):
                out.append(n)
        nets = out
    return tuple(str(n) for n in sorted(nets))


def policy_types(pol: Obj) -> tuple[Direction, ...]:
    """``policyTypes`` as stored, or as the API server defaults it."""
    spec = pol.get("spec") or {}
    types = spec.get("policyTypes")
    if not types:
        types = ["Ingress", *(["Egress"] if spec.get("egress") else [])]
    return tuple(Direction(t) for t in types if t in ("Ingress", "Egress"))


# (namespace or None, repr of the pod selector, repr of the namespace selector)
SelectionKey = tuple[str | None, str, str]


@dataclass
class _Selection:
    pods: tuple[PodInfo, ...]
    spaces: tuple[str, ...]  # the namespaces it looked in
    ns_sel: Obj | None
    by_labels: bool  # whether namespace labels chose ``spaces``


class Cluster:
    """Pods and namespace labels, with selector lookups memoised (many
    policies share their selectors). ``update`` takes the next pods and
    namespaces and forgets exactly the lookups whose answer they may change:
    those looking into a namespace whose pods changed, and, when namespace
    labels changed, those that chose namespaces by label. An answer worked
    out again that equals the one forgotten is the same object as before,
    so that what was built from it can be recognised as still valid."""

    def __init__(self, pods: Iterable[PodInfo] = (),
                 namespaces: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.pods: tuple[PodInfo, ...] = ()
        self.by_ns: dict[str, tuple[PodInfo, ...]] = {}
        self.ns_labels: dict[str, dict[str, str]] = {}
        self._given: dict[str, tuple[PodInfo, ...]] = {}  # by_ns in the order given
        self._memo: dict[SelectionKey, _Selection] = {}
        self._forgotten: dict[SelectionKey, tuple[PodInfo, ...]] = {}
        self.reads: list[tuple[SelectionKey, tuple[PodInfo, ...]]] | None = None
        self.update(pods, namespaces or {})

    def update(self, pods: Iterable[PodInfo], namespaces: Mapping[str, Mapping[str, str]]
               ) -> None:
        given: dict[str, list[PodInfo]] = {}
        for p in pods:
            given.setdefault(p.namespace, []).append(p)
        dirty = set(self.by_ns) - set(given)
        by_ns: dict[str, tuple[PodInfo, ...]] = {}
        for ns, group in given.items():
            as_given = tuple(group)
            old = self.by_ns.get(ns)
            if old is not None and self._given.get(ns) == as_given:
                by_ns[ns] = old
                continue
            ordered = tuple(sorted(as_given))
            if ordered == old:
                by_ns[ns] = old  # the same pods, given in another order
            else:
                by_ns[ns] = ordered
                dirty.add(ns)
        self._given = {ns: tuple(group) for ns, group in given.items()}
        self.by_ns = by_ns
        # PodInfo sorts by namespace first: the namespaces' sorted pods, in order.
        self.pods = tuple(p for ns in sorted(by_ns) for p in by_ns[ns])
        labels_ = {ns: {**dict(namespaces.get(ns, {})), NAMESPACE_NAME_LABEL: ns}
                   for ns in (*namespaces, *by_ns)}
        relabelled = labels_ != self.ns_labels
        self.ns_labels = labels_
        self._forget(dirty, relabelled)

    def _forget(self, dirty: set[str], relabelled: bool) -> None:
        self._forgotten = {}
        if not dirty and not relabelled:
            return
        for key, sel in list(self._memo.items()):
            stale = not dirty.isdisjoint(sel.spaces)
            if not stale and relabelled and sel.by_labels:
                stale = tuple(self._namespaces(sel.ns_sel)) != sel.spaces
            if stale:
                self._forgotten[key] = sel.pods
                del self._memo[key]

    def _namespaces(self, sel: Obj | None) -> list[str]:
        s = selectors.from_label_selector(sel)
        return sorted(ns for ns, lbls in self.ns_labels.items() if s.matches(lbls))

    def select(self, ns: str | None, pod_sel: Obj | None, ns_sel: Obj | None = None,
               ) -> tuple[PodInfo, ...]:
        """Pods in ``ns`` (or in the namespaces ``ns_sel`` picks) that
        ``pod_sel`` picks; a missing selector picks everything."""
        key = (ns, repr(pod_sel), repr(ns_sel))
        hit = self._memo.get(key)
        if hit is None:
            spaces = (ns,) if ns is not None else tuple(self._namespaces(ns_sel))
            s = selectors.from_label_selector(pod_sel)
            pods = tuple(p for space in spaces for p in self.by_ns.get(space, ())
                         if s.matches(p.label_map))
            before = self._forgotten.get(key)
            if before is not None and _same_but_labels(before, pods):
                pods = before
            hit = self._memo[key] = _Selection(pods, spaces, typing.cast(Obj | None, _copy(ns_sel)),
                                               ns is None)
        if self.reads is not None:
            self.reads.append((key, hit.pods))
        return hit.pods

    def unchanged(self, reads: Iterable[tuple[SelectionKey, tuple[PodInfo, ...]]]) -> bool:
        """Whether every one of these lookups still has the same answer (the
        same object): those not forgotten since do."""
        return all((hit := self._memo.get(key)) is not None and hit.pods is pods
                   for key, pods in reads)

    def keep_only(self, keys: set[SelectionKey]) -> None:
        """Drops the lookups that nothing uses any more."""
        for key in set(self._memo) - keys:
            del self._memo[key]


def _same_but_labels(a: tuple[PodInfo, ...], b: tuple[PodInfo, ...]) -> bool:
    """The same pods with the same addresses, nodes and ports. What a policy
    is worked out from reads nothing else of the pods a lookup answers
    (their labels chose them; the lookup's key says how), so an answer that
    differs only in labels is kept as the same object: a pod relabelled
    without leaving or joining a selection reaches no policy."""
    return len(a) == len(b) and all(
        x is y or (x.namespace, x.name, x.ip, x.node, x.ports)
        == (y.namespace, y.name, y.ip, y.node, y.ports) for x, y in zip(a, b, strict=True))


def _peer_pods(cluster: Cluster, pol_ns: str, peer: Obj) -> tuple[PodInfo, ...]:
    if "namespaceSelector" in peer and peer["namespaceSelector"] is not None:
        return cluster.select(None, peer.get("podSelector"), peer["namespaceSelector"])
    return cluster.select(pol_ns, peer.get("podSelector"))


def _spec_text(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _peers_key(pol_ns: str, peers_spec: list[Obj]) -> str:
    """What a rule's peers are worked out from: their spec, and the
    policy's namespace when a pod selector alone looks into it."""
    relative = any(isinstance(p, dict) and not p.get("ipBlock")
                   and p.get("namespaceSelector") is None for p in peers_spec)
    return f"{pol_ns if relative else '*'} {_spec_text(peers_spec)}"


def _rule_clauses(cluster: Cluster, pol_ns: str, rule: Obj, index: int, direction: Direction,
                  selected: tuple[PodInfo, ...], targets_key: str) -> list[Clause]:
    peers_spec = rule.get("from" if direction is Direction.INGRESS else "to") or []
    blocks: list[str] = []
    peer_pods: list[PodInfo] = []
    for peer in peers_spec:
        if not isinstance(peer, dict):
            continue
        if peer.get("ipBlock"):
            blocks.extend(block_networks(peer["ipBlock"]))
        elif "podSelector" in peer or "namespaceSelector" in peer:
            peer_pods.extend(_peer_pods(cluster, pol_ns, peer))
    anywhere = not peers_spec
    peers = None if anywhere else collapse([*blocks, *(_host(p.ip) for p in peer_pods)])
    peer_key = "" if anywhere else _peers_key(pol_ns, peers_spec)

    numeric: list[PortRange] = []
    named: list[tuple[str, str]] = []
    for entry in rule.get("ports") or []:
        proto = str(entry.get("protocol") or "TCP")
        port = entry.get("port")
        if port is None:
            numeric.append(PortRange(proto, 0, 65535))
        elif isinstance(port, int) or str(port).isdigit():
            first = int(port)
            numeric.append(PortRange(proto, first, int(entry.get("endPort") or first)))
        else:
            named.append((str(port), proto))
    if not rule.get("ports"):
        return [Clause(peers, None, rule=index, peer_key=peer_key)]
    out = [Clause(peers, tuple(sorted(set(numeric))), rule=index, peer_key=peer_key)] \
        if numeric else []
    for port_name, proto in named:
        if direction is Direction.INGRESS:
            # The name means a number on each selected pod: group the pods by it.
            by_number: dict[int, set[str]] = {}
            for p in selected:
                number = p.named_port(port_name, proto)
                if number is not None:
                    by_number.setdefault(number, set()).add(p.ip)
            for number, ips in sorted(by_number.items()):
                out.append(Clause(peers, (PortRange(proto, number, number),),
                                  frozenset(ips), rule=index, peer_key=peer_key,
                                  target_key=f"{targets_key} {port_name}/{proto}={number}"))
        else:
            # On each peer pod; with no peers given, on every pod there is
            # (a lookup, so that the answer is remembered and tracked).
            candidates = cluster.select(None, {}, {}) if anywhere else peer_pods
            by_number = {}
            for p in candidates:
                number = p.named_port(port_name, proto)
                if number is not None:
                    by_number.setdefault(number, set()).add(_host(p.ip))
            for number, nets in sorted(by_number.items()):
                out.append(Clause(collapse(nets), (PortRange(proto, number, number),),
                                  rule=index, peer_key=f"{peer_key or '* any'} "
                                                       f"{port_name}/{proto}={number}"))
    return out


@dataclass
class _Compiled:
    """One policy as this node sees it, and what it was worked out from."""

    spec: Obj  # a copy: the caller's object may be changed in place
    reads: tuple[tuple[SelectionKey, tuple[PodInfo, ...]], ...]
    selected: tuple[PodInfo, ...]  # the local pods it selects
    rules: tuple[PolicyRules, ...]


def _copy(value: object) -> object:
    """A deep copy of JSON-shaped data (dicts, lists, scalars)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


class ModelCache:
    """``compute`` for inputs that change a little between calls, as a
    node's do: each policy is worked out again only when its spec or the
    answer of one of its selector lookups changed; every other policy's
    rules are the very objects of the previous call, so that the plan and
    the renderers can recognise them. The result always equals what
    ``compute`` gives for the same inputs (the unit tests compare them
    over random changes); nothing is assumed about which inputs changed."""

    def __init__(self, *, local: Callable[[PodInfo], bool] = lambda p: True) -> None:
        self._local = local
        self._cluster = Cluster()
        self._policies: dict[str, _Compiled] = {}

    def _compile(self, pol: Obj) -> _Compiled:
        cluster, spec = self._cluster, pol.get("spec") or {}
        cluster.reads = []
        try:
            selected = tuple(p for p in cluster.select(namespace(pol),
                                                       spec.get("podSelector") or {})
                             if self._local(p))
            rules = []
            # The pods a named port's targets set is worked out from.
            targets_key = f"{namespace(pol)} {_spec_text(spec.get('podSelector') or {})}"
            for direction in policy_types(pol) if selected else ():
                specs = spec.get("ingress" if direction is Direction.INGRESS else "egress") or []
                clauses = [c for i, r in enumerate(specs) if isinstance(r, dict)
                           for c in _rule_clauses(cluster, namespace(pol), r, i, direction,
                                                  selected, targets_key)]
                rules.append(PolicyRules(f"{namespace(pol)}/{name(pol)}", direction,
                                         tuple(clauses)))
            reads = tuple(cluster.reads)
        finally:
            cluster.reads = None
        return _Compiled(typing.cast(Obj, _copy(spec)), reads, selected, tuple(rules))

    def compute(self, policies: Iterable[Obj], pods: Iterable[PodInfo],
                namespaces: Mapping[str, Mapping[str, str]]) -> NodePolicy:
        self._cluster.update(pods, namespaces)
        out = NodePolicy()
        isolating: dict[str, dict[Direction, list[str]]] = {}
        compiled: dict[str, _Compiled] = {}
        worked_out = False
        keyed = sorted(((namespace(p), name(p), p) for p in policies), key=lambda t: t[:2])
        for ns, name_, pol in keyed:
            key = f"{ns}/{name_}"
            known = self._policies.get(key)
            if (key in compiled or known is None or known.spec != (pol.get("spec") or {})
                    or not self._cluster.unchanged(known.reads)):
                known, worked_out = self._compile(pol), True
            compiled.setdefault(key, known)
            for rules in known.rules:
                for p in known.selected:
                    isolating.setdefault(p.ip, {}).setdefault(rules.direction, []).append(key)
                out.rules[(key, rules.direction)] = rules
        if worked_out or compiled.keys() != self._policies.keys():
            self._cluster.keep_only({k for c in compiled.values() for k, _ in c.reads})
        self._policies = compiled
        by_ip = {p.ip: p for p in self._cluster.pods}
        for ip, dirs in sorted(isolating.items()):
            out.pods[ip] = PodIsolation(by_ip[ip], tuple(dirs.get(Direction.INGRESS, ())),
                                        tuple(dirs.get(Direction.EGRESS, ())))
        return out


def compute(policies: Iterable[Obj], pods: Iterable[PodInfo],
            namespaces: Mapping[str, Mapping[str, str]], *,
            local: Callable[[PodInfo], bool] = lambda p: True) -> NodePolicy:
    """The isolation of every ``local`` pod and the rules of the policies
    that isolate one."""
    return ModelCache(local=local).compute(policies, pods, namespaces)


@dataclass(frozen=True)
class Decision:
    """What policy does to the first packet of a connection, and why."""

    allowed: bool
    reason: str
    # (direction, policy, rule index) of each clause that allowed it.
    allowed_by: tuple[tuple[str, str, int], ...] = ()


def _judge(model: NodePolicy, pod_ip: str, peer: str, protocol: str, port: int,
           direction: Direction) -> tuple[bool, list[tuple[str, str, int]], tuple[str, ...]]:
    isolating = model.isolated(pod_ip, direction)
    if not isolating:
        return True, [], ()
    by: list[tuple[str, str, int]] = []
    for key in isolating:
        rules = model.rules.get((key, direction))
        for c in rules.clauses if rules else ():
            if c.allows(peer, protocol, port, pod_ip):
                by.append((direction.value, key, c.rule))
    return bool(by), by, isolating


def evaluate(model: NodePolicy, src: str, dst: str, protocol: str, port: int, *,
             node_ips: frozenset[str] = frozenset(),
             names: Mapping[str, str] | None = None) -> Decision:
    """Whether a new connection from ``src`` to ``dst`` (after DNAT) passes
    the policies in ``model``: egress of the source, then ingress of the
    destination. A pod reaching itself passes; so does its own node."""
    names = names or {}
    if src == dst:
        return Decision(True, "a pod may always reach itself")
    ok, by_e, iso_e = _judge(model, src, dst, protocol, port, Direction.EGRESS)
    src_pod = model.pods.get(src)
    if not ok:
        who = src_pod.pod.key if src_pod else src
        return Decision(False, f"{who} is isolated for egress by {', '.join(iso_e)}; no policy "
                               f"allows to {names.get(dst, dst)} on {protocol} {port}")
    if src in node_ips:
        return Decision(True, "traffic from the pod's own node is always allowed", tuple(by_e))
    ok, by_i, iso_i = _judge(model, dst, src, protocol, port, Direction.INGRESS)
    if not ok:
        dst_pod = model.pods.get(dst)
        who = dst_pod.pod.key if dst_pod else dst
        return Decision(False, f"{who} is isolated for ingress by {', '.join(iso_i)}; no policy "
                               f"allows from {names.get(src, src)} on {protocol} {port}")
    by = tuple(by_e + by_i)
    return Decision(True, "allowed" if by else "no policy isolates either end", by)


# -- the plan every mode renders ------------------------------------------------

# Not the Service proxy's "NP-" prefix: its full sync deletes every NP- chain
# it did not render. Names stay within iptables' 28 and ipset's 31 characters.
PREFIX = "NPOL-"
POD_CHAIN_PREFIX = {Direction.INGRESS: "NPOL-PODI-", Direction.EGRESS: "NPOL-PODE-"}
POLICY_CHAIN_PREFIX = {Direction.INGRESS: "NPOL-I-", Direction.EGRESS: "NPOL-E-"}
SET_PREFIX = "NPOL-S-"


@functools.lru_cache(maxsize=1 << 16)
def _hash16(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()[:10]).decode()


@dataclass(frozen=True)
class Entry:
    """One allow rule of a policy chain: the packet's peer address in
    ``peer_set``, its pod-side address in ``target_set`` (None: no check),
    its destination port in ``ports`` (None: any)."""

    peer_set: str | None
    target_set: str | None
    ports: tuple[PortRange, ...] | None
    comment: str


@dataclass(frozen=True)
class PodChain:
    name: str
    pod: str  # namespace/name
    ip: str
    direction: Direction
    policies: tuple[tuple[str, str], ...]  # (policy key, its chain), in policy order
    comment: str  # says which policies isolate the pod


@dataclass(frozen=True)
class PolicyChain:
    name: str
    policy: str
    direction: Direction
    entries: tuple[Entry, ...]


@dataclass
class Plan:
    """Chains and address sets, named stably by what owns them, so a change
    of addresses is a set update and leaves every chain as it was."""

    sets: dict[str, frozenset[str]] = field(default_factory=dict)
    networks: set[str] = field(default_factory=set)  # the sets holding more than hosts
    pod_chains: dict[str, PodChain] = field(default_factory=dict)
    policy_chains: dict[str, PolicyChain] = field(default_factory=dict)

    def dispatch(self, direction: Direction) -> list[PodChain]:
        return sorted((c for c in self.pod_chains.values() if c.direction is direction),
                      key=lambda c: ipaddress.ip_address(c.ip))


def derived_name(prefix: str, owner: str) -> str:
    """A chain's or a set's name: our prefix and a hash of what owns it."""
    return prefix + _hash16(owner)


def policy_chain_name(policy: str, direction: Direction) -> str:
    return POLICY_CHAIN_PREFIX[direction] + _hash16(f"{policy}/{direction}")


def pod_chain_name(pod: str, direction: Direction) -> str:
    return POD_CHAIN_PREFIX[direction] + _hash16(f"{pod}/{direction}")


@dataclass(frozen=True)
class _PolicyPlan:
    chain: PolicyChain
    sets: dict[str, frozenset[str]]
    networks: frozenset[str]  # those of ``sets`` that hold networks


def _set_name(owner: str, hosts: bool) -> str:
    # Host addresses and networks are different kinds of set in nftables:
    # the kind is in the name, so that a rule that comes to name a CIDR gets
    # a new set instead of a set changing its kind under its rules.
    return SET_PREFIX + _hash16(owner if hosts else owner + "/networks")


def _policy_plan(rules: PolicyRules) -> _PolicyPlan:
    """One policy's chain in one direction, and the sets its rules match
    on, named after what they are worked out from (``Clause.peer_key``):
    the clauses of a rule share its peers' set, and so do the rules of
    other policies with the same peers; an egress named port narrows them
    to a set of its own."""
    key, direction = rules.policy, rules.direction
    chain = policy_chain_name(key, direction)
    entries, sets, networks = [], {}, set()
    for c in rules.clauses:
        peer_set = target_set = None
        if c.peers is not None:
            hosts = all(e.endswith("/32") for e in c.peers)
            peer_set = _set_name(c.peer_key, hosts)
            sets[peer_set] = c.peers
            if not hosts:
                networks.add(peer_set)
        if c.targets is not None:
            target_set = _set_name(c.target_key, True)
            sets[target_set] = frozenset(_host(ip) for ip in c.targets)
        ports = "" if c.ports is None else " on " + ", ".join(map(str, c.ports))
        entries.append(Entry(peer_set, target_set, c.ports,
                             f"{key} {direction.lower()} rule {c.rule}{ports}"))
    return _PolicyPlan(PolicyChain(chain, key, direction, tuple(entries)), sets,
                       frozenset(networks))


class Planner:
    """``plan`` that keeps each policy's chain and sets, keyed by its rules
    (a value: equal rules plan to equal chains), so that a sync plans only
    the policies whose rules changed, and hands the renderers the same
    chain objects as before for the rest."""

    def __init__(self) -> None:
        self._memo: dict[PolicyRules, _PolicyPlan] = {}

    def plan(self, model: NodePolicy) -> Plan:
        out, memo = Plan(), {}
        for _, rules in sorted(model.rules.items()):
            hit = self._memo.get(rules) or _policy_plan(rules)
            memo[rules] = hit
            out.policy_chains[hit.chain.name] = hit.chain
            out.sets.update(hit.sets)
            out.networks.update(hit.networks)
        self._memo = memo
        for ip, iso in model.pods.items():
            for direction, keys in ((Direction.INGRESS, iso.ingress),
                                    (Direction.EGRESS, iso.egress)):
                if not keys:
                    continue
                name_ = pod_chain_name(iso.pod.key, direction)
                out.pod_chains[name_] = PodChain(
                    name_, iso.pod.key, ip, direction,
                    tuple((k, policy_chain_name(k, direction)) for k in keys),
                    f"{iso.pod.key} is isolated for {direction.lower()} by {', '.join(keys)}")
        return out


def plan(model: NodePolicy) -> Plan:
    return Planner().plan(model)

