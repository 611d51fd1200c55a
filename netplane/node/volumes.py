"""Pod volumes on the node, as the kubelet's volume plugins make them, each a
folder under the pod's state that containers get bound at their
``volumeMounts``: ``emptyDir`` (a tmpfs with ``medium: Memory``),
``hostPath``, and the projections ``configMap``, ``secret``, ``downwardAPI``
and ``projected``. Projections are written the kubelet's atomic way: the
files live in a timestamped folder, ``..data`` links to it, and each
top-level name links through ``..data``; an update writes a new folder and
swaps ``..data`` with one rename, so a reader never sees half of it."""

from __future__ import annotations

import base64
import datetime
import math
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.api.quantity import quantity

DATA_LINK = "..data"
DEFAULT_MODE = 0o644
# A projected token's default life, as the kubelet asks for it.
TOKEN_SECONDS = 3607

Files = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)
Lookup = Callable[[str, str], Obj | None]  # (namespace, name) -> object or None
TokenSource = Callable[[Obj], Awaitable[str]]  # serviceAccountToken source -> token


class VolumeError(Exception):
    """The volume cannot be set up yet (a missing ConfigMap, a bad path)."""


@dataclass(frozen=True)
class Sources:
    """Where projections read from: the agent's caches and its API client."""

    configmaps: Lookup
    secrets: Lookup
    token: TokenSource | None = None
    claims: Lookup | None = None
    volumes: Callable[[str], Obj | None] | None = None  # PersistentVolumes by name


# -- the atomic writer --


def _timestamped() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return f"..{now:%Y_%m_%d_%H_%M_%S.%f}"


def current_files(folder: Path) -> Files:
    """What ``..data`` holds now (empty when never written)."""
    data = folder / DATA_LINK
    if not data.is_dir():
        return {}
    out: Files = {}
    for path in data.resolve().rglob("*"):
        if path.is_file():
            rel = str(path.relative_to(data.resolve()))
            out[rel] = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
    return out


def atomic_write(folder: Path, files: Files) -> bool:
    """Makes ``folder`` show exactly ``files``; True when anything changed."""
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / DATA_LINK).exists() and current_files(folder) == files:
        return False
    old = (folder / DATA_LINK).resolve() if (folder / DATA_LINK).is_symlink() else None
    fresh = folder / _timestamped()
    fresh.mkdir(mode=0o755)
    for rel, (content, mode) in files.items():
        path = fresh / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
    tmp = folder / f"{DATA_LINK}_tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(fresh.name)
    os.replace(tmp, folder / DATA_LINK)
    tops = {rel.split("/", 1)[0] for rel in files}
    for top in tops:
        link = folder / top
        if not link.is_symlink():
            link.symlink_to(f"{DATA_LINK}/{top}")
    for entry in folder.iterdir():
        if not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()  # a key that is gone
    if old is not None and old.parent == folder:
        shutil.rmtree(old, ignore_errors=True)
    return True


# -- what each projection holds --


def _mode(item: Obj, default: int) -> int:
    return int(item["mode"]) if item.get("mode") is not None else default


def _keyed(kind: str, name: str, data: Mapping[str, bytes], items: list[Obj] | None,
           default: int, optional: bool) -> Files:
    """ConfigMap or Secret keys as files: all of them, or ``items`` (key to path)."""
    if not items:
        return {key: (value, default) for key, value in data.items()}
    out: Files = {}
    for item in items:
        key = str(item["key"])
        if key not in data:
            if optional:
                continue
            raise VolumeError(f'configmap references non-existent config key: {key}'
                              if kind == "configmap" else
                              f'secret "{name}" has no key "{key}"')
        out[str(item["path"])] = (data[key], _mode(item, default))
    return out


def configmap_data(cm: Obj) -> dict[str, bytes]:
    data = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return data


def secret_data(secret: Obj) -> dict[str, bytes]:
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    data.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return data


