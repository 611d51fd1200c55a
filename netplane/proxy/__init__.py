"""Service proxy and network policy (kube-proxy and a policy plugin's
analog): renders Services, Endpoints and NetworkPolicies into kernel rules
as pure text, then applies them in one atomic step. One subpackage per mode
(``iptables``, ``nftables``, ``ipvs``); the model, change tracking, sync
loop, trace vocabulary and metrics they share sit here. Imports only
``netplane.api``."""
