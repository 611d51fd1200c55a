"""The Gateway API's kinds as CustomResourceDefinitions (``gateway-api.yaml``
beside this module), which the lab installs so that routes can be applied."""

from __future__ import annotations

import functools
import importlib.resources

import yaml

from netplane.api.meta import Obj


@functools.cache
def _text() -> str:
    return (importlib.resources.files("netplane.mesh") / "gateway-api.yaml").read_text()


def gateway_api_crds() -> list[Obj]:
    """Fresh copies, in the order to apply them."""
    return [doc for doc in yaml.safe_load_all(_text()) if doc]
