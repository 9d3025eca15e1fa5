# Translator (translator/) and the file provider (provider/file/): golden files and benchmarks.

.PHONY: golden
golden: ## regenerate translator/testdata/*.out.yaml from the current translator (review the diff!)
	$(GO) test ./translator -run 'TestGolden' -update

.PHONY: bench-translator
bench-translator: ## run the translator benchmarks as docs/benchmarks.md records them
	$(GO) test ./translator -run '^$$' -bench 'Translate' -benchmem -benchtime 5x -count 3
