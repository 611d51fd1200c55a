"""The in-process API server most unit tests of the API drive: a registry
on a fresh SQLite store with the bootstrap objects, and an aiohttp test
client that sends the admin token. A module may define its own instead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from netplane.cluster.apiserver.registry import Registry
from netplane.cluster.server import build_app
from tests.unit.test_apiserver import TOKEN, AiohttpClient, make_registry


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = make_registry(tmp_path)
    yield reg
    reg.store.close()


@pytest.fixture
async def api(aiohttp_client: AiohttpClient, registry: Registry) -> TestClient[Any, Any]:
    return await aiohttp_client(build_app(registry, frozenset({TOKEN})),
                                headers={"Authorization": f"Bearer {TOKEN}"})