def configmap_files(src: Obj, pod: Obj, sources: Sources, default: int) -> Files:
    name = str(src.get("name", ""))
    cm = sources.configmaps(meta.namespace(pod), name)
    if cm is None:
        if src.get("optional"):
            return {}
        raise VolumeError(f'configmap "{name}" not found')
    return _keyed("configmap", name, configmap_data(cm), src.get("items"), default,
                  bool(src.get("optional")))


def secret_files(src: Obj, pod: Obj, sources: Sources, default: int) -> Files:
    name = str(src.get("secretName") or src.get("name") or "")
    secret = sources.secrets(meta.namespace(pod), name)
    if secret is None:
        if src.get("optional"):
            return {}
        raise VolumeError(f'secret "{name}" not found')
    return _keyed("secret", name, secret_data(secret), src.get("items"), default,
                  bool(src.get("optional")))


def _labels_text(values: Mapping[str, str]) -> str:
    # The kubelet's format: key="value" lines, sorted, values quoted as Go does.
    return "\n".join(f'{k}="{_go_quote(v)}"' for k, v in sorted(values.items()))


def _go_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def field_value(pod: Obj, path: str, *, pod_ip: str = "", host_ip: str = "") -> str:
    """A ``fieldRef`` of the downward API."""
    md = pod.get("metadata", {})
    spec = pod.get("spec", {})
    if path == "metadata.labels":
        return _labels_text(md.get("labels") or {})
    if path == "metadata.annotations":
        return _labels_text(md.get("annotations") or {})
    for prefix, values in (("metadata.labels", md.get("labels") or {}),
                           ("metadata.annotations", md.get("annotations") or {})):
        if path.startswith(f"{prefix}['") and path.endswith("']"):
            return str(values.get(path[len(prefix) + 2:-2], ""))
    simple = {"metadata.name": md.get("name", ""), "metadata.namespace": md.get("namespace", ""),
              "metadata.uid": md.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
              "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
              "status.podIP": pod_ip, "status.podIPs": pod_ip,
              "status.hostIP": host_ip, "status.hostIPs": host_ip}
    if path not in simple:
        raise VolumeError(f"unsupported fieldRef {path!r}")
    return str(simple[path])


def resource_value(pod: Obj, ref: Obj, *, node_cpus: int, node_memory: int,
                   container_name: str = "") -> str:
    """A ``resourceFieldRef``: the container's limit or request, divided by
    ``divisor`` and rounded up; a missing limit is the node's capacity."""
    name = str(ref.get("containerName") or container_name)
    container: Obj = next((c for c in pod["spec"].get("containers") or []
                           if c["name"] == name), {})
    which, _, res = str(ref.get("resource", "")).partition(".")
    if res not in ("cpu", "memory", "ephemeral-storage"):
        raise VolumeError(f"unsupported resourceFieldRef {ref.get('resource')!r}")
    given = ((container.get("resources") or {}).get(which) or {}).get(res)
    if given is not None:
        amount = quantity(str(given))
    elif which == "limits" or res != "cpu":
        amount = float(node_cpus if res == "cpu" else node_memory)
    else:
        amount = 0.0
    divisor = quantity(str(ref.get("divisor") or "1"))
    value = amount / divisor if divisor else amount
    whole = int(value) if value == int(value) else int(value) + 1
    return str(whole)


def downward_files(src: Obj, pod: Obj, default: int, *, pod_ip: str, host_ip: str,
                   node_cpus: int, node_memory: int) -> Files:
    out: Files = {}
    for item in src.get("items") or []:
        if "fieldRef" in item:
            value = field_value(pod, str(item["fieldRef"].get("fieldPath", "")),
                                pod_ip=pod_ip, host_ip=host_ip)
        elif "resourceFieldRef" in item:
            value = resource_value(pod, item["resourceFieldRef"], node_cpus=node_cpus,
                                   node_memory=node_memory)
        else:
            continue
        out[str(item["path"])] = (value.encode(), _mode(item, default))
    return out


