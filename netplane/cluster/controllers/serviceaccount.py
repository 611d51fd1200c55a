"""ServiceAccount controller: every active namespace has a ``default``
ServiceAccount, made again if someone deletes it (kube-controller-manager's
serviceaccount controller)."""

from __future__ import annotations

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import AlreadyExists, Client, NotFound
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.controllers.shared import Informers

DEFAULT = "default"


class ServiceAccountController:
    def __init__(self, client: Client, informers: Informers) -> None:
        self.client = client
        self.namespaces = informers.namespaces
        self.accounts = informers.serviceaccounts
        self.queue = WorkQueue()
        self.namespaces.add_handler(self._on_namespace)
        self.accounts.add_handler(self._on_account)

    def _on_namespace(self, prev: Obj | None, cur: Obj | None) -> None:
        if cur is not None:
            self.queue.add(meta.name(cur))

    def _on_account(self, prev: Obj | None, cur: Obj | None) -> None:
        if cur is None and prev is not None and meta.name(prev) == DEFAULT:
            self.queue.add(meta.namespace(prev))

    async def reconcile(self, namespace: str) -> None:
        ns = self.namespaces.get(namespace)
        if ns is None or meta.is_deleting(ns):
            return
        if self.accounts.get(DEFAULT, namespace) is not None:
            return
        body = {"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": DEFAULT, "namespace": namespace}}
        try:
            await self.client.create(resources.SERVICEACCOUNT, body, namespace)
        except (AlreadyExists, NotFound):
            pass  # made meanwhile, or the namespace went

    async def run(self) -> None:
        for ns in self.namespaces.items():
            self.queue.add(meta.name(ns))
        await drain("serviceaccounts", self.queue, self.reconcile)
