#!/usr/bin/env bash
# `make run`: a working gateway on the lab's example. Starts the example fetch server (the lab's
# mcp-website-fetcher) on 127.0.0.1:8000 and `mcpgate run -f examples/mcp-connectivity`, which serves
# xDS and ext_proc and starts the data plane (Envoy if found, else bin/envoydouble, with a notice).
# The Gateway listens on 127.0.0.1:8080. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

require_bins
pick_data_plane
port_free 8000 "fetch server"
port_free 8080 "the Gateway's listener"
port_free 18000 "mcpgate xDS"
port_free 18001 "mcpgate ext_proc"
port_free 19000 "mcpgate admin"

PIDS=()
trap stop_pids EXIT
trap 'exit 130' INT TERM

bin/fetchserver -addr 127.0.0.1:8000 &
PIDS+=($!)
wait_port 8000 10

inspector="npx -y @modelcontextprotocol/inspector@$(grep '^@modelcontextprotocol/inspector@' test/e2e/testdata/npm-tools.txt | cut -d@ -f3) --cli"
cat >&2 <<HELP

mcpgate: Gateway on http://127.0.0.1:8080 (SSE: /sse, Streamable HTTP: /mcp) -> fetch server on 127.0.0.1:8000.
The example includes the lab's JWT policy (jwt.yaml) and CEL rule (rbac.yaml): send the lab's token.

  export DEV_TOKEN=\$(cat examples/mcp-connectivity/dev-token.txt)
  $inspector --config examples/mcp-connectivity/mcp-inspector-config.json --server agentgateway \\
    --header "Authorization: Bearer \$DEV_TOKEN" --method tools/list
  $inspector --config examples/mcp-connectivity/mcp-inspector-config.json --server agentgateway \\
    --header "Authorization: Bearer \$DEV_TOKEN" --method tools/call --tool-name fetch --tool-arg url=http://127.0.0.1:19000/healthz

Edit the files in examples/mcp-connectivity and the gateway picks the change up. Metrics: http://127.0.0.1:19000/metrics

HELP

bin/mcpgate run -f examples/mcp-connectivity --envoy-bin "$DATA_PLANE" &
PIDS+=($!)
wait "${PIDS[1]}"
