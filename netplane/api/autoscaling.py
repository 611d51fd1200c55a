"""HorizontalPodAutoscalers (autoscaling/v2, and v1 as a view of the same
objects), as kube's pkg/apis/autoscaling judges them: what a spec may say,
the defaults it gets (a CPU target of 80%, minReplicas 1, behavior rules
filled in), and the conversion between the two versions. Pure."""

from __future__ import annotations

import copy
from typing import Any

from netplane.api import quantity
from netplane.api.meta import Obj
from netplane.api.validation import Errors, FieldError, path_segment

API_V2, API_V1 = "autoscaling/v2", "autoscaling/v1"
DEFAULT_CPU_UTILIZATION = 80
MAX_PERIOD_SECONDS = 1800
MAX_STABILIZATION_WINDOW_SECONDS = 3600
# MetricSpec.type -> the field that holds its source.
SOURCES = {"Object": "object", "Pods": "pods", "Resource": "resource", "External": "external",
           "ContainerResource": "containerResource"}
TARGET_TYPES = ("Utilization", "Value", "AverageValue")
SELECT_POLICIES = ("Disabled", "Max", "Min")
POLICY_TYPES = ("Percent", "Pods")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _invalid(path: str, value: Any, why: str) -> FieldError:
    shown = f'"{value}"' if isinstance(value, str) else repr(value)
    return FieldError(path, f"Invalid value: {shown}: {why}")


def _required(path: str, why: str = "") -> FieldError:
    return FieldError(path, f"Required value{': ' + why if why else ''}", "FieldValueRequired")


def _not_supported(path: str, value: Any, allowed: tuple[str, ...]) -> FieldError:
    return FieldError(path, f'Unsupported value: "{value}": supported values: '
                      + ", ".join(f'"{a}"' for a in sorted(allowed)), "FieldValueNotSupported")


def _forbidden(path: str, why: str) -> FieldError:
    return FieldError(path, f"Forbidden: {why}", "FieldValueForbidden")


# -- validation (kube's ValidateHorizontalPodAutoscaler) --

def validate(hpa: Obj, errs: Errors) -> None:
    spec = hpa.get("spec")
    if not isinstance(spec, dict):
        errs.append(_required("spec"))
        return
    least, most = spec.get("minReplicas"), spec.get("maxReplicas", 0)
    if least is not None and (not _int(least) or least < 1):
        errs.append(_invalid("spec.minReplicas", least, "must be greater than or equal to 1"))
    if not _int(most) or most < 1:
        errs.append(_invalid("spec.maxReplicas", most, "must be greater than 0"))
    elif _int(least) and most < least:
        errs.append(_invalid("spec.maxReplicas", most,
                             "must be greater than or equal to `minReplicas`"))
    object_reference(spec.get("scaleTargetRef"), "spec.scaleTargetRef", errs)
    metrics = spec.get("metrics") or []
    if not isinstance(metrics, list):
        errs.append(FieldError("spec.metrics", "must be a list of MetricSpec objects"))
        metrics = []
    for i, m in enumerate(metrics):
        metric_spec(m if isinstance(m, dict) else {}, f"spec.metrics[{i}]", errs)
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        for way in ("scaleUp", "scaleDown"):
            if isinstance(behavior.get(way), dict):
                scaling_rules(behavior[way], f"spec.behavior.{way}", errs)


def validate_status(hpa: Obj, errs: Errors) -> None:
    """kube's ValidateHorizontalPodAutoscalerStatusUpdate."""
    status = hpa.get("status") or {}
    for key in ("currentReplicas", "desiredReplicas"):
        value = status.get(key, 0)
        if not _int(value) or value < 0:
            errs.append(_invalid(f"status.{key}", value, "must be greater than or equal to 0"))


def object_reference(ref: Any, path: str, errs: Errors) -> None:
    """kube's ValidateCrossVersionObjectReference."""
    ref = ref if isinstance(ref, dict) else {}
    for key in ("kind", "name"):
        if not ref.get(key):
            errs.append(_required(f"{path}.{key}"))
        else:
            path_segment(ref[key], f"{path}.{key}", errs)


def metric_spec(m: Obj, path: str, errs: Errors) -> None:
    kind = m.get("type")
    if not kind:
        errs.append(_required(f"{path}.type", "must specify a metric source type"))
    present = [f for f in SOURCES.values() if m.get(f) is not None]
    if present:
        _SOURCE_CHECKS[present[0]](m[present[0]], f"{path}.{present[0]}", errs)
    expected = SOURCES.get(str(kind))
    if expected is None:
        errs.append(_not_supported(f"{path}.type", kind or "", tuple(SOURCES)))
    elif m.get(expected) is None:
        errs.append(_required(f"{path}.{expected}",
                              "must populate information for the given metric source"))
    for other in present:
        if len(present) > 1 and other != expected:
            errs.append(_forbidden(f"{path}.{other}", "must populate the given metric source "
                                   "only"))


