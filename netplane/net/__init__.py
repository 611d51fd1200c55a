"""Pod network (CNI analog): host-local IPAM, the node bridge and pod veths,
routes to other nodes' pod CIDRs, network-namespace helpers. Imports only
``netplane.api``."""
