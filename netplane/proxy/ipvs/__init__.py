"""IPVS mode: virtual servers through netlink, with iptables rules over
ipsets for what IPVS does not do."""
