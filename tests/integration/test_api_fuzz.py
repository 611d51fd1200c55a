"""Schemathesis against a real ``netplane server``: every request/response
operation of the server's own OpenAPI v3 documents, fuzzed over TLS with the
admin token, in a bounded and repeatable run (derandomized, no example
database, a fixed number of cases per operation).

Why v3: the per group-version documents keep int-or-string fields as
``oneOf`` (v2 flattens them to strings), carry one request body per media
type (JSON, YAML and the three patch types), and OpenAPI 3 is what
Schemathesis supports best.

What must hold: no 5xx, no hang (a 10 s client timeout), 2xx codes that the
document lists and errors as ``Status`` objects with the same code; after
the run the server is alive and ready, and every stored object passes the
project's validation and has no field its kind's schema does not know.
Watch streams and the pod streams (log, exec, attach, portforward) are not
request/response and are left out. Everything stays on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
requests = pytest.importorskip("requests")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from netplane.api import resources, schema, validation  # noqa: E402
from tests.integration.loopback import api_server  # noqa: E402

# Cases per operation: about 150 operations, so a few thousand in all (more
# for a longer hunt, with NETPLANE_FUZZ_CASES).
CASES = int(os.environ.get("NETPLANE_FUZZ_CASES", "16"))
STREAMS = ("/log", "/exec", "/attach", "/portforward")
# Writes first so that reads and deletes meet objects; deletes last.
ORDER = {"post": 0, "get": 1, "put": 2, "patch": 3, "delete": 4}
NAMESPACE = "default"
# Bodies and parameters that follow the schema, and ones that break it.
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


@dataclass
class Server:
    base: str
    headers: dict[str, str]
    ca: str
    proc: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, headers=self.headers, verify=self.ca, timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_server(tmp_path_factory.mktemp("fuzz")) as running:
        assert running.data and running.proc is not None and running.log is not None
        yield Server(f"https://127.0.0.1:{running.port}",
                     {"Authorization": f"Bearer {running.token}"},
                     str(running.data / "pki" / "ca.crt"), running.proc, running.log)


def _operations(server: Server) -> list[Any]:
    """The operations of every group-version document, loaded over TLS."""
    discovery = server.get("/openapi/v3").json()
    ops = []
    for entry in discovery["paths"].values():
        loaded = schemathesis.openapi.from_url(server.base + entry["serverRelativeURL"],
                                               headers=server.headers, verify=server.ca)
        ops.extend(result.ok() for result in loaded.get_all_operations())
    ops = [op for op in ops if not op.path.endswith(STREAMS)]
    return sorted(ops, key=lambda op: ORDER.get(op.method.lower(), 9))


def _gvk(op: Any) -> dict[str, str]:
    return dict(op.definition.raw.get("x-kubernetes-group-version-kind") or {})


def _existing(server: Server, op: Any) -> list[str]:
    """Names of stored objects of the operation's resource, to aim at."""
    if "{name}" not in op.path:
        return []
    collection = op.path.split("/{name}")[0].replace("{namespace}", NAMESPACE)
    resp = server.get(collection)
    if resp.status_code != 200:
        return []
    return sorted(item["metadata"]["name"] for item in resp.json().get("items", []))[:5]


@dataclass
class Findings:
    cases: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def add(self, case: Any, what: str) -> None:
        self.failures.append(f"{case.method} {case.formatted_path}: {what}\n"
                             f"    {case.as_curl_command()[:1500]}")


def _aim(case: Any, op: Any, how: str, names: list[str], index: int) -> None:
    """Point part of the cases at something the server will get past its
    first checks with: the path's own kind, a valid name, a stored object."""
    gvk = _gvk(op)
    if how in ("identity", "existing") and isinstance(case.body, dict) \
            and gvk.get("kind") and not op.path.endswith("/scale"):
        group, version = gvk.get("group", ""), gvk.get("version", "v1")
        case.body["kind"] = gvk["kind"]
        case.body["apiVersion"] = f"{group}/{version}" if group else version
        md = case.body.get("metadata")
        md = md if isinstance(md, dict) else {}
        md.pop("namespace", None)
        md["name"] = case.path_parameters.get("name") or f"fuzz-{index}"
        case.body["metadata"] = md
        case.media_type = "application/json" if case.method != "PATCH" else case.media_type
    if how == "existing" and names and "name" in case.path_parameters:
        case.path_parameters["name"] = names[index % len(names)]
        if isinstance(case.body, dict) and isinstance(case.body.get("metadata"), dict):
            case.body["metadata"]["name"] = case.path_parameters["name"]


