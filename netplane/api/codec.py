"""Reading manifests (multi-document YAML or JSON) and writing objects."""

from __future__ import annotations

import json
from typing import Any

import yaml

from netplane.api.meta import Obj


class ManifestError(ValueError):
    """A manifest that cannot be read; the message names the source and line."""


def load_documents(text: str, source: str = "<stdin>") -> list[Obj]:
    """Every non-empty document in ``text``; ``List`` kinds are flattened."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ManifestError(f"{where}: invalid YAML: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise ManifestError(f"{source}: invalid YAML: {e}") from None
    out: list[Obj] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ManifestError(f"{source}: document {i + 1} is not a mapping (an object with "
                                "apiVersion, kind and metadata)")
        if doc.get("kind", "").endswith("List") and isinstance(doc.get("items"), list):
            out.extend(doc["items"])
            continue
        for key in ("apiVersion", "kind"):
            if not doc.get(key):
                raise ManifestError(f"{source}: document {i + 1}: {key} is not set")
        out.append(doc)
    return out


def to_json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False)


def to_yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)
