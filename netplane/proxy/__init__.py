"""Service proxy (kube-proxy analog): renders Services and Endpoints into
kernel rules as pure text, then applies them in one atomic step. Imports
only ``netplane.api``."""
