"""The agent's HTTPS API on the node's address, port 10250, as the kubelet
serves it to the API server (which proxies ``pods/log``, ``exec``, ``attach``
and ``portforward`` to it):

    GET /containerLogs/{ns}/{pod}/{container}?follow=&tailLines=&...
    GET /exec/{ns}/{pod}/{container}?command=..&stdin=&stdout=&stderr=&tty=
    GET /attach/{ns}/{pod}/{container}?stdin=&stdout=&stderr=&tty=
    GET /portForward/{ns}/{pod}?ports=..   (WebSocket channels or SPDY tunnel)
    GET /metrics/resource                  (CPU and memory, see resourcemetrics)
    GET /metrics/cadvisor                  (per-container cgroup figures, see cadvisor)
    GET /top/{ns}/{pod}/{container}        (its processes, see processes)

Only the API server may call it: the client must present a certificate
signed by the cluster CA with the API server's kubelet-client name. The
serving certificate is self-signed by the agent at start (the API server
does not verify it, as kube-apiserver does not by default)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from netplane.api import meta, streams
from netplane.api.meta import Obj
from netplane.api.streams import Channel
from netplane.node import cadvisor, execsession, podlogs, portforward, processes, resourcemetrics
from netplane.node.runtime.process import ContainerState, ContainerStatus, ProcessRuntime

log = logging.getLogger(__name__)

KUBELET_PORT = 10250
CLIENT_NAME = "kube-apiserver-kubelet-client"


class PodLookup(Protocol):
    def get(self, name: str, namespace: str | None = None) -> Obj | None: ...

    def items(self) -> list[Obj]: ...


def _error(code: int, message: str) -> web.Response:
    return web.Response(status=code, text=message + "\n", content_type="text/plain")


class Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def serving_certificate(directory: Path, address: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``address``, made once and kept."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    crt, key_path = directory / "kubelet.crt", directory / "kubelet.key"
    if crt.exists() and key_path.exists():
        return crt, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"netplane-agent@{address}")])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        sans.append(x509.IPAddress(ipaddress.ip_address(address)))
    except ValueError:
        sans.append(x509.DNSName(address))
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(key, hashes.SHA256()))
    for path, data in ((key_path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())), (crt, cert.public_bytes(serialization.Encoding.PEM))):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return crt, key_path


def server_tls(*, cert: Path, key: Path, ca_file: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca_file)
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def peer_name(request: web.Request) -> str | None:
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


@web.middleware
async def only_apiserver(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
    name = peer_name(request)
    if name != CLIENT_NAME:
        return _error(403, f"forbidden: the agent API serves only {CLIENT_NAME}, "
                           f"not {name or 'an anonymous client'}")
    try:
        return await handler(request)
    except Refused as e:
        return _error(e.code, e.message)


def _flag(request: web.Request, key: str) -> bool:
    return request.query.get(key, "").lower() in ("1", "true")


class KubeletApi:
    def __init__(self, *, pods: PodLookup, runtime: ProcessRuntime, node_name: str) -> None:
        self.pods, self.runtime, self.node_name = pods, runtime, node_name
        self._runner: web.AppRunner | None = None
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[only_apiserver])
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.logs)
        app.router.add_get("/exec/{ns}/{pod}/{container}", self.exec)
        app.router.add_post("/exec/{ns}/{pod}/{container}", self.exec)
        app.router.add_get("/attach/{ns}/{pod}/{container}", self.attach)
        app.router.add_post("/attach/{ns}/{pod}/{container}", self.attach)
        app.router.add_get("/portForward/{ns}/{pod}", self.port_forward)
        app.router.add_post("/portForward/{ns}/{pod}", self.port_forward)
        app.router.add_get("/metrics/resource", self.resource_metrics)
        app.router.add_get("/metrics/cadvisor", self.cadvisor_metrics)
        app.router.add_get("/top/{ns}/{pod}/{container}", self.top)
        app.router.add_get("/healthz", self.healthz)
        return app

    async def start(self, *, address: str, port: int, tls: ssl.SSLContext) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0,
                                     handler_cancellation=True)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock, ssl_context=tls).start()
        log.info("agent API listening on %s:%d", address, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def resource_metrics(self, request: web.Request) -> web.Response:
        mine = [p for p in self.pods.items()
                if (p.get("spec") or {}).get("nodeName") == self.node_name]
        body = resourcemetrics.render(resourcemetrics.snapshot(mine, self.runtime))
        return web.Response(body=body, headers={"Content-Type": resourcemetrics.CONTENT_TYPE})

    async def cadvisor_metrics(self, request: web.Request) -> web.Response:
        mine = [p for p in self.pods.items()
                if (p.get("spec") or {}).get("nodeName") == self.node_name]
        body = cadvisor.render(cadvisor.snapshot(mine, self.runtime))
        return web.Response(body=body, headers={"Content-Type": cadvisor.CONTENT_TYPE})

    async def top(self, request: web.Request) -> web.Response:
        pod, spec, pid = self._running(request)
        rel = self.runtime.cgroup_path(meta.uid(pod), spec["name"])
        files = self.runtime.cgroups.procs_files(rel) if rel and self.runtime.cgroups else []
        # Without cgroups, the container's own process is all that is known.
        pids = (processes.cgroup_pids(files[0]) if files else []) or [pid]
        return web.json_response(processes.top(pids))

    # -- lookups --

    def _pod(self, request: web.Request) -> Obj:
        ns, name = request.match_info["ns"], request.match_info["pod"]
        pod = self.pods.get(name, ns)
        if pod is None or (pod.get("spec") or {}).get("nodeName") != self.node_name:
            raise Refused(404, f'pod "{name}" in namespace "{ns}" is not on node '
                               f"{self.node_name}")
        return pod

    def _container(self, request: web.Request) -> tuple[Obj, Obj, ContainerState]:
        pod = self._pod(request)
        name = request.match_info["container"]
        spec = next((c for c in pod["spec"].get("containers") or [] if c.get("name") == name),
                    None)
        if spec is None:
            raise Refused(404, f"container {name} is not valid for pod {meta.name(pod)}")
        return pod, spec, self.runtime.container_state(meta.uid(pod), name)

    def _running(self, request: web.Request) -> tuple[Obj, Obj, int]:
        pod, spec, state = self._container(request)
        if state.status is not ContainerStatus.RUNNING or state.pid is None:
            raise Refused(400, f'container "{spec["name"]}" in pod "{meta.name(pod)}" is '
                               f"not running (state: {state.status.value})")
        return pod, spec, state.pid

    # -- logs --

    async def logs(self, request: web.Request) -> web.StreamResponse:
        pod, spec, state = self._container(request)
        name, uid = spec["name"], meta.uid(pod)
        try:
            opts = podlogs.parse_options(request.query)
        except podlogs.BadLogOptions as e:
            raise Refused(400, str(e)) from None
        if opts.previous:
            path = self.runtime.previous_log_path(uid, name)
            if not path.exists():
                raise Refused(400, f'previous terminated container "{name}" in pod '
                                   f'"{meta.name(pod)}" not found')
        else:
            path = self.runtime.log_path(uid, name)
        if state.status is ContainerStatus.UNKNOWN or not path.exists():
            raise Refused(400, f'container "{name}" in pod "{meta.name(pod)}" is waiting to '
                               f"start: ContainerCreating")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)

        def running() -> bool:
            if opts.previous:
                return False  # that instance is over: nothing more will be written
            return self.runtime.container_state(uid, name).status is ContainerStatus.RUNNING

        try:
            async for chunk in podlogs.stream(path, opts, running=running):
                await resp.write(chunk)
        except (ConnectionResetError, FileNotFoundError):
            pass
        return resp

    # -- exec, attach --

    @staticmethod
    def _exec_options(request: web.Request, *, command: list[str]) -> execsession.ExecOptions:
        return execsession.ExecOptions(
            command=command, stdin=_flag(request, "stdin"),
            stdout=_flag(request, "stdout") or "stdout" not in request.query,
            stderr=_flag(request, "stderr"), tty=_flag(request, "tty"))

    @staticmethod
    async def _websocket(request: web.Request,
                         protocols: tuple[str, ...]) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=protocols, max_msg_size=0, heartbeat=None)
        if not ws.can_prepare(request).ok:
            raise Refused(400, "Upgrade request required: this endpoint speaks WebSocket "
                               f"({', '.join(protocols)})")
        await ws.prepare(request)
        return ws

    async def exec(self, request: web.Request) -> web.StreamResponse:
        _, spec, pid = self._running(request)
        command = request.query.getall("command", [])
        if not command:
            raise Refused(400, "you must specify at least 1 command")
        opts = self._exec_options(request, command=command)
        ws = await self._websocket(request, streams.EXEC_PROTOCOLS)
        session: execsession.PipeExec | execsession.PtyExec = \
            execsession.PtyExec(opts) if opts.tty else execsession.PipeExec(opts)
        try:
            await session.start(execsession.exec_argv(pid, command),
                                execsession.process_env(pid))
        except OSError as e:
            await _fail(ws, f"failed to exec in container {spec['name']}: {e}")
            return ws
        try:
            await execsession.pump(ws, session, first_channel=_first(opts), command=command)
        finally:
            if isinstance(session, execsession.PtyExec):
                session.close()
        return ws

    async def attach(self, request: web.Request) -> web.StreamResponse:
        pod, spec, _ = self._running(request)
        uid, name = meta.uid(pod), spec["name"]
        opts = self._exec_options(request, command=[])
        ws = await self._websocket(request, streams.EXEC_PROTOCOLS)
        # The engine's attach is a blocking call: off the loop.
        stdin = await asyncio.to_thread(self.runtime.open_stdin, uid, name) \
            if opts.stdin and spec.get("stdin") else None

        def running() -> bool:
            return self.runtime.container_state(uid, name).status is ContainerStatus.RUNNING

        def exit_code() -> int:
            return self.runtime.container_state(uid, name).exit_code or 0

        session = execsession.Attach(log=self.runtime.log_path(uid, name), stdin=stdin,
                                     running=running, exit_code=exit_code)
        try:
            await execsession.pump(ws, session, first_channel=_first(opts), command=[name])
        finally:
            session.close_stdin()  # a session that ended with the container keeps it
        return ws

    # -- port-forward --

    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request)
        pid = self._pod_pid(pod)
        ws = await self._websocket(request, (streams.SPDY_TUNNEL,
                                             *streams.PORT_FORWARD_PROTOCOLS))

        async def dial(port: int) -> portforward.Conn:
            return await portforward.dial(pid, port)

        where = f"{meta.namespace(pod)}/{meta.name(pod)}"
        if ws.ws_protocol == streams.SPDY_TUNNEL:
            await portforward.serve_spdy_tunnel(ws, dial, where)
            return ws
        try:
            ports = streams.parse_ports(request.query.getall("ports", []))
        except ValueError as e:
            await ws.send_bytes(streams.encode(1, str(e).encode()))
            await ws.close()
            return ws
        await portforward.serve_channels(ws, ports, dial, where)
        return ws

    def _pod_pid(self, pod: Obj) -> int:
        """Any running container's process: they all share the pod's netns."""
        uid = meta.uid(pod)
        for c in pod["spec"].get("containers") or []:
            state = self.runtime.container_state(uid, c["name"])
            if state.status is ContainerStatus.RUNNING and state.pid is not None:
                return state.pid
        raise Refused(400, f"pod {meta.name(pod)} has no running container to forward to")


def _first(opts: execsession.ExecOptions) -> int:
    if opts.stdout:
        return Channel.STDOUT
    return Channel.STDERR if opts.stderr else Channel.ERROR


async def _fail(ws: web.WebSocketResponse, message: str) -> None:
    await ws.send_bytes(streams.encode(Channel.ERROR,
                                       json.dumps(streams.error_status(message)).encode()))
    await ws.close()
