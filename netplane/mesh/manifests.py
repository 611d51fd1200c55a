"""The kinds the mesh reads, as CustomResourceDefinitions beside this
module: the Gateway API's (``gateway-api.yaml``) and netplane's
AuthorizationPolicy (``security.yaml``). The lab installs them."""

from __future__ import annotations

import functools
import importlib.resources

import yaml

from netplane.api.meta import Obj


@functools.cache
def _text(name: str) -> str:
    return (importlib.resources.files("netplane.mesh") / name).read_text()


def gateway_api_crds() -> list[Obj]:
    """Fresh copies, in the order to apply them."""
    return [doc for doc in yaml.safe_load_all(_text("gateway-api.yaml")) if doc]


def mesh_crds() -> list[Obj]:
    """Every kind the mesh reads."""
    return gateway_api_crds() + [d for d in yaml.safe_load_all(_text("security.yaml")) if d]
