"""Cluster DNS: a record index fed from Services (and later Endpoints and
Pods), answered over UDP and TCP. Imports only ``netplane.api``."""
