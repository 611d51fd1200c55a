"""The Job controller's rules, as pure functions of a Job and its pods (kube's
pkg/controller/job: indexed_job_utils.go, pod_failure_policy.go,
backoff_utils.go, and the pod ordering of controller_utils.go).

A pod's end: its phase, Succeeded or Failed, written by its node agent. A
pod deleted and already stopped by its agent (``deletionGracePeriodSeconds``
0) or that never ran also counts as Failed: netplane's agent removes a pod
without writing a terminal phase first, where the kubelet writes Failed."""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass

from netplane.api import batch, meta
from netplane.api.meta import Obj

BACKOFF_START = 10.0  # seconds, doubled at each failure in a row
# kube 1.32's MaxJobPodFailureBackOff (the docs still say six minutes).
BACKOFF_MAX = 600.0
SUCCEEDED, FAILED = "Succeeded", "Failed"

Interval = tuple[int, int]  # first and last index, both included


# -- pods --

def phase(pod: Obj) -> str:
    """Succeeded, Failed, or the pod's phase while it runs."""
    value = str((pod.get("status") or {}).get("phase") or "Pending")
    if value in (SUCCEEDED, FAILED):
        return value
    if meta.is_deleting(pod) and not meta.meta(pod).get("deletionGracePeriodSeconds"):
        return FAILED
    return value


def finished(pod: Obj) -> bool:
    return phase(pod) in (SUCCEEDED, FAILED)


def active(pod: Obj) -> bool:
    """controller.FilterActivePods: not finished and not being deleted."""
    return not finished(pod) and not meta.is_deleting(pod)


def terminating(pod: Obj) -> bool:
    return meta.is_deleting(pod) and not finished(pod)


def tracked(pod: Obj) -> bool:
    return batch.TRACKING_FINALIZER in (meta.meta(pod).get("finalizers") or [])


def only_replace_failed(job: Obj) -> bool:
    spec = job.get("spec") or {}
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def failed(pod: Obj, job: Obj) -> bool:
    """kube's isPodFailed: a deleted pod counts as failed unless the Job
    replaces only failed pods."""
    if phase(pod) == FAILED:
        return True
    if only_replace_failed(job):
        return False
    return meta.is_deleting(pod) and phase(pod) != SUCCEEDED


def _seconds(stamp: str | None) -> float | None:
    return meta.parse_time(stamp).timestamp() if stamp else None


def finished_time(pod: Obj) -> float:
    """When a pod ended: its containers' finish, else when it stopped being
    ready, else its deletion, else its creation (kube's getFinishedTime)."""
    ends = [((s.get("state") or {}).get("terminated") or {}).get("finishedAt")
            for s in (pod.get("status") or {}).get("containerStatuses") or []]
    if ends and all(ends):
        return max(meta.parse_time(str(e)).timestamp() for e in ends)
    ready = meta.condition(pod, "Ready")
    if ready is not None and ready.get("status") == "False" and ready.get("lastTransitionTime"):
        return meta.parse_time(str(ready["lastTransitionTime"])).timestamp()
    md = meta.meta(pod)
    deleted = _seconds(md.get("deletionTimestamp"))
    if deleted is not None:
        return deleted - float(md.get("deletionGracePeriodSeconds") or 0)
    return _seconds(md.get("creationTimestamp")) or 0.0


def _restarts(pod: Obj) -> int:
    return sum(int(s.get("restartCount", 0))
               for s in (pod.get("status") or {}).get("containerStatuses") or [])


def _ready_since(pod: Obj) -> float:
    cond = meta.condition(pod, "Ready") or {}
    return _seconds(cond.get("lastTransitionTime")) or 0.0


def removal_order(pod: Obj) -> tuple[int, int, int, float, int, float]:
    """controller.ActivePods: the pods to delete first sort first:
    unscheduled, pending, not ready, ready the shortest, restarted the
    most, the newest."""
    ph = str((pod.get("status") or {}).get("phase") or "Pending")
    rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(ph, 0)
    ready = meta.pod_ready(pod)
    return (1 if (pod.get("spec") or {}).get("nodeName") else 0, rank, 1 if ready else 0,
            -_ready_since(pod) if ready else 0.0, -_restarts(pod),
            -(_seconds(meta.meta(pod).get("creationTimestamp")) or 0.0))


# -- completion indexes --

def indexed(job: Obj) -> bool:
    return (job.get("spec") or {}).get("completionMode") == batch.INDEXED


def completion_index(pod: Obj) -> int | None:
    value = (meta.meta(pod).get("annotations") or {}).get(batch.COMPLETION_INDEX)
    try:
        ix = int(str(value))
    except ValueError:
        return None
    return ix if ix >= 0 else None


