"""batch/v1 Job and CronJob: the defaults kube-apiserver sets (SetDefaults_Job,
SetDefaults_CronJob and the Job strategy's generated selector), their
validation (pkg/apis/batch/validation, the fields that matter), the fields
an update may not change, and the names both controllers and the API share."""

from __future__ import annotations

import json
import re
from typing import Any

from netplane.api import cron, defaults, selectors, validation
from netplane.api.meta import Obj
from netplane.api.validation import Errors, FieldError

GROUP = "batch.kubernetes.io"
CONTROLLER_UID = f"{GROUP}/controller-uid"
JOB_NAME = f"{GROUP}/job-name"
LEGACY_CONTROLLER_UID, LEGACY_JOB_NAME = "controller-uid", "job-name"
COMPLETION_INDEX = f"{GROUP}/job-completion-index"  # annotation and label
TRACKING_FINALIZER = f"{GROUP}/job-tracking"
SCHEDULED_TIMESTAMP = f"{GROUP}/cronjob-scheduled-timestamp"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"

NON_INDEXED, INDEXED = "NonIndexed", "Indexed"
RESTART_POLICIES = ("OnFailure", "Never")
POLICY_ACTIONS = ("FailJob", "FailIndex", "Ignore", "Count")
CONCURRENCY_POLICIES = ("Allow", "Forbid", "Replace")
MAX_INDEXED_COMPLETIONS = 100_000
MAX_POLICY_RULES, MAX_EXIT_CODES = 20, 255
# A CronJob's Jobs are named NAME-<minutes>: 11 characters more.
MAX_CRONJOB_NAME = 52
TIME_ZONE_PART = re.compile(r"^[A-Za-z.\-_0-9+]{1,14}$")


# -- defaults --

def job_defaults(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    job_spec_defaults(spec)
    if not spec.get("manualSelector"):
        _generate_selector(obj, spec)
    obj.setdefault("status", {})  # so that only /status writes it
    md = obj.setdefault("metadata", {})
    template_labels = (spec.get("template") or {}).get("metadata", {}).get("labels")
    if not md.get("labels") and template_labels:
        md["labels"] = dict(template_labels)


def job_spec_defaults(spec: Obj) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 2**31 - 1 if "backoffLimitPerIndex" in spec else 6)
    spec.setdefault("completionMode", NON_INDEXED)
    spec.setdefault("suspend", False)
    spec.setdefault("manualSelector", False)
    policy = spec.get("podFailurePolicy")
    spec.setdefault("podReplacementPolicy", "Failed" if policy else "TerminatingOrFailed")
    for rule in (policy or {}).get("rules") or [] if isinstance(policy, dict) else []:
        for pattern in (rule.get("onPodConditions") or []) if isinstance(rule, dict) else []:
            if isinstance(pattern, dict):
                pattern.setdefault("status", "True")
    _template_defaults(spec.get("template"))


def _template_defaults(template: Any) -> None:
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        defaults.pod_spec(template["spec"])


def _generate_selector(obj: Obj, spec: Obj) -> None:
    """The Job strategy's generateSelector: the pods carry the Job's uid and
    name, and the selector picks them by uid."""
    md = obj.get("metadata") or {}
    uid, name = md.get("uid"), md.get("name")
    template = spec.get("template")
    if not uid or not isinstance(template, dict):
        return
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    if not isinstance(labels, dict):
        return
    for key in (LEGACY_JOB_NAME, JOB_NAME):
        labels.setdefault(key, name)
    for key in (LEGACY_CONTROLLER_UID, CONTROLLER_UID):
        labels.setdefault(key, uid)
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        selector = spec["selector"] = {}
    match = selector.setdefault("matchLabels", {})
    if isinstance(match, dict):
        match.setdefault(CONTROLLER_UID, uid)