def metric_target(value: Any, path: str, errs: Errors) -> Obj:
    t: Obj = value if isinstance(value, dict) else {}
    if not t.get("type"):
        errs.append(_required(f"{path}.type", "must specify a metric target type"))
    if t.get("type") not in TARGET_TYPES:
        errs.append(_invalid(f"{path}.type", t.get("type") or "",
                             "must be either Utilization, Value, or AverageValue"))
    for key in ("value", "averageValue"):
        if t.get(key) is not None and not _positive(t[key]):
            errs.append(_invalid(f"{path}.{key}", t[key], "must be positive"))
    util = t.get("averageUtilization")
    if util is not None and (not _int(util) or util < 1):
        errs.append(_invalid(f"{path}.averageUtilization", util, "must be greater than 0"))
    return t


def _positive(q: Any) -> bool:
    try:
        return quantity.quantity(str(q)) > 0
    except ValueError:
        return False


def metric_identifier(ident: Any, path: str, errs: Errors) -> None:
    name = (ident or {}).get("name") if isinstance(ident, dict) else None
    if not name:
        errs.append(_required(f"{path}.name", "must specify a metric name"))
    else:
        path_segment(name, f"{path}.name", errs)


def _resource_target(t: Obj, path: str, errs: Errors) -> None:
    if t.get("averageUtilization") is None and t.get("averageValue") is None:
        errs.append(_required(f"{path}.averageUtilization",
                              "must set either a target raw value or a target utilization"))
    if t.get("averageUtilization") is not None and t.get("averageValue") is not None:
        errs.append(_forbidden(f"{path}.averageValue",
                               "may not set both a target raw value and a target utilization"))


def _resource_source(src: Any, path: str, errs: Errors) -> None:
    src = src if isinstance(src, dict) else {}
    if not src.get("name"):
        errs.append(_required(f"{path}.name", "must specify a resource name"))
    _resource_target(metric_target(src.get("target"), f"{path}.target", errs),
                     f"{path}.target", errs)


def _container_source(src: Any, path: str, errs: Errors) -> None:
    src = src if isinstance(src, dict) else {}
    if not src.get("container"):
        errs.append(_required(f"{path}.container", "must specify a container"))
    _resource_source(src, path, errs)


def _pods_source(src: Any, path: str, errs: Errors) -> None:
    src = src if isinstance(src, dict) else {}
    metric_identifier(src.get("metric"), f"{path}.metric", errs)
    t = metric_target(src.get("target"), f"{path}.target", errs)
    if t.get("averageValue") is None:
        errs.append(_required(f"{path}.target.averageValue",
                              "must specify a positive target averageValue"))


def _object_source(src: Any, path: str, errs: Errors) -> None:
    src = src if isinstance(src, dict) else {}
    object_reference(src.get("describedObject"), f"{path}.describedObject", errs)
    metric_identifier(src.get("metric"), f"{path}.metric", errs)
    t = metric_target(src.get("target"), f"{path}.target", errs)
    if t.get("value") is None and t.get("averageValue") is None:
        errs.append(_required(f"{path}.target.averageValue",
                              "must set either a target value or averageValue"))


def _external_source(src: Any, path: str, errs: Errors) -> None:
    src = src if isinstance(src, dict) else {}
    metric_identifier(src.get("metric"), f"{path}.metric", errs)
    t = metric_target(src.get("target"), f"{path}.target", errs)
    if t.get("value") is None and t.get("averageValue") is None:
        errs.append(_required(f"{path}.target.averageValue", "must set either a target value "
                              "for metric or a per-pod target"))
    if t.get("value") is not None and t.get("averageValue") is not None:
        errs.append(_forbidden(f"{path}.target.value", "may not set both a target value for "
                               "metric and a per-pod target"))


_SOURCE_CHECKS = {"object": _object_source, "pods": _pods_source, "resource": _resource_source,
                  "external": _external_source, "containerResource": _container_source}


def scaling_rules(rules: Obj, path: str, errs: Errors) -> None:
    """kube's validateScalingRules."""
    window = rules.get("stabilizationWindowSeconds")
    if window is not None and (not _int(window) or window < 0):
        errs.append(_invalid(f"{path}.stabilizationWindowSeconds", window,
                             "must be greater than or equal to zero"))
    elif window is not None and window > MAX_STABILIZATION_WINDOW_SECONDS:
        errs.append(_invalid(f"{path}.stabilizationWindowSeconds", window,
                             f"must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"))
    select = rules.get("selectPolicy")
    if select is not None and select not in SELECT_POLICIES:
        errs.append(_not_supported(f"{path}.selectPolicy", select, SELECT_POLICIES))
    policies = rules.get("policies") or []
    if not policies:
        errs.append(_required(f"{path}.policies", "must specify at least one Policy"))
    for i, p in enumerate(policies if isinstance(policies, list) else []):
        p = p if isinstance(p, dict) else {}
        at = f"{path}.policies[{i}]"
        if p.get("type") not in POLICY_TYPES:
            errs.append(_not_supported(f"{at}.type", p.get("type") or "", POLICY_TYPES))
        for key in ("value", "periodSeconds"):
            value = p.get(key, 0)
            if not _int(value) or value <= 0:
                errs.append(_invalid(f"{at}.{key}", value, "must be greater than zero"))
            elif key == "periodSeconds" and value > MAX_PERIOD_SECONDS:
                errs.append(_invalid(f"{at}.{key}", value,
                                     f"must be less than or equal to {MAX_PERIOD_SECONDS}"))


