"""The agent's API for real: an HTTPS server on loopback serving containers
of the process runtime that run in a throwaway pod netns; logs (follow),
exec (exit code, stdin, tty), attach and port-forward (WebSocket channels
and SPDY through the WebSocket), called with the API server's client
certificate.

Address plan: the pod netns has only ``lo`` (127.0.0.1); its echo container
listens on 8080 there; the agent API listens on 127.0.0.1 (a free port) of
the test's own namespace."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from netplane.api import streams
from netplane.api.meta import Obj
from netplane.cluster.apiserver import nodeproxy, pki
from netplane.node import kubeletapi, spdy
from netplane.node.runtime import podfiles
from netplane.node.runtime.process import ContainerStatus, ProcessRuntime

pytestmark = pytest.mark.root

UID = "6f1c2d3e-0000-4000-8000-0000000000aa"
POD = "web-0"
NS = "shop"
NODE = "node-1"


@dataclass
class Pods:
    pods: dict[str, Obj]

    def get(self, name: str, namespace: str | None = None) -> Obj | None:
        return self.pods.get(f"{namespace}/{name}")

    def items(self) -> list[Obj]:
        return list(self.pods.values())


@dataclass
class Agent:
    base: str
    tls: ssl.SSLContext
    runtime: ProcessRuntime
    trigger: Path
    creds: pki.Credentials

    def session(self, tls: ssl.SSLContext | None = None) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls or self.tls))


def _containers(trigger: Path) -> list[Obj]:
    script = (f"echo one; echo two; while [ ! -e {trigger} ]; do sleep 0.05; done; "
              "echo three; exec sleep 600")
    return [{"name": "talk", "image": "busybox", "command": ["sh", "-c", script]},
            {"name": "web", "image": "netplane/echo:1.0", "ports": [{"containerPort": 8080}]},
            {"name": "reader", "image": "busybox", "command": ["cat"], "stdin": True},
            {"name": "once", "image": "busybox", "command": ["sh", "-c", "cat; echo ended-$?"],
             "stdin": True, "stdinOnce": True}]


@pytest.fixture
async def agent(make_netns: Callable[[str], str], tmp_path: Path) -> AsyncIterator[Agent]:
    pod_ns = make_netns("pod")
    rt = ProcessRuntime(state_dir=tmp_path / "state")
    resolv, hosts = rt.write_pod_files(UID, nameservers=["10.96.0.10"],
                                       searches=podfiles.cluster_searches(NS),
                                       options=["ndots:5"], hostname=POD, pod_ip="127.0.0.1")
    trigger = tmp_path / "trigger"
    containers = _containers(trigger)
    for c in containers:
        rt.start_container(pod_uid=UID, pod_name=POD, namespace=NS, container=c,
                           netns=pod_ns, hostname=POD, resolv_conf=resolv, hosts=hosts,
                           env={"POD_NAME": POD, "POD_IP": "127.0.0.1", "NODE_NAME": NODE})
    pod = {"metadata": {"name": POD, "namespace": NS, "uid": UID},
           "spec": {"nodeName": NODE, "containers": containers}}
    creds = pki.ensure(tmp_path / "cluster", addresses=[])
    api = kubeletapi.KubeletApi(pods=Pods({f"{NS}/{POD}": pod}), runtime=rt, node_name=NODE)
    cert, key = kubeletapi.serving_certificate(tmp_path / "agent-pki", "127.0.0.1")
    await api.start(address="127.0.0.1", port=0, tls=kubeletapi.server_tls(
        cert=cert, key=key, ca_file=str(creds.ca_cert)))
    tls = nodeproxy.client_tls(creds.kubelet_client_cert, creds.kubelet_client_key)
    try:
        agent = Agent(f"https://127.0.0.1:{api.port}", tls, rt, trigger, creds)
        await _wait_listening(agent)
        yield agent
    finally:
        await api.stop()
        await asyncio.to_thread(rt.stop_pod, UID, 0)


async def _wait_listening(agent: Agent) -> None:
    """Until the echo server answers through a port-forward and the first
    lines are logged: the containers are up."""
    for _ in range(200):
        log = agent.runtime.log_path(UID, "talk")
        if log.exists() and b"two" in log.read_bytes():
            try:
                if "pod=" in await _forward_channels(agent):
                    return
            except (aiohttp.ClientError, AssertionError, ConnectionError):
                pass
        await asyncio.sleep(0.1)
    raise AssertionError("the pod's containers did not come up")


async def _get(agent: Agent, path: str) -> tuple[int, str]:
    async with agent.session() as s, s.get(agent.base + path) as resp:
        return resp.status, await resp.text()


async def test_logs_whole_tail_and_limit(agent: Agent) -> None:
    base = f"/containerLogs/{NS}/{POD}/talk"
    assert await _get(agent, base) == (200, "one\ntwo\n")
    assert await _get(agent, base + "?tailLines=1") == (200, "two\n")
    assert await _get(agent, base + "?limitBytes=3") == (200, "one")
    status, text = await _get(agent, base + "?timestamps=true")
    assert status == 200 and [line.split(" ", 1)[1] for line in text.splitlines()] == \
        ["one", "two"]
    assert (await _get(agent, f"/containerLogs/{NS}/{POD}/nope"))[0] == 404
    assert (await _get(agent, base + "?previous=true"))[0] == 400


async def test_follow_shows_a_line_written_after_the_request(agent: Agent) -> None:
    got = b""
    async with agent.session() as s, \
            s.get(agent.base + f"/containerLogs/{NS}/{POD}/talk?follow=true") as resp:
        assert resp.status == 200
        while b"two\n" not in got:
            got += await asyncio.wait_for(resp.content.readany(), 10)
        agent.trigger.touch()
        while b"three\n" not in got:
            got += await asyncio.wait_for(resp.content.readany(), 10)
    assert got == b"one\ntwo\nthree\n"


async def _exec(agent: Agent, command: list[str], *, stdin: bytes | None = None,
                tty: bool = False, protocol: str = streams.V5,
                resize: streams.TerminalSize | None = None) -> tuple[bytes, bytes, Obj]:
    query = "&".join(f"command={quote(c, safe='')}" for c in command)
    query += "&stdout=1" + ("&stderr=1" if not tty else "") + ("&stdin=1" if stdin is not None
                                                              else "") + ("&tty=1" if tty else "")
    out, err, status = b"", b"", {}
    async with agent.session() as s, s.ws_connect(
            f"{agent.base}/exec/{NS}/{POD}/talk?{query}", protocols=(protocol,)) as ws:
        assert ws.protocol == protocol
        if resize is not None:
            await ws.send_bytes(streams.resize_frame(resize))
        if stdin is not None:
            await ws.send_bytes(streams.encode(streams.Channel.STDIN, stdin))
            if protocol == streams.V5 and not tty:
                await ws.send_bytes(streams.close_frame(streams.Channel.STDIN))
        async for msg in ws:
            frame = streams.decode(msg.data)
            if frame.channel == streams.Channel.STDOUT:
                out += frame.data
            elif frame.channel == streams.Channel.STDERR:
                err += frame.data
            elif frame.channel == streams.Channel.ERROR and frame.data:
                status = json.loads(frame.data)
    return out, err, status


async def test_exec_passes_the_exit_code_back(agent: Agent) -> None:
    out, err, status = await _exec(agent, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (out, err) == (b"out\n", b"err\n")
    assert status == streams.exit_status(3, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert status["message"].endswith("error executing command [sh -c echo out; echo err >&2; "
                                      "exit 3], exit code 3")
    assert streams.exit_code(status) == 3
    assert (await _exec(agent, ["true"]))[2] == {"metadata": {}, "status": "Success"}


async def test_exec_runs_in_the_pods_namespaces(agent: Agent) -> None:
    out, _, status = await _exec(agent, ["sh", "-c", "hostname; echo $POD_NAME; "
                                                     "head -1 /etc/resolv.conf"])
    assert status["status"] == "Success"
    assert out.decode().splitlines()[:2] == [POD, POD]
    assert b"10.96.0.10" in out


async def test_exec_with_stdin_v5_and_v4(agent: Agent) -> None:
    out, _, status = await _exec(agent, ["cat"], stdin=b"hello\n")
    assert out == b"hello\n" and status["status"] == "Success"
    # v4 cannot say stdin ended: a command that reads one line still works.
    out, _, status = await _exec(agent, ["sh", "-c", "read x; echo got $x"], stdin=b"hi\n",
                                 protocol=streams.V4)
    assert out == b"got hi\n" and status["status"] == "Success"


async def test_exec_with_a_tty_follows_resize(agent: Agent) -> None:
    out, _, status = await _exec(agent, ["sh", "-c", "read x; stty size; tty"],
                                 stdin=b"go\r", tty=True,
                                 resize=streams.TerminalSize(width=100, height=40))
    assert status["status"] == "Success", status
    assert b"40 100" in out
    assert b"/dev/pts/" in out


async def _attach_ping(agent: Agent, container: str) -> None:
    """One attach session to ``container`` that sends a line and sees it
    echoed, then ends."""
    got = b""
    async with agent.session() as s, s.ws_connect(
            f"{agent.base}/attach/{NS}/{POD}/{container}?stdin=1&stdout=1",
            protocols=(streams.V5,)) as ws:
        await ws.send_bytes(streams.encode(streams.Channel.STDIN, b"ping\n"))
        while b"ping\n" not in got:
            msg = await asyncio.wait_for(ws.receive(), 10)
            got += streams.decode(msg.data).data


async def test_attach_relays_stdin_and_output(agent: Agent) -> None:
    await _attach_ping(agent, "reader")
    state = agent.runtime.container_state(UID, "reader")
    assert state.status is ContainerStatus.RUNNING  # attach ending leaves it running


async def test_stdin_once_closes_with_the_first_attach(agent: Agent) -> None:
    await _attach_ping(agent, "once")
    # The session is over: the container's cat reads end-of-file, as the
    # kubelet's stdinOnce has it (`kubectl run -i` ends with its input).
    log = agent.runtime.log_path(UID, "once")
    for _ in range(200):
        if b"ended-0" in log.read_bytes():
            break
        await asyncio.sleep(0.05)
    assert b"ended-0" in log.read_bytes()
    assert agent.runtime.open_stdin(UID, "once") is None  # no second session


async def _forward_channels(agent: Agent) -> str:
    body = b""
    async with agent.session() as s, s.ws_connect(
            f"{agent.base}/portForward/{NS}/{POD}?ports=8080",
            protocols=(streams.V4,)) as ws:
        first = [streams.decode((await ws.receive()).data) for _ in range(2)]
        assert first == [streams.Frame(0, streams.port_prefix(8080)),
                         streams.Frame(1, streams.port_prefix(8080))]
        await ws.send_bytes(streams.encode(0, b"GET / HTTP/1.0\r\n\r\n"))
        async for msg in ws:
            frame = streams.decode(msg.data)
            assert frame.channel == 0, frame
            body += frame.data
    return body.decode()


async def test_port_forward_over_websocket_channels(agent: Agent) -> None:
    body = await _forward_channels(agent)
    assert " 200 OK" in body and f"pod={POD}" in body


async def test_port_forward_over_spdy_in_a_websocket(agent: Agent) -> None:
    writer, reader = spdy.Writer(), spdy.Reader()
    body, finished = b"", set[int]()
    async with agent.session() as s, s.ws_connect(
            f"{agent.base}/portForward/{NS}/{POD}", protocols=(streams.SPDY_TUNNEL,)) as ws:
        assert ws.protocol == streams.SPDY_TUNNEL
        headers = {"port": "8080", "requestid": "0"}
        await ws.send_bytes(writer.encode(spdy.SynStream(1, {**headers, "streamtype": "error"})))
        await ws.send_bytes(writer.encode(spdy.SynStream(3, {**headers, "streamtype": "data"})))
        await ws.send_bytes(writer.encode(spdy.Ping(1)))
        await ws.send_bytes(writer.encode(spdy.Data(3, b"GET / HTTP/1.0\r\n\r\n", fin=True)))
        frames: list[spdy.Frame] = []
        while finished != {1, 3}:
            msg = await asyncio.wait_for(ws.receive(), 10)
            for frame in reader.feed(msg.data):
                frames.append(frame)
                if isinstance(frame, spdy.Data):
                    body += frame.data if frame.stream_id == 3 else b""
                    if frame.fin:
                        finished.add(frame.stream_id)
    assert spdy.SynReply(1) in frames and spdy.SynReply(3) in frames
    assert spdy.Ping(1) in frames
    assert f"pod={POD}".encode() in body


async def test_only_the_api_servers_certificate_is_served(agent: Agent) -> None:
    other = ssl.create_default_context()
    other.check_hostname, other.verify_mode = False, ssl.CERT_NONE
    # Signed by the cluster CA but named otherwise: refused.
    other.load_cert_chain(agent.creds.server_cert, agent.creds.server_key)
    async with agent.session(other) as s, s.get(f"{agent.base}/healthz") as resp:
        assert resp.status == 403
    # No certificate at all: the TLS handshake itself fails.
    bare = ssl.create_default_context()
    bare.check_hostname, bare.verify_mode = False, ssl.CERT_NONE
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        async with agent.session(bare) as s, s.get(f"{agent.base}/healthz") as resp:
            await resp.read()
    assert await _get(agent, "/healthz") == (200, "ok")
