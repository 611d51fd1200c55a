"""iptables mode: chains named as kube-proxy names them, rendered as
iptables-restore text, applied whole or in part."""