# -- defaults (kube's SetDefaults_HorizontalPodAutoscaler) --

def default_scale_up() -> Obj:
    return {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                         {"type": "Percent", "value": 100, "periodSeconds": 15}]}


def default_scale_down() -> Obj:
    """No window: the controller's --horizontal-pod-autoscaler-downscale-
    stabilization (300 s) applies, as in kube."""
    return {"selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def cpu_metric(percent: int) -> Obj:
    return {"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": percent}}}


def defaults(hpa: Obj) -> None:
    spec = hpa.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [cpu_metric(DEFAULT_CPU_UTILIZATION)]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):  # only a given behavior is filled in, as in kube
        for way, fallback in (("scaleUp", default_scale_up()),
                              ("scaleDown", default_scale_down())):
            rules = behavior.get(way)
            if not isinstance(rules, dict):
                behavior[way] = fallback
                continue
            for key, value in fallback.items():
                if rules.get(key) is None:
                    rules[key] = value


# -- autoscaling/v1, a view of the stored v2 objects --

def _cpu_target(spec: Obj) -> int | None:
    for m in spec.get("metrics") or []:
        r = m.get("resource") or {}
        target = r.get("target") or {}
        if m.get("type") == "Resource" and r.get("name") == "cpu" and \
                target.get("type") == "Utilization":
            value = target.get("averageUtilization")
            return int(value) if value is not None else None
    return None


def _cpu_current(status: Obj) -> int | None:
    for m in status.get("currentMetrics") or []:
        r = m.get("resource") or {}
        if m.get("type") == "Resource" and r.get("name") == "cpu":
            value = (r.get("current") or {}).get("averageUtilization")
            return int(value) if value is not None else None
    return None


def to_v1(hpa: Obj) -> Obj:
    """A stored v2 HPA as autoscaling/v1 shows it: the CPU target only."""
    out: Obj = {"apiVersion": API_V1, "kind": "HorizontalPodAutoscaler",
                "metadata": copy.deepcopy(hpa.get("metadata") or {})}
    spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
    out["spec"] = {k: copy.deepcopy(spec[k]) for k in ("scaleTargetRef", "minReplicas",
                                                       "maxReplicas") if k in spec}
    target = _cpu_target(spec)
    if target is not None:
        out["spec"]["targetCPUUtilizationPercentage"] = target
    out["status"] = {k: status[k] for k in ("observedGeneration", "lastScaleTime",
                                            "currentReplicas", "desiredReplicas") if k in status}
    out["status"].setdefault("currentReplicas", 0)
    out["status"].setdefault("desiredReplicas", 0)
    current = _cpu_current(status)
    if current is not None:
        out["status"]["currentCPUUtilizationPercentage"] = current
    return out


def from_v1(body: Obj, stored: Obj | None) -> Obj:
    """A v1 body as the v2 object to store. The CPU target replaces the
    stored CPU metric; the stored object's other metrics and behavior,
    which v1 cannot say, are kept."""
    spec_in, prior = body.get("spec") or {}, (stored or {}).get("spec") or {}
    spec: Obj = {k: copy.deepcopy(spec_in[k]) for k in ("scaleTargetRef", "minReplicas",
                                                        "maxReplicas") if k in spec_in}
    others = [m for m in prior.get("metrics") or [] if _cpu_target({"metrics": [m]}) is None]
    target = spec_in.get("targetCPUUtilizationPercentage")
    cpu = [cpu_metric(target)] if isinstance(target, int) else []
    if cpu or others:
        spec["metrics"] = cpu + copy.deepcopy(others)
    if "behavior" in prior:
        spec["behavior"] = copy.deepcopy(prior["behavior"])
    out: Obj = {"apiVersion": API_V2, "kind": "HorizontalPodAutoscaler",
                "metadata": copy.deepcopy(body.get("metadata") or {}), "spec": spec}
    status = dict((stored or {}).get("status") or {})
    status.update({k: v for k, v in (body.get("status") or {}).items()
                   if k != "currentCPUUtilizationPercentage"})
    if status:
        out["status"] = status
    return out
