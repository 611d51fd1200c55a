"""Reconcile loops driven by watches: deployments, replica sets, endpoints,
garbage collection. Each module is one controller."""
