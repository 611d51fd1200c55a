"""Cluster DNS: the Kubernetes DNS specification served from a record index.

``index`` is fed by informers (Services, EndpointSlices, Endpoints, Pods);
``records`` turns a parsed name (``parse``) into records; ``table`` keeps the
replies pre-built; ``server`` answers over UDP and TCP and forwards outside
names (``forward``); ``explain`` says why a name answers what it does;
``metrics`` renders Prometheus text. Imports only ``netplane.api``."""
