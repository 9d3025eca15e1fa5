# envoydouble: the test double of Envoy (test/envoydouble), for machines without an envoy binary.
# Started like Envoy: bin/envoydouble -c bootstrap.yaml [--log-level info] [--service-node ID]
# [--service-cluster NS/GW]; --mode validate checks a bootstrap and exits.

.PHONY: envoydouble
envoydouble: ## build bin/envoydouble, the Envoy test double (run it like envoy: bin/envoydouble -c bootstrap.yaml)
	$(GO) build -o bin/envoydouble ./test/envoydouble

.PHONY: envoydouble-test
envoydouble-test: ## run the Envoy test double's tests (real Delta ADS, ext_proc gRPC, HTTP upstreams)
	$(GO) test ./test/envoydouble/...

.PHONY: envoydouble-validate
envoydouble-validate: envoydouble ## check that the double accepts the bootstrap `mcpgate bootstrap` writes (GATEWAY=NS/NAME)
	@mkdir -p $(CACHE)
	$(GO) run ./cmd/mcpgate bootstrap --gateway $(GATEWAY) > $(CACHE)/envoydouble-bootstrap.yaml
	bin/envoydouble --mode validate -c $(CACHE)/envoydouble-bootstrap.yaml
