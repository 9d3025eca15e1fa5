# mcpgate. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO     ?= go
# Slow things (npm tools, kube-apiserver and etcd builds) are cached here, outside the clone, and
# built only when missing.
CACHE  ?= $(HOME)/.cache/mcpgate
export MCPGATE_CACHE := $(CACHE)
# GATEWAY is the NS/NAME whose bootstrap the bootstrap targets print (mk/xds.mk, mk/envoydouble.mk).
GATEWAY ?= agentgateway-system/agentgateway
# APT_GET installs Debian packages: as is when make runs as root, else through sudo when there is
# one (without it, apt-get says what it lacks).
APT_GET := $(if $(filter 0,$(shell id -u)),,$(if $(shell command -v sudo),sudo ))apt-get

# Each area adds its own targets in mk/AREA.mk. Test prerequisites (npm tools, kube-apiserver
# assets) are appended to TEST_DEPS there.
TEST_DEPS :=
include $(wildcard mk/*.mk)

.PHONY: help
help: ## list the targets (the README's two first: run, test)
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z0-9-]*:.*## / {printf "  %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST) | sort | \
	  awk '/^  (run|test) / {print; next} {rest = rest $$0 "\n"} END {printf "%s", rest}'

# VERSION is what `mcpgate version` prints.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build
build: ## build bin/mcpgate and the example and test binaries
	@echo '$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/ ./cmd/... ./examples/... ./test/envoydouble' >&2 # on stderr: make run's stdout is the access log
	@$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/ ./cmd/... ./examples/... ./test/envoydouble

.PHONY: run
run: build ## run the gateway on the lab's example (examples/mcp-connectivity) with the example fetch server
	@./scripts/run.sh

.PHONY: test
test: generate-check lint build $(TEST_DEPS) ## run every test: unit, golden, xDS, ext_proc, end to end, Kubernetes
	$(GO) test ./...

# STATICCHECK_VERSION is the staticcheck make lint runs (staticcheck.conf says which checks),
# installed into $(CACHE)/bin when missing, outside go.mod.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(CACHE)/bin/staticcheck-$(STATICCHECK_VERSION)

$(STATICCHECK):
	GOBIN=$(CACHE)/bin/staticcheck.tmp $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(CACHE)/bin/staticcheck.tmp/staticcheck $@ && rmdir $(CACHE)/bin/staticcheck.tmp

.PHONY: lint
lint: $(STATICCHECK) ## go vet and staticcheck (checks in staticcheck.conf)
	$(GO) vet ./...
	$(STATICCHECK) ./...

.PHONY: bench
bench: ## run the Go benchmarks (results go into docs/benchmarks.md by hand)
	$(GO) test -run '^$$' -bench . -benchmem ./...

# PROTOC_VERSION is the protoc the committed proto/ code was generated with (its header names it;
# generate-check compares): Debian's protobuf-compiler, installed when missing.
PROTOC_VERSION := 3.21.12

.PHONY: protoc
protoc: ## install the protoc that the generated code needs (Debian's protobuf-compiler) when it is missing
	@command -v protoc >/dev/null || { \
	  echo "protoc is missing: installing Debian's protobuf-compiler"; \
	  $(APT_GET) update -qq && $(APT_GET) install -y -qq protobuf-compiler >/dev/null; }
	@v="$$(protoc --version)"; [ "$$v" = "libprotoc $(PROTOC_VERSION)" ] || { \
	  echo "protoc is $$v; the generated code in proto/ is protoc $(PROTOC_VERSION)'s (make generate-check would differ)"; exit 1; }

.PHONY: generate
generate: protoc ## regenerate deepcopy, CRDs and protobuf Go code
	$(GO) tool controller-gen object paths=./api/...
	$(GO) tool controller-gen crd paths=./api/... output:crd:dir=deploy/crds
	protoc --plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" --go_out=. \
	  --go_opt=module=github.com/mcpgate/mcpgate -I . proto/policy/v1/policy.proto

# GENERATED are the folders make generate writes into.
GENERATED := api deploy/crds proto

.PHONY: generate-check
generate-check: protoc ## fail if make generate would change the generated files (it runs it: they are then fresh)
	@set -e; before=$$(mktemp -d); trap 'rm -rf "$$before"' EXIT; \
	for d in $(GENERATED); do mkdir -p "$$before/$$d"; cp -a "$$d/." "$$before/$$d/"; done; \
	$(MAKE) --no-print-directory generate; \
	stale=$$(for d in $(GENERATED); do diff -r "$$before/$$d" "$$d" || true; done); \
	if [ -n "$$stale" ]; then echo "$$stale" | head -40; \
	  echo "generated files were stale: make generate has rewritten them (review and commit)"; exit 1; fi