# -- the set of a pod's volumes --


@dataclass
class NodeFacts:
    pod_ip: str
    host_ip: str
    cpus: int = os.cpu_count() or 1
    memory: int = 0


class PodVolumes:
    """Makes and refreshes one pod's volumes under ``root`` (its folder)."""

    def __init__(self, pod: Obj, root: Path, sources: Sources, facts: NodeFacts) -> None:
        self.pod, self.root, self.sources, self.facts = pod, root, sources, facts
        self.paths: dict[str, Path] = {}
        self.tmpfs: list[Path] = []
        # When the projected tokens are to be asked for again: at 80% of the
        # shortest one's life, as the kubelet's token manager does.
        self.tokens_due = math.inf

    def _folder(self, name: str) -> Path:
        return self.root / name

    async def set_up(self) -> None:
        """Makes every volume (the projections' current content too)."""
        self.tokens_due = math.inf
        for vol in self.pod["spec"].get("volumes") or []:
            name = str(vol["name"])
            if name in self.paths and not _projected(vol):
                continue
            self.paths[name] = await self._set_up(vol)

    async def refresh(self) -> list[str]:
        """Rewrites projections whose sources changed; their names."""
        changed = []
        self.tokens_due = math.inf
        for vol in self.pod["spec"].get("volumes") or []:
            if _projected(vol) and str(vol["name"]) in self.paths:
                files = await self._projection(vol)
                if atomic_write(self._folder(str(vol["name"])), files):
                    changed.append(str(vol["name"]))
        return changed

    async def _set_up(self, vol: Obj) -> Path:
        folder = self._folder(str(vol["name"]))
        if "emptyDir" in vol:
            return self._empty_dir(vol["emptyDir"] or {}, folder)
        if "hostPath" in vol:
            return host_path(vol["hostPath"])
        if "persistentVolumeClaim" in vol:
            return self._claimed(vol["persistentVolumeClaim"] or {})
        if _projected(vol):
            atomic_write(folder, await self._projection(vol))
            return folder
        kinds = sorted(k for k in vol if k != "name")
        raise VolumeError(f"volume {vol['name']!r}: {', '.join(kinds) or 'no source'} volumes "
                          "are not supported by this node")

    def _claimed(self, ref: Obj) -> Path:
        """The folder of the volume bound to the claim (the kubelet waits,
        with FailedMount, until the claim is bound)."""
        name = str(ref.get("claimName", ""))
        claims, volumes = self.sources.claims, self.sources.volumes
        pvc = claims(meta.namespace(self.pod), name) if claims is not None else None
        if pvc is None:
            raise VolumeError(f'persistentvolumeclaim "{name}" not found')
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        pv = volumes(str(pv_name)) if pv_name and volumes is not None else None
        if pvc.get("status", {}).get("phase") != "Bound" or pv is None:
            raise VolumeError(f'persistentvolumeclaim "{name}" is not bound')
        spec = pv.get("spec") or {}
        if "hostPath" in spec:
            return host_path(spec["hostPath"])
        if "local" in spec:
            return host_path({"path": spec["local"].get("path", ""), "type": "Directory"})
        raise VolumeError(f"volume {pv_name}: only hostPath and local volumes can be mounted "
                          "by this node")

    def _empty_dir(self, spec: Obj, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True, mode=0o777)
        folder.chmod(0o777)  # as the kubelet makes it: writable by any user
        if spec.get("medium") == "Memory" and folder not in self.tmpfs:
            options = "mode=1777"
            if spec.get("sizeLimit"):
                options += f",size={int(quantity(str(spec['sizeLimit'])))}"
            out = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                 capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise VolumeError(f"mounting a tmpfs for emptyDir: {out.stderr.strip()}")
            self.tmpfs.append(folder)
        return folder

    async def _projection(self, vol: Obj) -> Files:
        pod, sources, f = self.pod, self.sources, self.facts
        if "configMap" in vol:
            src = vol["configMap"] or {}
            return configmap_files(src, pod, sources, _default_mode(src))
        if "secret" in vol:
            src = vol["secret"] or {}
            return secret_files(src, pod, sources, _default_mode(src))
        if "downwardAPI" in vol:
            src = vol["downwardAPI"] or {}
            return downward_files(src, pod, _default_mode(src), pod_ip=f.pod_ip,
                                  host_ip=f.host_ip, node_cpus=f.cpus, node_memory=f.memory)
        spec = vol["projected"] or {}
        default = _default_mode(spec)
        out: Files = {}
        for source in spec.get("sources") or []:
            if "configMap" in source:
                out.update(configmap_files(source["configMap"], pod, sources, default))
            elif "secret" in source:
                out.update(secret_files(source["secret"], pod, sources, default))
            elif "downwardAPI" in source:
                out.update(downward_files(source["downwardAPI"], pod, default, pod_ip=f.pod_ip,
                                          host_ip=f.host_ip, node_cpus=f.cpus,
                                          node_memory=f.memory))
            elif "serviceAccountToken" in source:
                if sources.token is None:
                    raise VolumeError("no token source for a serviceAccountToken projection")
                token_src = source["serviceAccountToken"]
                out[str(token_src["path"])] = ((await sources.token(token_src)).encode(),
                                               default)
                life = int(token_src.get("expirationSeconds", TOKEN_SECONDS))
                self.tokens_due = min(self.tokens_due, time.time() + 0.8 * life)
        return out

    def mounts(self, container: Obj) -> list[tuple[Path, str, bool]]:
        """(source on the node, mountPath, read-only) for the container."""
        out = []
        for m in container.get("volumeMounts") or []:
            name = str(m["name"])
            if name not in self.paths:
                raise VolumeError(f"volume {name!r} is not set up")
            source = self.paths[name]
            if m.get("subPath"):
                source = source / str(m["subPath"])
                if not source.exists() and not source.is_symlink():
                    source.mkdir(parents=True, exist_ok=True)
            readonly = bool(m.get("readOnly")) or _read_only_kind(self.pod, name)
            out.append((source, str(m["mountPath"]), readonly))
        return out


