"""Rankings kept across pods: the tree finds the window and the best node
that the framework's walk over the nodes finds, and the scheduler's
decisions through it are the decisions of the walk itself, while nodes
fill, change, come and go."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from netplane.api.meta import Obj
from netplane.cluster.scheduler.framework import Equivalence, schedule
from netplane.cluster.scheduler.nodeinfo import NodeCache
from netplane.cluster.scheduler.profiles import default_profile
from netplane.cluster.scheduler.ranking import ChangeFeed, Ranking, Verdict


@dataclass
class Fake:
    name: str
    version: tuple[object, int, int] = ("1", 0, 0)


def walk(verdicts: list[Verdict], start: int, to_find: int) -> tuple[int, int]:
    """The framework's walk: from ``start`` round the nodes until enough fit;
    the best score, the lowest index among equals."""
    n, found = len(verdicts), []
    processed = 0
    for k in range(n):
        if len(found) >= to_find:
            break
        i = (start + k) % n
        processed = k + 1
        v = verdicts[i]
        if v is not None:
            found.append((v[0], -i))
    _, neg = max(found)
    return -neg, processed


@pytest.mark.parametrize("seed", range(30))
def test_the_tree_picks_what_the_walk_picks(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 70)
    infos = [Fake(f"n{i:03}") for i in range(n)]
    verdicts: list[Verdict] = [None if rng.random() < 0.4 else (rng.randint(0, 5), ())
                               for _ in range(n)]
    if all(v is None for v in verdicts):
        verdicts[rng.randrange(n)] = (1, ())
    feed = ChangeFeed()
    ranking: Ranking[Fake] = Ranking(infos, 0, 0)
    ranking.sync(feed, lambda info: verdicts[infos.index(info)])
    for _ in range(40):
        start, to_find = rng.randrange(n), rng.randint(1, n)
        assert ranking.pick(start, to_find) == walk(verdicts, start, to_find)
        # One node changes, as an assumed pod changes it.
        i = rng.randrange(n)
        verdicts[i] = None if rng.random() < 0.3 else (rng.randint(0, 5), ())
        if all(v is None for v in verdicts):
            verdicts[i] = (0, ())
        infos[i].version = (str(rng.random()), 0, 0)
        feed.touch(infos[i].name)
        ranking.sync(feed, lambda info: verdicts[infos.index(info)])


def test_a_reader_left_behind_by_the_feed_starts_over() -> None:
    feed = ChangeFeed()
    feed.LIMIT = 4
    for name in "abcdef":
        feed.touch(name)
    assert feed.since(0) is None
    assert feed.since(feed.now - 2) == ["e", "f"]


def node(i: int, rng: random.Random) -> Obj:
    name = f"node-{i:04}"
    spec: Obj = {}
    if rng.random() < 0.05:
        spec["taints"] = [{"key": "dedicated", "effect": "NoSchedule"}]
    cpu = rng.choice(["2", "4", "8"])
    return {"metadata": {"name": name, "resourceVersion": str(rng.random()),
                         "labels": {"kubernetes.io/hostname": name}},
            "spec": spec,
            "status": {"allocatable": {"cpu": cpu, "memory": "16Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(i: int, cpu: str) -> Obj:
    return {"metadata": {"name": f"p{i}", "namespace": "default", "uid": f"uid-{i}"},
            "spec": {"containers": [{"name": "c", "image": "netplane/echo", "resources": {
                "requests": {"cpu": cpu, "memory": "256Mi"}}}]}}


@pytest.mark.parametrize("seed", range(4))
def test_decisions_through_rankings_are_the_walks(seed: int) -> None:
    # 300 nodes: kube's filtering stops at 100 that fit, so windows matter.
    rng = random.Random(seed)
    profile = default_profile()
    cache, memo = NodeCache(), Equivalence()
    for i in range(300):
        cache.set_node(node(i, rng))
    placed: list[Obj] = []
    start = 0
    fast = 0
    for i in range(400):
        event = rng.random()
        if event < 0.05 and placed:  # a pod goes
            cache.remove_pod(placed.pop(rng.randrange(len(placed)))["metadata"]["uid"])
        elif event < 0.08:  # a node changes: cordoned, or not
            changed = node(rng.randrange(300), rng)
            changed["spec"]["unschedulable"] = rng.random() < 0.5
            cache.set_node(changed)
        elif event < 0.09:  # a node comes (the rankings start over)
            cache.set_node(node(300 + i, rng))
        p = pod(i, rng.choice(["100m", "500m", "1500m"]))
        snap = cache.snapshot()
        walked = schedule(p, snap, profile, start=start)
        got = schedule(p, snap, profile, start=start, cache=memo)
        assert snap.feed is not None
        fast += any(r.pos == snap.feed.now for r in memo.rankings.values())
        assert (got.node, got.processed) == (walked.node, walked.processed), i
        if got.node is None:
            continue
        start = (start + got.processed) % len(snap)
        cache.assume(p, got.node)
        placed.append(p)
    assert fast > 300  # the rankings decided most pods, not the walk
