#!/usr/bin/env bash
# Installs what netplane needs on a Debian 12 machine: the kernel tools it
# drives (iproute2, iptables, nftables, conntrack, ipset), the tools users and
# tests run inside pods (curl, dig), the benchmarks' tools (dnsperf,
# dnsmasq, wrk, h2load, nginx), a C compiler and the interpreter's headers
# for the C parts (the netplane/echo image's server, the container launcher,
# the DNS server's compiled fast path), the docker runtime's engine
# (docker.io, with busybox-static for its images), stress-ng for the
# isolation experiment, and a virtualenv with the project.
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (netplane creates network namespaces)" >&2
    exit 1
fi

packages=(iproute2 iptables nftables conntrack ipset dnsutils curl iputils-ping dnsperf dnsmasq-base wrk
          nghttp2-client nginx-light
          python3 python3-venv python3-dev procps psmisc util-linux kmod gcc libc6-dev
          stress-ng busybox-static docker.io tcpdump)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -q
    # The engine must not start on its own: a dockerd in the root network
    # namespace would add docker0 and its netfilter rules there. netplane
    # starts one per node, inside that node's namespace.
    policy=/usr/sbin/policy-rc.d
    own_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod +x "$policy"
        own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    [ -z "$own_policy" ] || rm -f "$policy"
fi
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    # bench/mesh.py starts an nginx of its own; the packaged one is not wanted.
    systemctl disable --now docker.service docker.socket containerd.service nginx.service \
        >/dev/null 2>&1 || true
fi
root_netns=$(readlink /proc/self/ns/net)
for pid in $(pgrep -x dockerd || true); do
    if [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$root_netns" ]; then
        echo "setup: a dockerd (pid $pid) runs in the root network namespace; stop it first" >&2
        exit 1
    fi
done
if ip link show docker0 >/dev/null 2>&1; then
    echo "setup: docker0 exists in the root network namespace; remove it first" >&2
    exit 1
fi

# Bridged pod traffic must pass iptables (same-node service backends).
[ -d /proc/sys/net/bridge ] || modprobe br_netfilter || true

# The distribution's interpreter, not whatever is first on PATH: the lab
# runs as root from system services and from sudo, where PATH differs.
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv .venv
fi
stamp=.venv/.netplane-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    touch "$stamp"
fi
# The runtime's C programs, beside the interpreter the runtime starts
# containers with: the netplane/echo image's server and the launcher every
# container starts through (without them the process runtime runs the
# Python modules), and the docker runtime's pod sandbox (netplane/pause).
for program in echo launcher pause; do
    bin=.venv/bin/netplane-$program
    if [ ! -x "$bin" ] || [ "netplane/node/runtime/$program.c" -nt "$bin" ] \
            || [ scripts/build-c.sh -nt "$bin" ]; then
        echo "setup: building $bin"
        bash scripts/build-c.sh "$program" "$bin"
    fi
done
# The DNS server's compiled fast path, beside its module; without it the
# server answers every query in Python.
suffix=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
ext=netplane/dns/_fastpath$suffix
if [ ! -f "$ext" ] || [ netplane/dns/_fastpath.c -nt "$ext" ] || [ scripts/build-ext.sh -nt "$ext" ]; then
    echo "setup: building $ext"
    bash scripts/build-ext.sh .venv/bin/python >/dev/null
fi
# `netplane` on root's PATH, unless another one is already there.
link=/usr/local/bin/netplane
if [ ! -e "$link" ]; then
    ln -sfn "$PWD/.venv/bin/netplane" "$link"
fi
echo "setup: ready ($(readlink -f "$link" 2>/dev/null || echo .venv/bin/netplane))"
