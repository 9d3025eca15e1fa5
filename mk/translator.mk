# Translator (translator/) and the file provider (provider/file/): golden files and benchmarks.

.PHONY: golden
golden: ## regenerate translator/testdata/*.out.yaml from the current translator (review the diff!)
	$(GO) test ./translator -run 'TestGolden' -update

.PHONY: bench-translator
bench-translator: ## run the translator benchmarks as docs/benchmarks.md records them
	$(GO) test ./translator -run '^$$' -bench 'Translate' -benchmem -benchtime 5x -count 3

.PHONY: fuzz-translator
fuzz-translator: ## fuzz the file loader and the translator with the golden inputs' mutations, and Envoy's path normalization (internal/envoypath), FUZZTIME each (default 30s)
	$(GO) test -run '^$$' -fuzz '^FuzzTranslate$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./translator
	$(GO) test -run '^$$' -fuzz '^FuzzNormalize$$' -fuzztime $(FUZZTIME) ./internal/envoypath
