#!/usr/bin/env bash
# `make demo`: the steps of the lab (shared/seed/mcp-connectivity-lab.md, examples/mcp-connectivity)
# against a local gateway, each command printed before its answer. Kubernetes steps become file
# edits: `mcpgate run` watches a folder, and "kubectl apply" is a copy into it. The data plane is
# Envoy when ENVOY_BIN is set or `envoy` is on PATH, else bin/envoydouble (with a notice).
# Uses the lab's ports (8080, 8000, 18000, 18001, 19000), so stop `make run` first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

require_bins
pick_data_plane
for p in 8000 8001 8080 18000 18001 19000; do port_free "$p" "demo"; done

cache="${MCPGATE_CACHE:-$HOME/.cache/mcpgate}"
INSPECTOR_BIN="$cache/npm/$(grep '^@modelcontextprotocol/inspector@' test/e2e/testdata/npm-tools.txt)/node_modules/.bin/mcp-inspector"
[[ -x "$INSPECTOR_BIN" ]] || { echo "$INSPECTOR_BIN is missing: run make tools" >&2; exit 1; }

WORK="$(mktemp -d)"
WATCHED="$WORK/watched"   # what mcpgate run watches: the lab's "cluster"
CONFIG="examples/mcp-connectivity/mcp-inspector-config.json"
export MCP_STORAGE_DIR="$WORK/inspector" MCP_INSPECTOR_SECRET_STORE=memory
export MCP_INSPECTOR_OAUTH_STATE_PATH="$MCP_STORAGE_DIR/oauth.json"
mkdir -p "$WATCHED" "$MCP_STORAGE_DIR"

PIDS=()
cleanup() { stop_pids; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

bold=$'\e[1m' dim=$'\e[2m' off=$'\e[0m'
[[ -t 1 ]] || bold='' dim='' off=''

# step TITLE: a heading.
step() { printf '\n%s== %s ==%s\n' "$bold" "$1" "$off"; }
# say TEXT: an explanation.
say() { printf '%s%s%s\n' "$dim" "$1" "$off"; }
# show 'COMMAND': print the command, run it, print its exit code when not 0.
show() {
  printf '\n%s$ %s%s\n' "$bold" "$1" "$off"
  local rc=0
  eval "$1" || rc=$?
  if ((rc != 0)); then printf '%s(exit code %d)%s\n' "$dim" "$rc" "$off"; fi
}
# mcp-inspector: the pinned @modelcontextprotocol/inspector (what the lab runs with npx -y).
mcp-inspector() { "$INSPECTOR_BIN" "$@"; }
# http_status URL [TOKEN]: the HTTP status of a GET (0 when nothing answers).
http_status() {
  node -e 'const [u, t] = process.argv.slice(1); const h = {Accept: "text/event-stream"};
    if (t) h.Authorization = "Bearer " + t;
    fetch(u, {headers: h}).then(r => { console.log(r.status); process.exit(0); }, () => { console.log(0); process.exit(0); });' "$1" "${2:-}"
}
# wait_status WANT URL [TOKEN]: wait (at most 10 s) until GET URL answers WANT: the gateway applies
# a file edit within a second or so.
wait_status() {
  local i
  for ((i = 0; i < 50; i++)); do
    [[ "$(http_status "$2" "${3:-}")" == "$1" ]] && return 0
    sleep 0.2
  done
  echo "warning: $2 does not answer $1 after 10 s; the gateway's log: $WORK/mcpgate.log" >&2
}

step "Setup"
say "A local page stands in for https://httpbin.org/get (no internet needed): http://127.0.0.1:8001/get"
node -e 'require("http").createServer((q, s) => { s.setHeader("Content-Type", "application/json");
  s.end(JSON.stringify({url: "http://" + q.headers.host + q.url, headers: q.headers}, null, 2) + "\n"); }).listen(8001, "127.0.0.1");' &
PIDS+=($!)

step "Step 2: Deploy an MCP Server"
say "The example fetch server (examples/fetchserver) plays mcp-website-fetcher: tool fetch, SSE on /sse, Streamable HTTP on /mcp."
show "bin/fetchserver -addr 127.0.0.1:8000 >$WORK/fetchserver.log 2>&1 &"
PIDS+=($!)
wait_port 8000 10
wait_port 8001 10

step "Step 3: Create the MCP Backend and Route"
say "The lab's Gateway (listener on 127.0.0.1:8080) and its step-3 backend and route go into the watched folder."
show "cp examples/mcp-connectivity/gateway.yaml examples/mcp-connectivity/mcp.yaml $WATCHED/"
show "cat $WATCHED/mcp.yaml"
say "mcpgate run writes the data plane's access log and ext_proc's audit lines to stdout, logs to stderr."
show "bin/mcpgate run -f $WATCHED --envoy-bin $DATA_PLANE >$WORK/access.log 2>$WORK/mcpgate.log &"
PIDS+=($!)
wait_port 8080 30

step "Step 4: Test MCP Connectivity"
show 'mcp-inspector --cli --config $CONFIG --server agentgateway --method tools/list'
show 'mcp-inspector --cli --config $CONFIG --server agentgateway --method tools/call --tool-name fetch --tool-arg url=http://127.0.0.1:8001/get'

step "Step 5: View MCP Access Logs"
say "The data plane's access log line of the call (its mcpgate fields come from ext_proc) and ext_proc's audit line:"
show "grep tools/call $WORK/access.log | tail -n 2"

step "Step 6: Require JWT Authentication"
show "cp examples/mcp-connectivity/jwt.yaml $WATCHED/"
wait_status 401 http://127.0.0.1:8080/sse

step "Step 7: Test Without a JWT (Should Fail)"
show 'mcp-inspector --cli --config $CONFIG --server agentgateway --method tools/list'

step "Step 8: Test With a JWT (Should Succeed)"
show 'export DEV_TOKEN=$(cat examples/mcp-connectivity/dev-token.txt)'
show 'mcp-inspector --cli --config $CONFIG --server agentgateway --header "Authorization: Bearer $DEV_TOKEN" --method tools/list'
show 'mcp-inspector --cli --config $CONFIG --server agentgateway --header "Authorization: Bearer $DEV_TOKEN" --method tools/call --tool-name fetch --tool-arg url=http://127.0.0.1:8001/get'

step "Step 9: Add RBAC for Tool Access"
show "cp examples/mcp-connectivity/rbac.yaml $WATCHED/"
show "cat $WATCHED/rbac.yaml"
sleep 2 # nothing to probe from outside: the lab's token passes before and after
show 'mcp-inspector --cli --config $CONFIG --server agentgateway --header "Authorization: Bearer $DEV_TOKEN" --method tools/call --tool-name fetch --tool-arg url=http://127.0.0.1:8001/get'

step "Step 10: Compare LLM vs MCP Configuration"
say "No LLM backend here. The MCP backend, and the Envoy cluster mcpgate makes of it:"
show "sed -n '/kind: AgentgatewayBackend/,/^---/p' $WATCHED/mcp.yaml"
show "bin/mcpgate translate --bind-address 127.0.0.1 -f $WATCHED | head -n 16"

step "Done"
say "Everything this demo started stops now. For a gateway that stays up: make run."