def valid_index(pod: Obj, completions: int) -> int | None:
    ix = completion_index(pod)
    return ix if ix is not None and ix < completions else None


def parse_intervals(text: str, completions: int) -> list[Interval]:
    """``0-2,4`` as intervals, dropping what is at or past ``completions``."""
    out: list[Interval] = []
    for part in (text or "").split(","):
        first_text, _, last_text = part.partition("-")
        try:
            first = int(first_text)
            last = int(last_text) if last_text else first
        except ValueError:
            continue
        if first >= completions:
            break
        last = min(last, completions - 1)
        if out and out[-1][1] == first - 1:
            out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return out


def with_indexes(intervals: list[Interval], indexes: list[int] | set[int]) -> list[Interval]:
    """The intervals with ``indexes`` added, merged."""
    out: list[Interval] = []
    for first, last in sorted([*intervals, *((i, i) for i in indexes)]):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def total(intervals: list[Interval]) -> int:
    return sum(last - first + 1 for first, last in intervals)


def format_intervals(intervals: list[Interval]) -> str:
    """``0-2,4``; two neighbours are written ``5,6``, as kube writes them."""
    parts = []
    for first, last in intervals:
        if last == first:
            parts.append(str(first))
        elif last == first + 1:
            parts.append(f"{first},{last}")
        else:
            parts.append(f"{first}-{last}")
    return ",".join(parts)


def contains(intervals: list[Interval], ix: int) -> bool:
    return any(first <= ix <= last for first, last in intervals)


def first_pending_indexes(succeeded: list[Interval], busy: set[int], count: int,
                          completions: int) -> list[int]:
    """The lowest ``count`` indexes below ``completions`` that neither
    succeeded nor have a pod (``busy``)."""
    taken = with_indexes(succeeded, busy)
    out: list[int] = []
    ix = 0
    while ix < completions and len(out) < count:
        if contains(taken, ix):
            ix = next(last for first, last in taken if first <= ix <= last) + 1
            continue
        out.append(ix)
        ix += 1
    return out


def pods_for_removal(job: Obj, pods: list[Obj], at_least: int) -> list[Obj]:
    """activePodsForRemoval: for an Indexed Job, pods without a valid index
    and all but one pod of a repeated index first; then by removal order."""
    remove: list[Obj] = []
    left = pods
    if indexed(job):
        completions = int(job["spec"].get("completions") or 0)
        left, by_index = [], {}
        for p in sorted(pods, key=removal_order, reverse=True):
            ix = valid_index(p, completions)
            if ix is None or ix in by_index:
                remove.append(p)
            else:
                by_index[ix] = p
                left.append(p)
    if len(remove) < at_least:
        remove += sorted(left, key=removal_order)[:at_least - len(remove)]
    return remove


def pod_generate_name(job_name: str, ix: int) -> str:
    """NAME-INDEX-, shortened so that the generated name fits 63 characters."""
    appendix = f"-{ix}-"
    return job_name[:58 - len(appendix)] + appendix


def pod_for(job: Obj, ix: int | None) -> Obj:
    """A pod of the Job's template, held by the tracking finalizer, with its
    completion index (annotation, label, env, hostname) for Indexed Jobs."""
    template = copy.deepcopy(job["spec"]["template"])
    md = template.get("metadata") or {}
    spec = template.get("spec") or {}
    labels, notes = dict(md.get("labels") or {}), dict(md.get("annotations") or {})
    finalizers = list(md.get("finalizers") or [])
    if batch.TRACKING_FINALIZER not in finalizers:
        finalizers.append(batch.TRACKING_FINALIZER)
    name = meta.name(job)
    generate = f"{name}-"
    if ix is not None:
        notes[batch.COMPLETION_INDEX] = labels[batch.COMPLETION_INDEX] = str(ix)
        spec["hostname"] = f"{name}-{ix}"
        generate = pod_generate_name(name, ix)
        ref = {"fieldRef": {"fieldPath": f"metadata.labels['{batch.COMPLETION_INDEX}']"}}
        for key in ("initContainers", "containers"):
            for c in spec.get(key) or []:
                env = c.setdefault("env", [])
                if not any(e.get("name") == batch.COMPLETION_INDEX_ENV for e in env):
                    env.append({"name": batch.COMPLETION_INDEX_ENV, "valueFrom": ref})
    pod_md: Obj = {"generateName": generate, "namespace": meta.namespace(job), "labels": labels,
                   "finalizers": finalizers, "ownerReferences": [meta.owner_ref(job)]}
    if notes:
        pod_md["annotations"] = notes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_md, "spec": spec}


# -- podFailurePolicy --

