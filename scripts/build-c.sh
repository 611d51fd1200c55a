#!/usr/bin/env bash
# Builds one of the runtime's C programs, netplane/node/runtime/PROGRAM.c
# (echo: the netplane/echo image's server; launcher: what turns a process
# into a container), into OUT. Statically linked where the C library allows
# it: no shared libc mapped into each pod, about half the resident set, and
# no dynamic loader to run at each start. The tests build them the same
# way, so that they check the source as it is.
#
#     scripts/build-c.sh PROGRAM OUT
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/build-c.sh PROGRAM OUT"
program=${1:?$usage}
out=${2:?$usage}
src=netplane/node/runtime/$program.c
if [ ! -f "$src" ]; then
    echo "build-c: no $src" >&2
    exit 2
fi
cc=${CC:-cc}
flags=(-std=gnu11 -O2 -Wall -Wextra -s)
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# -print-file-name echoes the bare name back when there is no such file.
if [ "$("$cc" -print-file-name=libc.a)" != libc.a ]; then
    flags+=(-static)
fi
"$cc" "${flags[@]}" -o "$tmp" "$src"
mv -f "$tmp" "$out"  # a rename: running pods keep the binary they started
