#!/usr/bin/env bash
# Builds Jaeger (the all-in-one binary of module version v1.76.0,
# Apache-2.0; OTLP in, query API out, in-memory storage), which the live
# tracing test and `make observe` run, into <repo>/bin/jaeger.
#
#   HEXRIDE_JAEGER_BIN=$(tools/jaeger/build.sh) make chaos
exec bash "$(dirname "${BASH_SOURCE[0]}")/../build-tool.sh" jaeger github.com/jaegertracing/jaeger/cmd/jaeger