@dataclass(frozen=True)
class PolicyMatch:
    """What a failed pod means under the Job's podFailurePolicy."""

    action: str | None = None  # the rule's action; None: no rule matched
    fail_message: str | None = None  # a FailJob rule matched

    @property
    def counts(self) -> bool:
        """Whether the failure counts towards backoffLimit (not Ignore)."""
        return self.action != "Ignore"


def _exit_code_match(pod: Obj, rule: Obj) -> Obj | None:
    req = rule["onExitCodes"]
    values = set(req.get("values") or [])
    for key in ("containerStatuses", "initContainerStatuses"):
        for cs in (pod.get("status") or {}).get(key) or []:
            term = (cs.get("state") or {}).get("terminated")
            if term is None or term.get("exitCode", 0) == 0:
                continue
            if req.get("containerName") not in (None, cs.get("name")):
                continue
            code = int(term["exitCode"])
            if (req.get("operator") == "In") == (code in values):
                return dict(cs)
    return None


def _condition_match(pod: Obj, rule: Obj) -> Obj | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        for pattern in rule["onPodConditions"]:
            if cond.get("type") == pattern.get("type") and \
                    cond.get("status") == pattern.get("status", "True"):
                return dict(cond)
    return None


def match_policy(job: Obj, pod: Obj) -> PolicyMatch:
    """matchPodFailurePolicy: the first rule a failed pod matches."""
    policy = (job.get("spec") or {}).get("podFailurePolicy")
    if not policy:
        return PolicyMatch()
    where = f"{meta.namespace(pod)}/{meta.name(pod)}"
    for i, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action")
        if action == "FailIndex":
            continue  # needs backoffLimitPerIndex, which netplane does not act on
        if rule.get("onExitCodes") is not None:
            cs = _exit_code_match(pod, rule)
            if cs is None:
                continue
            code = cs["state"]["terminated"]["exitCode"]
            msg = (f"Container {cs.get('name')} for pod {where} failed with exit code {code} "
                   f"matching {action} rule at index {i}")
        elif rule.get("onPodConditions") is not None:
            cond = _condition_match(pod, rule)
            if cond is None:
                continue
            msg = f"Pod {where} has condition {cond.get('type')} matching {action} rule at " \
                  f"index {i}"
        else:
            continue
        return PolicyMatch(action, msg if action == "FailJob" else None)
    return PolicyMatch()


# -- back-off --

@dataclass(frozen=True)
class Backoff:
    """Failures since the last success, and when the last one was."""

    failures: int = 0
    last_failure: float | None = None


def next_backoff(prev: Backoff, succeeded: list[Obj], failed_pods: list[Obj]) -> Backoff:
    """kube's newBackoffRecord: a success resets the count; only failures
    after the latest success count then."""
    fails = sorted(finished_time(p) for p in failed_pods)
    if not succeeded:
        if not fails:
            return prev
        return Backoff(prev.failures + len(fails), fails[-1])
    last_success = max(finished_time(p) for p in succeeded)
    after = [t for t in fails if t > last_success]
    return Backoff(len(after), after[-1] if after else None)


def backoff_delay(failures: int) -> float:
    """10 s, doubled per failure in a row, at most BACKOFF_MAX."""
    if failures <= 0:
        return 0.0
    return float(min(BACKOFF_START * 2.0 ** (failures - 1), BACKOFF_MAX))


def backoff_remaining(record: Backoff, now: float) -> float:
    if record.failures == 0 or record.last_failure is None:
        return 0.0
    return max(backoff_delay(record.failures) - (now - float(record.last_failure)), 0.0)


# -- conditions --

def stamp(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(job: Obj, kind: str) -> Obj | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return dict(c)
    return None


def new_condition(kind: str, reason: str, message: str, now: float,
                  status: str = "True") -> Obj:
    return {"type": kind, "status": status, "lastProbeTime": stamp(now),
            "lastTransitionTime": stamp(now), "reason": reason, "message": message}


def ensure_condition(job: Obj, cond: Obj) -> bool:
    """ensureJobConditionStatus: replaced when it differs; a False one is not
    added. Returns whether the list changed."""
    conds: list[Obj] = job["status"].setdefault("conditions", [])
    for i, c in enumerate(conds):
        if c.get("type") == cond["type"]:
            if (c.get("status"), c.get("reason"), c.get("message")) == \
                    (cond["status"], cond["reason"], cond["message"]):
                return False
            conds[i] = cond
            return True
    if cond["status"] == "False":
        if not conds:
            del job["status"]["conditions"]
        return False
    conds.append(cond)
    return True


def job_finished(job: Obj) -> str | None:
    """Complete or Failed, once the Job has that condition."""
    for kind in ("Complete", "Failed"):
        if condition(job, kind) is not None:
            return kind
    return None
