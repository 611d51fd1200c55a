"""``netplane explain-schedule POD [-n NS]``: why the scheduler puts a pod
where it does. The scheduler's own code decides, over the same caches it
keeps, as if the pod were pending now: for each node, the filter that
rejected it and why, or each score plugin's raw score, normalised score
and weight, and the total; the node that wins, or kube's FitError message
and what preemption would do."""

from __future__ import annotations

from netplane.api import meta, priority, resources
from netplane.api.meta import Obj
from netplane.cli.objects import CliError
from netplane.cluster.client import Client, NotFound
from netplane.cluster.scheduler.framework import Profile, Trace
from netplane.cluster.scheduler.loop import Scheduler


def render(pod: Obj, profile: Profile, trace: Trace, chosen: str | None,
           message: str) -> list[str]:
    spec = pod.get("spec") or {}
    head = f"pod {meta.namespaced_name(pod)}: priority {priority.of(pod)}, profile " \
           f"{profile.name}"
    if spec.get("nodeName"):
        head += f", bound to {spec['nodeName']} (judged again as if pending now)"
    out = [head]
    if trace.pre_filter is not None:
        plugin, st = trace.pre_filter
        out.append(f"  every node rejected by {plugin} before filtering: {st.reason}")
    width = max((len(n) for n in trace.verdicts), default=4)
    scored = [n for n, v in trace.verdicts.items() if v is None]
    skipped = [p for p, s in trace.scores.items() if s is None]
    for node, verdict in trace.verdicts.items():
        if verdict is not None:
            plugin, st = verdict
            out.append(f"  {node:<{width}}  rejected by {plugin}: {st.reason}")
            continue
        mark = "  <- chosen" if node == chosen else ""
        out.append(f"  {node:<{width}}  fits, total {trace.totals.get(node, 0)}{mark}")
        for plugin, by_node in trace.scores.items():
            if by_node is None:
                continue
            raw, normal = by_node[node]
            weight = trace.weights[plugin]
            out.append(f"  {'':<{width}}    {plugin:<32} {normal:>3} x{weight} = "
                       f"{normal * weight:>4}   (raw {raw})")
    if skipped and scored:
        out.append(f"  the same for every node, so not counted: {', '.join(skipped)}")
    if chosen is not None:
        why = "the only node that fits" if len(scored) == 1 else \
            "the highest total; a tie goes to the first name"
        out.append(f"decision: {chosen} ({why})")
    else:
        out.append(f"decision: none. {message}")
    return out


async def explain(client: Client, name: str, *, namespace: str | None) -> list[str]:
    ns = namespace or "default"
    try:
        pod = await client.get(resources.POD, name, ns)
    except NotFound:
        raise CliError(f'Error from server (NotFound): pods "{name}" not found') from None
    scheduler = Scheduler(client)
    async with scheduler.synced():
        profile, trace, chosen, message = scheduler.explain(pod)
    return render(pod, profile, trace, chosen, message)