def _judge(case: Any, resp: Any, op: Any, findings: Findings) -> None:
    code = resp.status_code
    findings.codes[code] = findings.codes.get(code, 0) + 1
    try:
        case.validate_response(resp, checks=[not_a_server_error])
    except (AssertionError, BaseExceptionGroup):  # Schemathesis' FailureGroup
        findings.add(case, f"{code}: {resp.text[:300]}")
        return
    documented = {str(c) for c in op.definition.raw.get("responses", {})}
    if 200 <= code < 300 and str(code) not in documented:
        findings.add(case, f"{code} is not among the documented codes {sorted(documented)}")
    if code >= 400 and resp.headers.get("Content-Type", "").startswith("application/json"):
        body = resp.json()
        if not (isinstance(body, dict) and body.get("kind") == "Status"
                and body.get("code") == code):
            findings.add(case, f"{code} whose body is not a Status with that code: "
                               f"{resp.text[:200]}")


def _fuzz(server: Server, op: Any, findings: Findings) -> None:
    fixed_path = {"namespace": NAMESPACE} if any(
        p.name == "namespace" for p in op.path_parameters) else {}
    lists = op.method.upper() == "GET" and "{name}" not in op.path
    strategy = st.one_of(*(op.as_strategy(mode, path_parameters=fixed_path,
                                          query={"watch": "false"} if lists else None)
                           for mode in MODES))
    names = _existing(server, op)
    session = requests.Session()

    @settings(max_examples=CASES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=strategy, how=st.sampled_from(["as-generated", "identity", "existing"]),
           index=st.integers(0, 50))
    def run(case: Any, how: str, index: int) -> None:
        _aim(case, op, how, names, index)
        findings.cases += 1
        try:
            resp = case.call(base_url=server.base, headers=server.headers, session=session,
                             verify=server.ca, timeout=10)
        except requests.RequestException as e:
            findings.add(case, f"no answer: {e!r}"[:400])
            return
        _judge(case, resp, op, findings)

    run()


def _stored_problems(server: Server) -> list[str]:
    """Every stored object, listed through the API and judged as the server
    should have judged it before storing it."""
    out = []
    for res in resources.ALL:
        if res.create_only:
            continue
        resp = server.get(res.collection_path())
        assert resp.status_code == 200, f"list {res.plural}: {resp.status_code} {resp.text}"
        definition = schema.definition_name(res.group, res.version, res.kind)
        for obj in resp.json()["items"]:
            name = f"{res.plural} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
            errors = [str(e) for e in validation.validate(obj, res)]
            if definition:
                errors += [str(e) for e in schema.strict_errors(obj, definition)]
            if errors:
                out.append(f"{name}: {'; '.join(errors)[:400]}")
    return out


def test_api_fuzz(server: Server) -> None:
    started = time.monotonic()
    findings = Findings()
    ops = _operations(server)
    assert len(ops) > 100, [op.path for op in ops]
    for op in ops:
        _fuzz(server, op, findings)
    elapsed = time.monotonic() - started
    print(f"{findings.cases} cases over {len(ops)} operations in {elapsed:.0f} s; "
          f"codes: {dict(sorted(findings.codes.items()))}")
    assert not findings.failures, (f"{len(findings.failures)} failures:\n"
                                   + "\n".join(findings.failures[:15]))
    assert server.proc.poll() is None, server.log.read_text()[-3000:]
    assert server.get("/readyz").status_code == 200
    problems = _stored_problems(server)
    assert not problems, "invalid objects were stored:\n" + "\n".join(problems[:20])
