#!/usr/bin/env bash
# Builds the DNS server's compiled fast path, netplane/dns/_fastpath.c, into
# an extension module beside it, named with the interpreter's EXT_SUFFIX so
# that this interpreter (and no other) imports it. Without it the server
# runs the pure-Python path.
#
#     scripts/build-ext.sh [PYTHON]     (default: .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-.venv/bin/python}
src=netplane/dns/_fastpath.c
include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
suffix=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
if [ ! -f "$include/Python.h" ]; then
    echo "build-ext: no Python.h in $include (Debian: apt-get install python3-dev)" >&2
    exit 2
fi
out=netplane/dns/_fastpath$suffix
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
"${CC:-cc}" -std=gnu11 -O2 -Wall -Wextra -fPIC -shared -I"$include" -o "$tmp" "$src"
mv -f "$tmp" "$out"  # a rename: a running server keeps the module it loaded
echo "$out"
