"""The agent's own HTTP endpoint: Prometheus ``/metrics`` and ``/healthz`` on
the node's address (as kube-proxy serves on :10249), and the same plus JSON
views of what the agent programmed (``/state/<name>``) on a root-only Unix
socket in its state directory, which ``netplane routes`` reads, and the
few things root may ask of it there (``POST /actions/<name>``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

METRICS_PORT = 10249

MetricsSource = Callable[[], str]
StateView = Callable[[], Any]
Action = Callable[[], Awaitable[Any]]


class StatusServer:
    def __init__(self, *, socket_path: Path, address: str | None,
                 port: int = METRICS_PORT) -> None:
        self.socket_path, self.address, self.port = socket_path, address, port
        self.metrics: list[MetricsSource] = []
        self.views: dict[str, StateView] = {}
        self.actions: dict[str, Action] = {}
        self._runner: web.AppRunner | None = None

    def add_metrics(self, source: MetricsSource) -> None:
        self.metrics.append(source)

    def add_view(self, name: str, view: StateView) -> None:
        self.views[name] = view

    def add_action(self, name: str, action: Action) -> None:
        """``POST /actions/NAME`` on the Unix socket: something the node does
        when its root user asks (``netplane mesh rotate``)."""
        self.actions[name] = action

    async def _metrics(self, request: web.Request) -> web.Response:
        text = "".join(src() for src in self.metrics)
        return web.Response(text=text, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    @staticmethod
    def _root_only(request: web.Request) -> None:
        """Views and actions are for the Unix socket (root), not the node's address."""
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is None or sock.family != socket.AF_UNIX:
            raise web.HTTPNotFound()

    async def _state(self, request: web.Request) -> web.Response:
        self._root_only(request)
        view = self.views.get(request.match_info["name"])
        if view is None:
            raise web.HTTPNotFound(text=f"no view {request.match_info['name']!r}; "
                                        f"views: {', '.join(sorted(self.views))}")
        # Views may read kernel state back: keep that off the event loop.
        data = await asyncio.to_thread(view)
        return web.Response(text=json.dumps(data, default=str),
                            content_type="application/json")

    async def _action(self, request: web.Request) -> web.Response:
        self._root_only(request)
        action = self.actions.get(request.match_info["name"])
        if action is None:
            raise web.HTTPNotFound(text=f"no action {request.match_info['name']!r}")
        return web.Response(text=json.dumps(await action(), default=str),
                            content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/actions/{name}", self._action)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/state/{name}", self._state)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o600)
        await web.SockSite(self._runner, unix).start()
        if self.address:
            await web.TCPSite(self._runner, self.address, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
