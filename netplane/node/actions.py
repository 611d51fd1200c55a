"""What probes and lifecycle hooks do to a container, as the kubelet does it:
GET a URL or open a TCP connection from the node to the pod's address, or
run a command inside the container's namespaces."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
from dataclasses import dataclass
from typing import Any

from netplane.api.meta import Obj
from netplane.node.execsession import exec_argv, process_env

# The kubelet reads at most this much of a probe's or hook's output.
MAX_OUTPUT = 10 * 1024


@dataclass(frozen=True)
class Result:
    ok: bool
    message: str = ""


def port_number(container: Obj, value: Any) -> int | None:
    """A handler's ``port``: a number, or the name of one of the container's ports."""
    if isinstance(value, int):
        return value
    for p in container.get("ports") or []:
        if p.get("name") == value:
            return int(p["containerPort"])
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _reason(e: OSError) -> str:
    """As Go words a failed dial: ``connection refused``."""
    return os.strerror(e.errno).lower() if e.errno else str(e)


def _insecure() -> ssl.SSLContext:
    # The kubelet does not verify a probe target's certificate.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def http_get(spec: Obj, container: Obj, pod_ip: str, timeout: float) -> Result:
    """``httpGet``: success is a status from 200 to 399."""
    port = port_number(container, spec.get("port"))
    if port is None:
        return Result(False, f"invalid port {spec.get('port')!r}")
    host = str(spec.get("host") or pod_ip)
    path = str(spec.get("path") or "/")
    headers = {"Host": f"{host}:{port}", "User-Agent": "kube-probe/1.32", "Accept": "*/*"}
    for h in spec.get("httpHeaders") or []:
        headers[str(h.get("name"))] = str(h.get("value", ""))
    tls = _insecure() if str(spec.get("scheme", "HTTP")).upper() == "HTTPS" else None
    url = f"{'https' if tls else 'http'}://{host}:{port}{path}"
    request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) \
        + "Connection: close\r\n\r\n"
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=tls)
            try:
                writer.write(request.encode())
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except TimeoutError:
        return Result(False, f'Get "{url}": context deadline exceeded')
    except OSError as e:
        return Result(False, f'Get "{url}": dial tcp {host}:{port}: connect: {_reason(e)}')
    parts = line.split()
    code = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
    if 200 <= code < 400:
        return Result(True)
    return Result(False, f"HTTP probe failed with statuscode: {code}")


async def tcp_socket(spec: Obj, container: Obj, pod_ip: str, timeout: float) -> Result:
    port = port_number(container, spec.get("port"))
    if port is None:
        return Result(False, f"invalid port {spec.get('port')!r}")
    host = str(spec.get("host") or pod_ip)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return Result(True)
    except TimeoutError:
        return Result(False, f"dial tcp {host}:{port}: i/o timeout")
    except OSError as e:
        return Result(False, f"dial tcp {host}:{port}: connect: {_reason(e)}")


async def run_in(pid: int, command: list[str], timeout: float) -> tuple[int | None, str]:
    """Runs ``command`` in the namespaces and environment of the container
    whose process is ``pid``: its exit code (None on timeout) and output."""
    proc = await asyncio.create_subprocess_exec(
        *exec_argv(pid, command), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=process_env(pid), start_new_session=True)
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except (TimeoutError, asyncio.CancelledError) as e:
        # The group: nsenter's child in the container holds the pipes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.shield(proc.wait())
        if isinstance(e, asyncio.CancelledError):
            raise
        return None, ""
    return proc.returncode, out[:MAX_OUTPUT].decode(errors="replace")


async def exec_command(spec: Obj, pid: int | None, timeout: float) -> Result:
    """``exec``: success is exit code 0."""
    command = [str(a) for a in spec.get("command") or []]
    if pid is None:
        return Result(False, "container is not running")
    if not command:
        return Result(False, "no command given")
    try:
        code, out = await run_in(pid, command, timeout)
    except (OSError, ValueError) as e:
        return Result(False, str(e))
    if code is None:
        return Result(False, f"command {command!r} timed out")
    if code != 0:
        return Result(False, f"command {command!r} exited with {code}: {out.strip()}")
    return Result(True, out)


async def run_hook(hook: Obj, container: Obj, *, pod_ip: str, pid: int | None,
                   timeout: float) -> Result:
    """A ``lifecycle`` handler (postStart or preStop): exec, httpGet or sleep."""
    if "exec" in hook:
        return await exec_command(hook["exec"], pid, timeout)
    if "httpGet" in hook:
        return await http_get(hook["httpGet"], container, pod_ip, timeout)
    if "sleep" in hook:
        await asyncio.sleep(min(float(hook["sleep"].get("seconds", 0)), timeout))
        return Result(True)
    # tcpSocket is accepted by the API for old manifests but does nothing.
    return Result(True)