def cronjob_defaults(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    obj.setdefault("status", {})
    job = (spec.get("jobTemplate") or {}).get("spec")
    if isinstance(job, dict):
        _template_defaults(job.get("template"))


# -- validation --

def _nonnegative(spec: Obj, key: str, path: str, errs: Errors) -> None:
    value = spec.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        errs.append(FieldError(f"{path}.{key}", f"Invalid value: {value!r}: must be greater "
                                                "than or equal to 0"))


def _not_supported(value: Any, allowed: tuple[str, ...], path: str, errs: Errors) -> None:
    if value not in allowed:
        errs.append(FieldError(path, f'Unsupported value: "{value}": supported values: '
                               + ", ".join(f'"{a}"' for a in allowed), "FieldValueNotSupported"))


def _job_spec(spec: Obj, path: str, errs: Errors) -> None:
    """validateJobSpec: what a Job and a CronJob's jobTemplate share."""
    for key in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit",
                "ttlSecondsAfterFinished"):
        _nonnegative(spec, key, path, errs)
    mode = spec.get("completionMode", NON_INDEXED)
    _not_supported(mode, (NON_INDEXED, INDEXED), f"{path}.completionMode", errs)
    if mode == INDEXED:
        if spec.get("completions") is None:
            errs.append(FieldError(f"{path}.completions", "Required value: when completion "
                                   "mode is Indexed", "FieldValueRequired"))
        for key in ("completions", "parallelism"):
            value = spec.get(key)
            if isinstance(value, int) and value > MAX_INDEXED_COMPLETIONS:
                errs.append(FieldError(f"{path}.{key}", f"Invalid value: {value}: must be less "
                                       f"than or equal to {MAX_INDEXED_COMPLETIONS} when "
                                       "completion mode is Indexed"))
    template = spec.get("template")
    if not isinstance(template, dict):
        errs.append(FieldError(f"{path}.template", "Required value", "FieldValueRequired"))
        return
    pod = template.get("spec")
    validation.label_map((template.get("metadata") or {}).get("labels"),
                         f"{path}.template.metadata.labels", errs)
    validation.pod_spec(pod, f"{path}.template.spec", errs)
    if not isinstance(pod, dict):
        return
    restart = pod.get("restartPolicy")
    rpath = f"{path}.template.spec.restartPolicy"
    if restart is None:
        errs.append(FieldError(rpath, 'Required value: valid values: "OnFailure", "Never"',
                               "FieldValueRequired"))
    else:
        _not_supported(restart, RESTART_POLICIES, rpath, errs)
    if spec.get("podFailurePolicy") is not None:
        if restart not in (None, "Never"):
            errs.append(FieldError(rpath, f'Invalid value: "{restart}": only "Never" is '
                                   "supported when podFailurePolicy is specified"))
        _pod_failure_policy(spec, pod, f"{path}.podFailurePolicy", errs)


def _pod_failure_policy(spec: Obj, pod: Obj, path: str, errs: Errors) -> None:
    policy = spec["podFailurePolicy"]
    if not isinstance(policy, dict):
        errs.append(FieldError(path, "must be a PodFailurePolicy object"))
        return
    rules = validation.objects(policy.get("rules"), f"{path}.rules", "PodFailurePolicyRule",
                               errs)
    if len(rules) > MAX_POLICY_RULES:
        errs.append(FieldError(f"{path}.rules", f"Too many: {len(rules)}: must have at most "
                               f"{MAX_POLICY_RULES} items", "FieldValueTooMany"))
    names = {c.get("name") for key in ("containers", "initContainers")
             for c in pod.get(key) or [] if isinstance(c, dict)}
    for rpath, rule in rules:
        action = rule.get("action")
        _not_supported(action, POLICY_ACTIONS, f"{rpath}.action", errs)
        if action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
            errs.append(FieldError(f"{rpath}.action", 'Invalid value: "FailIndex": requires '
                                   "the backoffLimitPerIndex to be set"))
        codes, conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
        if (codes is None) == (conditions is None):
            errs.append(FieldError(rpath, "Invalid value: specifying one of OnExitCodes and "
                                   "OnPodConditions is required"))
        if isinstance(codes, dict):
            _on_exit_codes(codes, names, f"{rpath}.onExitCodes", errs)
        for cpath, pattern in validation.objects(conditions, f"{rpath}.onPodConditions",
                                                 "PodFailurePolicyOnPodConditionsPattern", errs):
            _not_supported(pattern.get("status"), ("True", "False", "Unknown"),
                           f"{cpath}.status", errs)
            if not pattern.get("type"):
                errs.append(FieldError(f"{cpath}.type", "Required value", "FieldValueRequired"))


