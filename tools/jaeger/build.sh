#!/usr/bin/env bash
# Builds Jaeger (the all-in-one binary of module version v1.76.0,
# Apache-2.0; OTLP in, query API out, in-memory storage) that the live
# tracing test sends traces to, into <repo>/bin/jaeger from
# tools/jaeger/go.mod, unless it is already there. The first build takes
# several minutes; Go's build cache makes later ones fast. FORCE=1 rebuilds.
#
#   tools/jaeger/build.sh            # prints the binary's path
#   HEXRIDE_JAEGER_BIN=$(tools/jaeger/build.sh) make chaos
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/bin/jaeger"

if [[ -x "$out" && "${FORCE:-0}" != 1 ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$root/bin"
tmp="$out.tmp-$$"
trap 'rm -f "$tmp"' EXIT
start=$(date +%s)
(cd "$here" && GOWORK=off go build -o "$tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
mv -f "$tmp" "$out"
echo "built $("$out" version 2>/dev/null | head -c 200) in $(( $(date +%s) - start ))s" >&2
echo "$out"
