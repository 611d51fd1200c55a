"""Informers shared by all controllers of one manager, so each resource is
watched once."""

from __future__ import annotations

from dataclasses import dataclass

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import Client, Informer


@dataclass
class Informers:
    pods: Informer
    services: Informer
    endpoints: Informer
    replicasets: Informer
    deployments: Informer
    nodes: Informer
    endpointslices: Informer
    namespaces: Informer
    serviceaccounts: Informer
    jobs: Informer
    cronjobs: Informer
    daemonsets: Informer
    statefulsets: Informer
    controllerrevisions: Informer
    leases: Informer
    pdbs: Informer
    hpas: Informer

    @classmethod
    def for_client(cls, client: Client) -> Informers:
        return cls(*(Informer(client, r) for r in (
            resources.POD, resources.SERVICE, resources.ENDPOINTS, resources.REPLICASET,
            resources.DEPLOYMENT, resources.NODE, resources.ENDPOINTSLICE, resources.NAMESPACE,
            resources.SERVICEACCOUNT, resources.JOB, resources.CRONJOB, resources.DAEMONSET,
            resources.STATEFULSET, resources.CONTROLLERREVISION, resources.LEASE,
            resources.PODDISRUPTIONBUDGET, resources.HORIZONTALPODAUTOSCALER)))

    def all(self) -> list[Informer]:
        return [self.pods, self.services, self.endpoints, self.replicasets, self.deployments,
                self.nodes, self.endpointslices, self.namespaces, self.serviceaccounts,
                self.jobs, self.cronjobs, self.daemonsets, self.statefulsets,
                self.controllerrevisions, self.leases, self.pdbs, self.hpas]


def owned_by(obj: Obj, owner: Obj) -> bool:
    ref = meta.controller_of(obj)
    return ref is not None and ref.get("uid") == meta.uid(owner)


def split_key(key: str) -> tuple[str, str]:
    ns, _, name = key.partition("/")
    return ns, name
