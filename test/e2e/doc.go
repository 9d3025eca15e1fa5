// Package e2e is mcpgate's end-to-end suite: it starts `mcpgate run` on a copy of
// examples/mcp-connectivity, the data plane (a real Envoy when ENVOY_BIN is set, else
// bin/envoydouble), real MCP servers (examples/fetchserver, @modelcontextprotocol/server-everything,
// the go-sdk conformance everything-server, also over legacy HTTP+SSE through test/sseadapter), and
// drives the lab's steps with the real MCP inspector CLI and the MCP conformance suite. The code is in the _test.go files; `make e2e` runs it and
// `make tools` installs the npm packages it needs. Logs of every process go to test/e2e/out/.
package e2e
