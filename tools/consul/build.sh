#!/usr/bin/env bash
# Builds the Consul agent the tests and the e2e harness run (Consul v1.14.0,
# MPL-2.0, pinned by tools/consul/go.mod) into <repo>/bin/consul.
#
#   HEXRIDE_CONSUL_BIN=$(tools/consul/build.sh) go test ./...
exec bash "$(dirname "${BASH_SOURCE[0]}")/../build-tool.sh" consul github.com/hashicorp/consul
