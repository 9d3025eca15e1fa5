# End-to-end suite (test/e2e), the MCP peers it drives, the demo and docs/conformance.md.
#
# The npm tools (test/e2e/testdata/npm-tools.txt) are pinned and installed once each into their own
# prefix $(MCPGATE_CACHE)/npm/PACKAGE@VERSION; a prefix counts as installed when its .installed stamp
# exists (written only after npm succeeded, so an interrupted install is redone).

E2E_NPM_DIR   := $(MCPGATE_CACHE)/npm
# One PACKAGE@VERSION a line; the suite and scripts/ read the same file.
E2E_NPM_TOOLS := $(shell cat test/e2e/testdata/npm-tools.txt)
E2E_NPM_STAMPS := $(foreach t,$(E2E_NPM_TOOLS),$(E2E_NPM_DIR)/$(t)/.installed)

TEST_DEPS += tools

.PHONY: tools
tools: $(E2E_NPM_STAMPS) ## install the pinned npm tools the end-to-end suite drives (inspector, server-everything, conformance, Node 22)

# npm installs into a temporary prefix that is renamed when complete.
$(E2E_NPM_DIR)/%/.installed:
	@echo "installing $* into $(E2E_NPM_DIR)/$*"
	@rm -rf "$(E2E_NPM_DIR)/$*" "$(E2E_NPM_DIR)/$*.tmp"
	@mkdir -p "$(E2E_NPM_DIR)/$*.tmp"
	@npm install --prefix "$(E2E_NPM_DIR)/$*.tmp" --no-audit --no-fund --loglevel=error "$*" >/dev/null
	@mv "$(E2E_NPM_DIR)/$*.tmp" "$(E2E_NPM_DIR)/$*"
	@touch "$@"

.PHONY: e2e
e2e: tools ## run the end-to-end suite (ENVOY_BIN=/path/to/envoy uses a real Envoy, else bin/envoydouble)
	$(GO) test -count=1 -v ./test/e2e/

.PHONY: conformance-doc
conformance-doc: tools ## run the MCP conformance suite direct and through the gateway; rewrite docs/conformance.md
	MCPGATE_WRITE_CONFORMANCE_DOC=1 $(GO) test -count=1 -run 'TestConformance' -v ./test/e2e/

.PHONY: demo
demo: build tools ## the lab's steps, command by command, against a local gateway (real Envoy if found)
	./scripts/demo.sh