def _on_exit_codes(codes: Obj, containers: set[Any], path: str, errs: Errors) -> None:
    name = codes.get("containerName")
    if name is not None and name not in containers:
        errs.append(FieldError(f"{path}.containerName", f'Invalid value: "{name}": must be '
                               "one of the container or initContainer names in the pod "
                               "template"))
    operator = codes.get("operator")
    _not_supported(operator, ("In", "NotIn"), f"{path}.operator", errs)
    values = codes.get("values")
    vpath = f"{path}.values"
    if not isinstance(values, list) or not values:
        errs.append(FieldError(vpath, "Invalid value: at least one value is required"))
        return
    if len(values) > MAX_EXIT_CODES:
        errs.append(FieldError(vpath, f"Too many: {len(values)}: must have at most "
                               f"{MAX_EXIT_CODES} items", "FieldValueTooMany"))
    seen: set[int] = set()
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int):
            errs.append(FieldError(f"{vpath}[{i}]", f"Invalid value: {v!r}: must be an "
                                   "integer"))
            continue
        if operator == "In" and v == 0:
            errs.append(FieldError(f"{vpath}[{i}]", "Invalid value: 0: must not be 0 for the "
                                   "In operator"))
        if v in seen:
            errs.append(FieldError(f"{vpath}[{i}]", f"Duplicate value: {v}",
                                   "FieldValueDuplicate"))
        elif seen and v < max(seen):
            errs.append(FieldError(f"{vpath}[{i}]", f"Invalid value: {v}: must be ordered"))
        seen.add(v)


def _generated_selector(obj: Obj, spec: Obj, errs: Errors) -> None:
    """ValidateGeneratedSelector: the pods of a Job without manualSelector
    carry its uid and name, and the selector picks them."""
    if spec.get("manualSelector") or not isinstance(spec.get("selector"), dict):
        return
    md = obj.get("metadata") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    for key, want in ((LEGACY_CONTROLLER_UID, md.get("uid")), (LEGACY_JOB_NAME, md.get("name")),
                      (CONTROLLER_UID, md.get("uid")), (JOB_NAME, md.get("name"))):
        if key in labels and labels[key] != want:
            errs.append(FieldError(f"spec.template.metadata.labels[{key}]",
                                   f'Invalid value: "{labels[key]}": must be \'{want}\''))
    match = spec["selector"].get("matchLabels") or {}
    if match.get(CONTROLLER_UID, md.get("uid")) != md.get("uid"):
        errs.append(FieldError("spec.selector", "Invalid value: `selector` not "
                               "auto-generated"))


def validate_job(obj: Obj, errs: Errors) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        errs.append(FieldError("spec", "Required value", "FieldValueRequired"))
        return
    _job_spec(spec, "spec", errs)
    selector = spec.get("selector")
    if not selector:
        errs.append(FieldError("spec.selector", "Required value", "FieldValueRequired"))
        return
    validation.label_selector(selector, "spec.selector", errs)
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    try:
        if not selectors.from_label_selector(selector).matches(labels):
            errs.append(FieldError("spec.template.metadata.labels",
                                   "Invalid value: `selector` does not match template "
                                   "`labels`"))
    except (selectors.SelectorError, AttributeError):
        pass  # reported by the selector check
    _generated_selector(obj, spec, errs)


