"""``netplane exec POD -- CMD``: runs a command inside a pod's container, in
its network, mount and UTS namespaces, like ``kubectl exec``.

It works where the pod's agent keeps its state on this machine (the lab):
the container's process is found through the agent's runtime state."""

from __future__ import annotations

import os

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cli.objects import CliError
from netplane.cluster.client import Client, NotFound
from netplane.lab.paths import LabPaths
from netplane.node.runtime.process import ContainerStatus, ProcessRuntime


def container_pid(pod: Obj, container: str | None, lab: LabPaths) -> int:
    """The pid of a running container of ``pod``, from its agent's state."""
    names = [c["name"] for c in pod["spec"].get("containers") or []]
    name = container or names[0]
    if name not in names:
        raise CliError(f"error: container {name} is not valid for pod {meta.name(pod)} "
                       f"(containers: {', '.join(names)})")
    node = pod["spec"].get("nodeName")
    if not node:
        raise CliError(f"error: pod {meta.name(pod)} is not scheduled to a node yet")
    runtime = ProcessRuntime(state_dir=lab.node_dir(node) / "runtime")
    state = runtime.container_state(meta.uid(pod), name)
    if state.status is not ContainerStatus.RUNNING or state.pid is None:
        raise CliError(f"error: container {name} of pod {meta.name(pod)} is not running "
                       f"(state: {state.status.value})")
    return state.pid


async def exec_in_pod(client: Client, pod_name: str, command: list[str], *, namespace: str,
                      container: str | None, lab: LabPaths) -> int:
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise CliError("error: give a command: netplane exec POD -- CMD")
    try:
        pod = await client.get(resources.POD, pod_name, namespace)
    except NotFound:
        raise CliError(f'error: pods "{pod_name}" not found in namespace {namespace}') from None
    pid = container_pid(pod, container, lab)
    await client.close()
    os.execvp("nsenter", ["nsenter", "-t", str(pid), "--net", "--mount", "--uts",
                          "--", *command])
