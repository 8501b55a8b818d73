#!/usr/bin/env bash
# Builds the NATS server (nats-server v2.15.3, Apache-2.0, JetStream
# included) that the event stream tests run as a separate process, into
# <repo>/bin/nats-server from tools/nats/go.mod, unless it is already there.
# The first build takes a minute or two; Go's build cache makes later ones
# fast. FORCE=1 rebuilds.
#
#   tools/nats/build.sh              # prints the binary's path
#   HEXRIDE_NATS_BIN=$(tools/nats/build.sh) go test ./services/trip/relay
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/bin/nats-server"

if [[ -x "$out" && "${FORCE:-0}" != 1 ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$root/bin"
tmp="$out.tmp-$$"
trap 'rm -f "$tmp"' EXIT
start=$(date +%s)
(cd "$here" && GOWORK=off go build -o "$tmp" github.com/nats-io/nats-server/v2)
mv -f "$tmp" "$out"
echo "built $("$out" --version) in $(( $(date +%s) - start ))s" >&2
echo "$out"
