#!/usr/bin/env bash
# make observe: hexride dev with a simulated city, traced into a local
# Jaeger and scraped by a local Prometheus with the shipped alert rules.
# Needs Debian's prometheus (apt-get install -y prometheus) and builds
# bin/jaeger the first time (tools/jaeger/build.sh, several minutes).
# Ctrl-C stops all three.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
command -v prometheus >/dev/null || { echo "prometheus not found: apt-get install -y prometheus" >&2; exit 1; }
jaeger="$(bash "$root/tools/jaeger/build.sh")"
data="$(mktemp -d)"
pids=()
# hexride first (it drains and flushes its traces), then the backends.
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  rm -rf "$data"
}
trap cleanup EXIT INT TERM
# The backends get their own session: Ctrl-C reaches hexride (and this
# script) only, so hexride can flush its last traces before they stop.
setsid "$jaeger" --config "$here/jaeger.yaml" >"$data/jaeger.log" 2>&1 & pids+=($!)
(cd "$here" && exec setsid prometheus --config.file=prometheus.yml --storage.tsdb.path="$data/prom" \
  --web.listen-address=127.0.0.1:9090 >"$data/prometheus.log" 2>&1) & pids+=($!)
echo "jaeger:     http://127.0.0.1:16686/  (traces of service hexride-dev)"
echo "prometheus: http://127.0.0.1:9090/   (alerts: http://127.0.0.1:9090/alerts)"
echo "console:    http://127.0.0.1:8080/"
cd "$root"
echo "building bin/hexride…" >&2
go build -o bin/hexride ./cmd/hexride
bin/hexride dev --sim --otlp-endpoint 127.0.0.1:4317 "$@" & pids+=($!)
wait "${pids[-1]}"
