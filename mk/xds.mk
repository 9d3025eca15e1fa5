# xDS: the ADS server (xds), its client (xds/client), Envoy bootstraps (xds/bootstrap), `mcpgate run`.

# grpcurl: the one on PATH, else built and run by go run.
GRPCURL ?= $(or $(shell command -v grpcurl),$(GO) run github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4)
XDS_ADDR ?= 127.0.0.1:18000

.PHONY: xds-test
xds-test: ## run the tests of xds, xds/client, xds/bootstrap and mcpgate run
	$(GO) test ./xds/... ./cmd/mcpgate/ ./internal/standalone/ ./internal/supervisor/

.PHONY: xds-list
xds-list: ## list the gRPC services of a running mcpgate with grpcurl (XDS_ADDR=127.0.0.1:18000)
	$(GRPCURL) -plaintext $(XDS_ADDR) list

.PHONY: xds-bench
xds-bench: ## benchmark a file edit -> new snapshot version seen by a Delta ADS client, at 1,000 routes
	$(GO) test -run '^$$' -bench 'BenchmarkFileEditToSnapshot' -benchtime 20x -count 3 ./internal/standalone/

.PHONY: bootstrap
bootstrap: ## print the Envoy bootstrap of a gateway (GATEWAY=NS/NAME, XDS_ADDR=...)
	@$(GO) run ./cmd/mcpgate bootstrap --gateway $(GATEWAY) --xds-addr $(XDS_ADDR)
