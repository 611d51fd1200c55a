"""``netplane image import NODE|--all FILE.tar``: a ``docker save`` tarball
loaded into the engines of a lab's docker-runtime nodes, as ``docker load``
would on each (no registry is needed for the image to run there)."""

from __future__ import annotations

from pathlib import Path

from netplane.cli.objects import CliError
from netplane.lab import lab as labmod
from netplane.lab.paths import LabPaths
from netplane.node.runtime.dockerd import DOCKER_DIR, Engine, EngineError


def engines(lab: LabPaths, node: str | None) -> list[tuple[str, Engine]]:
    """The chosen node's engine, or every worker's (``node`` None)."""
    nodes = labmod.recorded_nodes(lab)
    if node is not None and node not in nodes:
        raise CliError(f"error: no node {node} in lab {lab.name!r} (nodes: "
                       f"{', '.join(nodes) or 'none'})")
    out = []
    for name in [node] if node is not None else nodes:
        engine = Engine(state=lab.node_dir(name) / DOCKER_DIR, netns=None)
        if not engine.running():
            raise CliError(f"error: {name} runs no Docker Engine (the lab is on the process "
                           "runtime? netplane lab up --runtime docker)")
        out.append((name, engine))
    return out


def import_image(lab: LabPaths, tarball: Path, *, node: str | None) -> list[str]:
    if not tarball.is_file():
        raise CliError(f"error: {tarball}: no such file")
    lines = []
    for name, engine in engines(lab, node):
        try:
            loaded = engine.load(tarball)
        except (OSError, EngineError) as e:
            raise CliError(f"error: {name}: {e}") from None
        except Exception as e:  # the engine's refusal, in its words
            raise CliError(f"error: {name}: {e}") from None
        lines += [f"{name}: Loaded image: {image}" for image in loaded] or \
            [f"{name}: loaded (the tarball named no image)"]
    return lines
