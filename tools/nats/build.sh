#!/usr/bin/env bash
# Builds the NATS server (nats-server v2.15.3, Apache-2.0, JetStream
# included) that the event stream tests run as a separate process, into
# <repo>/bin/nats-server, pinned by tools/nats/go.mod.
#
#   HEXRIDE_NATS_BIN=$(tools/nats/build.sh) go test ./cmd/hexride
exec bash "$(dirname "${BASH_SOURCE[0]}")/../build-tool.sh" nats github.com/nats-io/nats-server/v2 nats-server
