#!/usr/bin/env bash
# Builds a Go program pinned by a tools module (tools/<name>/go.mod, a
# `tool` directive) into <repo>/bin/<binary> (default <name>), unless it
# is already there.
# The first build takes minutes; Go's build cache makes later ones fast.
# FORCE=1 rebuilds. Prints the binary's path.
#
#   tools/build-tool.sh consul github.com/hashicorp/consul
#   tools/build-tool.sh nats github.com/nats-io/nats-server/v2 nats-server
set -euo pipefail

name="$1" pkg="$2" binary="${3:-$1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
here="$root/tools/$name"
out="$root/bin/$binary"

if [[ -x "$out" && "${FORCE:-0}" != 1 ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$root/bin"
tmp="$out.tmp-$$"
trap 'rm -f "$tmp"' EXIT
start=$(date +%s)
echo "building $name from $pkg (tools/$name/go.mod)…" >&2
(cd "$here" && GOWORK=off go build -o "$tmp" "$pkg")
mv -f "$tmp" "$out"
echo "built $name in $(( $(date +%s) - start ))s" >&2
echo "$out"
