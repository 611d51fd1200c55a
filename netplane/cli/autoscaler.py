"""``netplane describe hpa``: a HorizontalPodAutoscaler's body as kubectl's
describeHorizontalPodAutoscalerV2 lays it out (metrics as current / target,
replica bounds, behavior, the target's pods and the conditions)."""

from __future__ import annotations

from netplane.api.meta import Obj

Lines = list[str]


def aligned(lines: Lines) -> Lines:
    """Go's tabwriter as kubectl sets it up (padding 2): within each run of
    lines with tabs, every cell but the last of a line is padded to the
    widest of its column."""
    out: Lines = []
    run: list[list[str]] = []

    def flush() -> None:
        widths: dict[int, int] = {}
        for cells in run:
            for j, cell in enumerate(cells[:-1]):
                widths[j] = max(widths.get(j, 0), len(cell))
        out.extend("".join(c.ljust(widths[j] + 2) if j < len(cells) - 1 else c
                           for j, c in enumerate(cells)) for cells in run)
        run.clear()

    for line in lines:
        if "\t" in line:
            run.append(line.split("\t"))
        else:
            flush()
            out.append(line)
    flush()
    return out


def _current(hpa: Obj, i: int, field: str) -> Obj | None:
    statuses = (hpa.get("status") or {}).get("currentMetrics") or []
    if i >= len(statuses):
        return None
    entry = statuses[i].get(field)
    return (entry.get("current") or {}) if isinstance(entry, dict) else None


def _resource(src: Obj, now: Obj | None, lead: str) -> str:
    target = src.get("target") or {}
    if target.get("averageValue") is not None:
        shown = (now or {}).get("averageValue", "<unknown>")
        return f"{lead}:\t{shown} / {target['averageValue']}"
    shown = "<unknown>"
    if now and now.get("averageUtilization") is not None:
        shown = f"{now['averageUtilization']}% ({now.get('averageValue', '0')})"
    want = target.get("averageUtilization")
    want_text = "<auto>" if want is None else f"{want}%"
    return f"{lead}  (as a percentage of request):\t{shown} / {want_text}"


def _valued(src: Obj, now: Obj | None, lead: str) -> str:
    target = src.get("target") or {}
    if target.get("averageValue") is not None:
        shown = (now or {}).get("averageValue", "<unknown>")
        return f"{lead} (target average value):\t{shown} / {target['averageValue']}"
    return f"{lead} (target value):\t{(now or {}).get('value', '<unknown>')} / " \
           f"{target.get('value')}"


def metric_line(hpa: Obj, i: int, m: Obj) -> str:
    kind = m.get("type")
    if kind == "Resource":
        src = m.get("resource") or {}
        return _resource(src, _current(hpa, i, "resource"),
                         f"  resource {src.get('name')} on pods")
    if kind == "ContainerResource":
        src = m.get("containerResource") or {}
        return _resource(src, _current(hpa, i, "containerResource"),
                         f"  resource {src.get('name')} of container \"{src.get('container')}\""
                         " on pods")
    if kind == "Pods":
        src = m.get("pods") or {}
        now = _current(hpa, i, "pods") or {}
        return f"  \"{(src.get('metric') or {}).get('name')}\" on pods:\t" \
               f"{now.get('averageValue', '<unknown>')} / " \
               f"{(src.get('target') or {}).get('averageValue')}"
    if kind == "Object":
        src = m.get("object") or {}
        ref = src.get("describedObject") or {}
        return _valued(src, _current(hpa, i, "object"),
                       f"  \"{(src.get('metric') or {}).get('name')}\" on "
                       f"{ref.get('kind')}/{ref.get('name')}")
    if kind == "External":
        src = m.get("external") or {}
        return _valued(src, _current(hpa, i, "external"),
                       f"  \"{(src.get('metric') or {}).get('name')}\"")
    return f"  <unknown metric type \"{kind}\">"


def _direction(title: str, rules: Obj | None) -> Lines:
    """kubectl's printDirectionBehavior."""
    if rules is None:
        return []
    out = [f"  {title}:"]
    if rules.get("stabilizationWindowSeconds") is not None:
        out.append(f"    Stabilization Window: {rules['stabilizationWindowSeconds']} seconds")
    if rules.get("policies"):
        out.append(f"    Select Policy: {rules.get('selectPolicy') or 'Max'}")
        out.append("    Policies:")
        out += [f"      - Type: {p.get('type')}\tValue: {p.get('value')}\t"
                f"Period: {p.get('periodSeconds')} seconds" for p in rules["policies"]]
    return out


def lines(hpa: Obj) -> Lines:
    spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    out = [f"Reference:\t{ref.get('kind', '')}/{ref.get('name', '')}",
           "Metrics:\t( current / target )",
           *(metric_line(hpa, i, m) for i, m in enumerate(spec.get("metrics") or [])),
           f"Min replicas:\t{spec.get('minReplicas', '<unset>')}",
           f"Max replicas:\t{spec.get('maxReplicas', 0)}"]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        out.append("Behavior:")
        out += _direction("Scale Up", behavior.get("scaleUp"))
        out += _direction("Scale Down", behavior.get("scaleDown"))
    out.append(f"{ref.get('kind', '')} pods:\t{status.get('currentReplicas', 0)} current / "
               f"{status.get('desiredReplicas', 0)} desired")
    conds = status.get("conditions") or []
    if conds:
        out += ["Conditions:", "  Type\tStatus\tReason\tMessage", "  ----\t------\t------\t-------"]
        out += [f"  {c.get('type')}\t{c.get('status')}\t{c.get('reason', '')}\t"
                f"{c.get('message', '')}" for c in conds]
    return aligned(out)
