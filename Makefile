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
# Where make proto writes: new untracked files here are ungenerated code.
GENERATED := proto third_party/protovalidate
# Go stamps the VCS revision itself (-buildvcs), except in a git worktree
# (golang/go#58218): then these -X values stand in; `hexride version`
# prefers what Go recorded.
VCS_LDFLAGS = -X main.vcsRevision=$(shell git rev-parse HEAD 2>/dev/null) \
  -X main.vcsModified=$(shell if [ -n "$$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then echo true; else echo false; fi)

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
	$(GO) vet -tags chaos ./cmd/hexride

.PHONY: breaking
breaking: ## buf breaking against AGAINST (a git ref; default main).
	$(BUF) breaking --against '.git#ref=$(AGAINST)'

.PHONY: test
test: consul nats ## The whole test suite (the README's test command).
	HEXRIDE_CONSUL_BIN=$(CURDIR)/bin/consul HEXRIDE_NATS_BIN=$(CURDIR)/bin/nats-server $(GO) test -race -count=1 -timeout 25m ./...

.PHONY: chaos
chaos: consul jaeger ## The chaos suite: faults while rides run, and the three-region WAN drill (cmd/hexride, build tag chaos; root for ip netns).
	HEXRIDE_CONSUL_BIN=$(CURDIR)/bin/consul $(GO) test -tags chaos -count=1 -timeout 30m -run 'TestChaos|TestObserve' -v ./cmd/hexride

.PHONY: observe
observe: ## hexride dev with a simulated city, traced into a local Jaeger and scraped by a local Prometheus.
	bash infra/observability/local/run.sh

.PHONY: rules
rules: ## Check the alert rules and run their unit tests (promtool).
	promtool check rules infra/observability/alerts.yml
	cd infra/observability && promtool test rules alerts_test.yml

.PHONY: build
build: ## Build bin/hexride.
	$(GO) build -buildvcs=auto -ldflags '$(VCS_LDFLAGS)' -o $(BIN) ./cmd/hexride

.PHONY: roads-cities
roads-cities: ## Rebuild the committed road graphs (roads/cities) from the Delaware OSM extract.
	$(GO) mod download github.com/paulmach/osm@v0.8.0
	$(GO) run ./cmd/hexride roads build \
	  --osm "$$($(GO) list -m -f '{{.Dir}}' github.com/paulmach/osm)/testdata/delaware-latest.osm.pbf" \
	  --bbox 39.70,-75.62,39.80,-75.50 --out roads/cities/wilmington.roads

.PHONY: run
run: ## Build bin/hexride, then run the whole platform in one process (hexride dev).
	@echo "building $(BIN) (the first build compiles H3's C code: a minute or two; later builds are cached)..."
	@$(MAKE) --no-print-directory build
	$(BIN) dev

# make image: a static hexride (H3 needs cgo, so glibc is linked in
# statically; netgo and osusergo keep glibc's NSS out) packed as an OCI
# image by tools/image (go-containerregistry, its own module).
STATIC_BIN   ?= bin/hexride-static
IMAGE_LAYOUT ?= bin/hexride-oci
IMAGE_TAR    ?= bin/hexride-image.tar
IMAGE_REF    ?= hexride:dev

.PHONY: image
image: ## Build a static hexride and pack it as an OCI image (bin/hexride-oci, bin/hexride-image.tar); no Docker needed.
	@echo "building $(STATIC_BIN) (static, cgo; the first build takes minutes)..."
	CGO_ENABLED=1 $(GO) build -buildvcs=auto -trimpath -tags netgo,osusergo \
	  -ldflags '-s -w -linkmode external -extldflags -static $(VCS_LDFLAGS)' -o $(STATIC_BIN) ./cmd/hexride
	cd tools/image && GOWORK=off $(GO) run . --binary $(abspath $(STATIC_BIN)) --layout $(abspath $(IMAGE_LAYOUT)) \
	  --tar $(abspath $(IMAGE_TAR)) --ref $(IMAGE_REF) --revision "$$(git rev-parse HEAD 2>/dev/null)"

.PHONY: jaeger
jaeger: ## Build the Jaeger all-in-one the live tracing test sends to (bin/jaeger).
	bash tools/jaeger/build.sh

.PHONY: consul
consul: ## Build the Consul agent the tests run (bin/consul).
	bash tools/consul/build.sh

# --- event stream (issue 16 part 4): the NATS server the stream tests run ---
.PHONY: nats
nats: ## Build the NATS server (JetStream) the event stream tests run (bin/nats-server).
	bash tools/nats/build.sh
# --- end event stream ---

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
ensure-no-changes: ## Fail if make proto changed a tracked file or left a new file under GENERATED.
	@changed="$$(git status --porcelain --untracked-files=no; git status --porcelain --untracked-files=all -- $(GENERATED) | grep '^??' || true)"; \
	if [ -n "$$changed" ]; then echo "$$changed"; git diff | head -50; echo "generated files are stale: run make proto and commit"; exit 1; fi
