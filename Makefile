# hexride build. `make` alone lists the targets.
SHELL := /bin/bash
GO    ?= go
BUF   := $(GO) tool -modfile=tools/buf/go.mod buf
# Git ref to compare the API against in `make breaking`.
AGAINST ?= main
# How long each fuzz target runs in `make fuzz`.
FUZZTIME ?= 30s
# Where `make build` puts the binary.
BIN := bin/hexride

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

.PHONY: proto
proto: ## Regenerate buf/validate and the Go code from proto/.
	cd tools/buf && $(GO) run ./vendorproto ../../third_party/protovalidate
	$(BUF) format -w
	$(BUF) generate

.PHONY: lint
lint: ## buf lint, buf format check, gofmt, go vet.
	$(BUF) lint
	$(BUF) format -d --exit-code
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>&1); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: breaking
breaking: ## buf breaking against AGAINST (a git ref; default main).
	$(BUF) breaking --against '.git#ref=$(AGAINST)'

.PHONY: test
test: consul ## The whole test suite (the README's test command).
	HEXRIDE_CONSUL_BIN=$(CURDIR)/bin/consul $(GO) test -race -count=1 -timeout 25m ./...

.PHONY: build
build: ## Build bin/hexride.
	$(GO) build -o $(BIN) ./cmd/hexride

.PHONY: roads-cities
roads-cities: ## Rebuild the committed road graphs (roads/cities) from the Delaware OSM extract.
	$(GO) mod download github.com/paulmach/osm@v0.8.0
	$(GO) run ./cmd/hexride roads build \
	  --osm "$$($(GO) list -m -f '{{.Dir}}' github.com/paulmach/osm)/testdata/delaware-latest.osm.pbf" \
	  --bbox 39.70,-75.62,39.80,-75.50 --out roads/cities/wilmington.roads

.PHONY: run
run: ## Run the whole platform in one process (hexride dev).
	$(GO) run ./cmd/hexride dev

.PHONY: consul
consul: ## Build the Consul agent the tests run (bin/consul).
	bash tools/consul/build.sh

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME.
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

.PHONY: bench
bench: ## Run the hot-path benchmarks (5 runs each).
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./geo/... ./dispatch/...

.PHONY: ensure-no-changes
ensure-no-changes: ## Fail if the work tree differs from HEAD (after make proto).
	@if [ -n "$$(git status --porcelain)" ]; then git status --porcelain; git diff | head -50; echo "generated files are stale: run make proto and commit"; exit 1; fi
