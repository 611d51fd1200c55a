"""Printing objects the way kubectl does: aligned columns from the server's
Table, or the objects themselves as YAML or JSON."""

from __future__ import annotations

import json
from typing import Any

from netplane.api import codec
from netplane.api.meta import Obj


def format_table(table: Obj, *, wide: bool = False, with_namespace: bool = False,
                 headers: bool = True) -> str:
    cols = [(i, c) for i, c in enumerate(table.get("columnDefinitions", []))
            if wide or int(c.get("priority", 0)) == 0]
    header = [c["name"].upper() for _, c in cols]
    rows = []
    for row in table.get("rows", []):
        cells = [_cell(row["cells"][i]) for i, _ in cols]
        if with_namespace:
            cells.insert(0, str(row.get("object", {}).get("metadata", {}).get("namespace", "")))
        rows.append(cells)
    if with_namespace:
        header.insert(0, "NAMESPACE")
    lines = [header, *rows] if headers else rows
    if not lines:
        return ""
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "<none>"
    return str(value)


def dump(obj: Any, output: str) -> str:
    if output == "json":
        return json.dumps(obj, indent=4)
    return codec.to_yaml(obj).rstrip()


def as_list(items: list[Obj]) -> Obj:
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
            "items": items}
