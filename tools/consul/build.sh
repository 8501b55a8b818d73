#!/usr/bin/env bash
# Builds the Consul binary used by tests and the e2e harness into
# <repo>/bin/consul, from tools/consul/go.mod (Consul v1.14.0, MPL-2.0),
# unless it is already there. The first build takes a few minutes; Go's
# build cache makes later ones fast. Set FORCE=1 to rebuild.
#
#   tools/consul/build.sh            # prints the binary's path
#   HEXRIDE_CONSUL_BIN=$(tools/consul/build.sh) go test ./...
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/bin/consul"

if [[ -x "$out" && "${FORCE:-0}" != 1 ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$root/bin"
tmp="$out.tmp-$$"
trap 'rm -f "$tmp"' EXIT
start=$(date +%s)
(cd "$here" && GOWORK=off go build -o "$tmp" github.com/hashicorp/consul)
mv -f "$tmp" "$out"
echo "built $("$out" version | head -n1) in $(( $(date +%s) - start ))s" >&2
echo "$out"