def _projected(vol: Obj) -> bool:
    return any(k in vol for k in ("configMap", "secret", "downwardAPI", "projected"))


def _read_only_kind(pod: Obj, name: str) -> bool:
    """Projections are always mounted read-only, as the kubelet mounts them."""
    vol: Obj = next((v for v in pod["spec"].get("volumes") or [] if v.get("name") == name), {})
    return _projected(vol)


def _default_mode(src: Obj) -> int:
    mode = src.get("defaultMode")
    return int(mode) if mode is not None else DEFAULT_MODE


HOST_PATH_TYPES = {"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
                   "CharDevice", "BlockDevice"}


def host_path(spec: Obj) -> Path:
    """A ``hostPath`` volume, checked (or made) as its ``type`` says."""
    path = Path(str(spec.get("path", "")))
    kind = str(spec.get("type") or "")
    if not path.is_absolute():
        raise VolumeError(f"hostPath {path} is not absolute")
    if kind not in HOST_PATH_TYPES:
        raise VolumeError(f"hostPath type {kind!r} is not supported")
    if kind == "DirectoryOrCreate" or (not kind and not path.exists()):
        # Unset type: no check; a missing path is made a folder, as runtimes do.
        path.mkdir(parents=True, exist_ok=True, mode=0o755)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o644)
    checks = {"Directory": path.is_dir, "File": path.is_file, "Socket": path.is_socket,
              "CharDevice": path.is_char_device, "BlockDevice": path.is_block_device}
    if kind in checks and not checks[kind]():
        raise VolumeError(f"hostPath type check failed: {path} is not a {kind}")
    return path
