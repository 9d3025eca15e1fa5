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
check_ports 8000:"fetch server" 8080:"the Gateway's listener" 18000:"mcpgate xDS" 18001:"mcpgate ext_proc" \
  19000:"mcpgate admin" 15000:"Envoy admin"

PIDS=()
trap stop_pids EXIT
trap 'exit 130' INT TERM

bin/fetchserver -addr 127.0.0.1:8000 &
PIDS+=($!)
wait_port 8000 10 "${PIDS[0]}"

# mcpgate's stdout is the data plane's access log and ext_proc's audit lines; its stderr, the logs.
bin/mcpgate run -f examples/mcp-connectivity --envoy-bin "$DATA_PLANE" "${ENVOY_FLUSH_ARGS[@]}" &
PIDS+=($!)
wait_port 8080 60 "${PIDS[1]}"

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
Ctrl-C stops the gateway and the fetch server.

HELP

# Until Ctrl-C, or until either process ends (the EXIT trap then stops the other).
rc=0
wait -n "${PIDS[@]}" || rc=$?
if ((rc != 0)); then echo "a process of make run exited with code $rc; stopping the others" >&2; fi
exit "$rc"
