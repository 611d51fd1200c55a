"""Readiness probes (httpGet, tcpSocket, exec-free), run from the node to the
pod's IP, as the kubelet does. A container without a readiness probe is
ready once it runs."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from netplane.api.meta import Obj


def _port(container: Obj, value: Any) -> int | None:
    if isinstance(value, int):
        return value
    for p in container.get("ports") or []:
        if p.get("name") == value:
            return int(p["containerPort"])
    return int(value) if isinstance(value, str) and value.isdigit() else None


async def _tcp(ip: str, port: int, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(ip, port)
            writer.close()
            return True
    except (OSError, TimeoutError):
        return False


async def _http(ip: str, port: int, path: str, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(ip, port)
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {ip}\r\n"
                         "User-Agent: netplane-probe\r\n\r\n".encode())
            await writer.drain()
            line = await reader.readline()
            writer.close()
    except (OSError, TimeoutError):
        return False
    parts = line.split()
    return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400


async def probe(container: Obj, ip: str) -> bool:
    spec = container.get("readinessProbe") or {}
    timeout = float(spec.get("timeoutSeconds", 1))
    if "httpGet" in spec:
        port = _port(container, spec["httpGet"].get("port"))
        return port is not None and await _http(ip, port, spec["httpGet"].get("path", "/"),
                                                timeout)
    if "tcpSocket" in spec:
        port = _port(container, spec["tcpSocket"].get("port"))
        return port is not None and await _tcp(ip, port, timeout)
    return True


@dataclass
class ProbeState:
    """Per container: when it started, last result and when it was probed."""

    started: float = field(default_factory=time.monotonic)
    ready: bool = False
    last: float = 0.0
    successes: int = 0
    failures: int = 0

    async def update(self, container: Obj, ip: str) -> bool:
        spec = container.get("readinessProbe")
        if not spec:
            self.ready = True
            return True
        now = time.monotonic()
        if now - self.started < float(spec.get("initialDelaySeconds", 0)):
            return False
        if now - self.last < float(spec.get("periodSeconds", 10)) and self.last:
            return self.ready
        self.last = now
        ok = await probe(container, ip)
        self.successes, self.failures = (self.successes + 1, 0) if ok else \
            (0, self.failures + 1)
        # The kubelet's thresholds: ready after successThreshold successes in a
        # row, not ready after failureThreshold failures in a row (default 3).
        if ok and self.successes >= int(spec.get("successThreshold", 1)):
            self.ready = True
        elif not ok and self.failures >= int(spec.get("failureThreshold", 3)):
            self.ready = False
        return self.ready