def validate_cronjob(obj: Obj, errs: Errors) -> None:
    name = str((obj.get("metadata") or {}).get("name") or "")
    if len(name) > MAX_CRONJOB_NAME:
        errs.append(FieldError("metadata.name", f'Invalid value: "{name}": must be no more '
                               f"than {MAX_CRONJOB_NAME} characters"))
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        errs.append(FieldError("spec", "Required value", "FieldValueRequired"))
        return
    schedule = spec.get("schedule")
    if not schedule:
        errs.append(FieldError("spec.schedule", "Required value", "FieldValueRequired"))
    else:
        schedule_errors(str(schedule), "spec.schedule", errs)
    if spec.get("timeZone") is not None:
        time_zone_errors(spec["timeZone"], "spec.timeZone", errs)
    _nonnegative(spec, "startingDeadlineSeconds", "spec", errs)
    _nonnegative(spec, "successfulJobsHistoryLimit", "spec", errs)
    _nonnegative(spec, "failedJobsHistoryLimit", "spec", errs)
    policy = spec.get("concurrencyPolicy")
    if not policy:
        errs.append(FieldError("spec.concurrencyPolicy", "Required value",
                               "FieldValueRequired"))
    else:
        _not_supported(policy, CONCURRENCY_POLICIES, "spec.concurrencyPolicy", errs)
    job = (spec.get("jobTemplate") or {}).get("spec")
    if not isinstance(job, dict):
        errs.append(FieldError("spec.jobTemplate.spec", "Required value", "FieldValueRequired"))
        return
    _job_spec(job, "spec.jobTemplate.spec", errs)
    if job.get("selector") is not None:
        errs.append(FieldError("spec.jobTemplate.spec.selector",
                               "Invalid value: `selector` will be auto-generated"))
    if job.get("manualSelector"):
        errs.append(FieldError("spec.jobTemplate.spec.manualSelector",
                               'Unsupported value: true: supported values: "nil", "false"',
                               "FieldValueNotSupported"))


def schedule_errors(schedule: str, path: str, errs: Errors) -> None:
    """validateScheduleFormat on create: robfig's verdict, and no TZ prefix."""
    try:
        cron.parse(schedule)
    except cron.ScheduleError as e:
        errs.append(FieldError(path, f'Invalid value: "{schedule}": {e}'))
    if "TZ" in schedule:
        errs.append(FieldError(path, f'Invalid value: "{schedule}": cannot use TZ or CRON_TZ '
                               "in schedule, use timeZone field instead"))


def time_zone_errors(value: Any, path: str, errs: Errors) -> None:
    if not isinstance(value, str) or not value:
        errs.append(FieldError(path, f'Invalid value: "{value}": timeZone must be nil or '
                               "non-empty string"))
        return
    for part in value.split("/"):
        if part in (".", "..") or part.startswith("-") or not TIME_ZONE_PART.match(part):
            errs.append(FieldError(path, f'Invalid value: "{value}": unknown time zone {value}'))
            return
    if value.lower() == "local":
        errs.append(FieldError(path, f'Invalid value: "{value}": timeZone must be an explicit '
                               "time zone as defined in https://www.iana.org/time-zones"))
        return
    try:
        cron.zone(value)
    except ValueError as e:
        errs.append(FieldError(path, f'Invalid value: "{value}": {e}'))


# -- updates --

def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def job_update_errors(old: Obj, new: Obj) -> Errors:
    """ValidateJobSpecUpdate: what a Job may not change once created.
    ``completions`` may change with ``parallelism`` for an Indexed Job
    (elastic Indexed Jobs)."""
    errs: Errors = []
    was, now = old.get("spec") or {}, new.get("spec") or {}
    for key in ("selector", "template", "completionMode", "podFailurePolicy",
                "backoffLimitPerIndex", "manualSelector"):
        if was.get(key) != now.get(key):
            errs.append(FieldError(f"spec.{key}", f'Invalid value: "{_shown(now.get(key))}": '
                                   "field is immutable"))
    if was.get("completions") != now.get("completions"):
        elastic = now.get("completionMode") == INDEXED and \
            now.get("completions") == now.get("parallelism")
        if not elastic:
            errs.append(FieldError("spec.completions", f"Invalid value: {now.get('completions')}"
                                   ": field is immutable"))
    return errs
