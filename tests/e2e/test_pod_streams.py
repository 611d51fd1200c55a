"""Pod logs, exec, attach and port-forward through the API server and the
pod's agent, driven by the real kubectl (through the lab's kubeconfig) and
the Python client.

Address plan: the lab's own (underlay 192.168.56.0/24, pod CIDRs
10.244.N.0/24); kubectl and the port-forward listener are on 127.0.0.1 of
the test's namespace, the API server's loopback listener too."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator
from typing import IO

import pytest
import yaml
from kubernetes import client as kube
from kubernetes import config as kubeconfig
from kubernetes.stream import portforward, stream

from tests.e2e.conftest import Lab, wait_for

pytestmark = pytest.mark.e2e


def _manifest(trigger: str) -> str:
    script = (f"echo one; echo two; while [ ! -e {trigger} ]; do sleep 0.1; done; "
              f"rm -f {trigger}; echo three; exec sleep 3600")
    talk = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talk"},
            "spec": {"containers": [
                {"name": "talk", "image": "busybox", "command": ["sh", "-c", script]},
                {"name": "web", "image": "netplane/echo:1.0",
                 "ports": [{"containerPort": 8080}]}]}}
    return yaml.safe_dump_all([talk, READER])


# A container reading its stdin (attach writes to it), answering each line.
READER = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reader"},
          "spec": {"containers": [{"name": "reader", "image": "busybox", "stdin": True,
                                   "command": ["sh", "-c",
                                               'while read l; do echo "got $l"; done']}]}}


class Kubectl:
    def __init__(self, lab: Lab) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(lab.paths.kubeconfig)}

    def run(self, *args: str, stdin: str | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kubectl", *args], capture_output=True, text=True, env=self.env,
                              input=stdin, timeout=timeout, check=False)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(["kubectl", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=self.env)


class Lines:
    """Lines a running command prints, collected by a thread."""

    def __init__(self, out: IO[str]) -> None:
        self.lines: list[str] = []
        threading.Thread(target=self._read, args=(out,), daemon=True).start()

    def _read(self, out: IO[str]) -> None:
        for line in out:
            self.lines.append(line.rstrip("\n"))


def _trigger(lab: Lab) -> str:
    """A file the talk container waits for, made by an exec in that very
    container (so it lands wherever the container's /tmp is) and removed by
    the container once seen."""
    return f"/tmp/netplane-{lab.name}-talk-trigger"


@pytest.fixture(scope="module")
def pods(lab: Lab) -> Iterator[Kubectl]:
    kubectl = Kubectl(lab)
    trigger = _trigger(lab)
    # Validation needs OpenAPI documents, which are not what this test is about.
    out = kubectl.run("apply", "-f", "-", stdin=_manifest(trigger))
    assert out.returncode == 0, out.stderr
    out = kubectl.run("wait", "--for=condition=Ready", "pod/talk", "pod/reader",
                      "--timeout=60s", timeout=90)
    assert out.returncode == 0, out.stderr
    wait_for("talk's first lines", lambda: "two" in kubectl.run("logs", "talk", "-c",
                                                                "talk").stdout)
    try:
        yield kubectl
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(trigger)


@pytest.fixture
def trigger(lab: Lab) -> str:
    return _trigger(lab)


def test_logs_of_a_container(pods: Kubectl) -> None:
    out = pods.run("logs", "talk", "-c", "talk")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("one\ntwo\n")
    assert pods.run("logs", "talk", "-c", "talk", "--tail=1").stdout in ("two\n", "three\n")
    # Without -c: the first container, as kube picks it (kubectl says so).
    default = pods.run("logs", "talk")
    assert default.returncode == 0 and 'Defaulted container "talk"' in default.stderr


def test_logs_follow_shows_a_line_written_later(pods: Kubectl, trigger: str) -> None:
    follower = pods.start("logs", "-f", "talk", "-c", "talk")
    try:
        assert follower.stdout is not None
        lines = Lines(follower.stdout)
        wait_for("the existing lines", lambda: lines.lines[:2] == ["one", "two"], timeout=20)
        assert "three" not in lines.lines
        touched = pods.run("exec", "talk", "-c", "talk", "--", "touch", trigger)
        assert touched.returncode == 0, touched.stderr
        wait_for("the line written after the request", lambda: "three" in lines.lines,
                 timeout=20)
    finally:
        follower.terminate()
        follower.wait(timeout=10)


def test_exec_exit_code_and_stdin(pods: Kubectl) -> None:
    out = pods.run("exec", "talk", "-c", "talk", "--", "sh", "-c", "exit 3")
    assert out.returncode == 3, out.stderr
    assert "command terminated with exit code 3" in out.stderr
    out = pods.run("exec", "-i", "talk", "-c", "talk", "--", "cat", stdin="hi\n")
    assert (out.returncode, out.stdout) == (0, "hi\n"), out.stderr
    assert pods.run("exec", "talk", "-c", "talk", "--", "hostname").stdout == "talk\n"


def test_exec_errors_are_kube_messages(pods: Kubectl) -> None:
    out = pods.run("exec", "talk", "-c", "nope", "--", "true")
    assert out.returncode == 1
    assert "container nope is not valid for pod talk" in out.stderr
    out = pods.run("logs", "nosuchpod")
    assert out.returncode == 1 and 'pods "nosuchpod" not found' in out.stderr


def answers(env: dict[str, str], *args: str, line: str, answer: str) -> None:
    """Runs ``kubectl ARGS`` with ``line`` written to its stdin and waits
    for ``answer`` among the lines it prints (then stops it)."""
    talking = subprocess.Popen(["kubectl", *args], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=env)
    try:
        assert talking.stdin is not None and talking.stdout is not None
        lines = Lines(talking.stdout)
        talking.stdin.write(line + "\n")
        talking.stdin.flush()
        wait_for("the container's answer", lambda: answer in lines.lines, timeout=60)
    finally:
        talking.terminate()
        talking.wait(timeout=10)


def run_interactive(env: dict[str, str], name: str, script: str) -> str:
    """``kubectl run -i --rm ... -- sh`` with ``script`` as its whole input:
    kubectl sets stdinOnce, so the end of the input ends the shell, the pod
    and kubectl (which deletes the pod). Its output."""
    got = subprocess.run(["kubectl", "run", "-i", "--rm", "--image=busybox",
                          "--restart=Never", name, "--command", "--", "sh"],
                         input=script, capture_output=True, text=True, env=env, timeout=120)
    assert got.returncode == 0, got.stderr
    gone = subprocess.run(["kubectl", "get", "pod", name], capture_output=True, text=True,
                          env=env)
    assert f'pods "{name}" not found' in gone.stderr
    return got.stdout


@contextlib.contextmanager
def forwarded(env: dict[str, str], target: str, port: int) -> Iterator[str]:
    """``kubectl port-forward TARGET 0:PORT`` while the block runs: yields
    the local address it listens on."""
    forward = subprocess.Popen(["kubectl", "port-forward", target, f"0:{port}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env)
    try:
        assert forward.stdout is not None
        lines = Lines(forward.stdout)
        first = wait_for("the local port", lambda: next(
            (ln for ln in lines.lines if ln.startswith("Forwarding from 127.0.0.1:")), None),
            timeout=20)
        yield "127.0.0.1:" + first.split("127.0.0.1:")[1].split()[0]
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def curl(address: str, path: str = "/") -> str:
    got = subprocess.run(["curl", "-sS", "--max-time", "5", f"http://{address}{path}"],
                         capture_output=True, text=True, timeout=15, check=False)
    assert got.returncode == 0, got.stderr
    return got.stdout


def test_attach_sends_stdin_and_shows_output(pods: Kubectl) -> None:
    answers(pods.env, "attach", "-i", "reader", line="ping", answer="got ping")


def test_run_interactive_ends_with_its_input(pods: Kubectl) -> None:
    assert "answer from asker" in run_interactive(
        pods.env, "asker", "echo answer from $(hostname)\n")


def test_kubectl_port_forward(pods: Kubectl) -> None:
    with forwarded(pods.env, "pod/talk", 8080) as address:
        for path in ("/", "/again"):
            assert curl(address, path).startswith("pod=talk ip=10.244.")


def _python_client(lab: Lab) -> kube.CoreV1Api:
    api_client = kubeconfig.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(lab.paths.kubeconfig))
    return kube.CoreV1Api(api_client)


def test_python_client_exec(lab: Lab, pods: Kubectl) -> None:
    api = _python_client(lab)
    out = stream(api.connect_get_namespaced_pod_exec, "talk", "default", container="talk",
                 command=["sh", "-c", "echo hello; echo oops >&2"], stdout=True, stderr=True,
                 stdin=False, tty=False)
    assert out == "hello\noops\n"
    resp = stream(api.connect_get_namespaced_pod_exec, "talk", "default", container="talk",
                  command=["sh", "-c", "cat; exit 7"], stdout=True, stderr=True, stdin=True,
                  tty=False, _preload_content=False)
    resp.write_stdin("abc\n")
    resp.close_channel(0)
    got = ""
    while resp.is_open():
        resp.update(timeout=1)
        if resp.peek_stdout():
            got += resp.read_stdout()
    assert (got, resp.returncode) == ("abc\n", 7)


def test_python_client_port_forward(lab: Lab, pods: Kubectl) -> None:
    api = _python_client(lab)
    forward = portforward(api.connect_get_namespaced_pod_portforward, "talk", "default",
                          ports="8080")
    sock = forward.socket(8080)
    sock.setblocking(True)
    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    sock.close()
    assert b" 200 OK" in data and b"pod=talk" in data
    assert forward.error(8080) is None
