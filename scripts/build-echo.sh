#!/usr/bin/env bash
# Builds the C server of the netplane/echo image (netplane/node/runtime/echo.c)
# into OUT. Statically linked where the C library allows it: no shared libc
# mapped into each pod, about half the resident set. The tests build it the
# same way, so that they check the source as it is.
#
#     scripts/build-echo.sh OUT
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/build-echo.sh OUT}
cc=${CC:-cc}
flags=(-std=gnu11 -O2 -Wall -Wextra -s)
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# -print-file-name echoes the bare name back when there is no such file.
if [ "$("$cc" -print-file-name=libc.a)" != libc.a ]; then
    flags+=(-static)
fi
"$cc" "${flags[@]}" -o "$tmp" netplane/node/runtime/echo.c
mv -f "$tmp" "$out"  # a rename: running pods keep the binary they started
