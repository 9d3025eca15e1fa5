# ext_proc (extproc/): the benchmark against the protocol's floor, and the parser fuzzers.

EXTPROC_BENCH_ARGS ?= -duration 700ms -rounds 9 -conc 1,16,256 -sockets tcp,unix
FUZZTIME ?= 30s

.PHONY: bench-extproc
bench-extproc: ## ext_proc (JWT+CEL on and off) vs a bare CONTINUE server, TCP and Unix socket; table for docs/benchmarks.md
	$(GO) run ./extproc/bench $(EXTPROC_BENCH_ARGS)

.PHONY: fuzz-extproc
fuzz-extproc: ## fuzz the JSON-RPC scanner, the SSE stream rewriter and the stream state machine, FUZZTIME each (default 30s)
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./extproc/mcp
	$(GO) test -run '^$$' -fuzz '^FuzzSSEStream$$' -fuzztime $(FUZZTIME) ./extproc/mcp
	$(GO) test -run '^$$' -fuzz '^FuzzStream$$' -fuzztime $(FUZZTIME) ./extproc
