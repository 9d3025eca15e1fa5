#!/usr/bin/env bash
# `make demo`: the steps of the lab (shared/seed/mcp-connectivity-lab.md, examples/mcp-connectivity)
# against a local gateway, each command printed before its answer. Kubernetes steps become file
# edits: `mcpgate run` watches a folder, and "kubectl apply" is a copy into it. The data plane is
# Envoy when ENVOY_BIN is set or `envoy` is on PATH, else bin/envoydouble (with a notice).
# Uses the lab's ports (8080, 8000, 18000, 18001, 19000, Envoy admin 15000) and 8001, so stop `make run` first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

require_bins
pick_data_plane
check_ports "${GATEWAY_PORTS[@]}" 8001:"the demo's local page"

# mcp-inspector is the command of the pinned @modelcontextprotocol/inspector (the lab runs it as
# npx -y @modelcontextprotocol/inspector), installed by make tools.
cache="${MCPGATE_CACHE:-$HOME/.cache/mcpgate}"
INSPECTOR_BINDIR="$cache/npm/$INSPECTOR_PKG/node_modules/.bin"
[[ -x "$INSPECTOR_BINDIR/mcp-inspector" ]] || { echo "$INSPECTOR_BINDIR/mcp-inspector is missing: run make tools" >&2; exit 1; }
export PATH="$INSPECTOR_BINDIR:$PATH"

WORK="$(mktemp -d)"
WATCHED="$WORK/watched"   # what mcpgate run watches: the lab's "cluster"
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
# Ctrl-C: bash runs the INT trap only when the command it waits for dies of the SIGINT. The
# inspector handles SIGINT (it exits 130, or 0 when it had just finished) and a command substitution
# ends with 130, and bash then drops the SIGINT. So the demo also stops when a command exits 130
# and when one of the processes it started (they end on Ctrl-C too) is gone.
interrupted() { echo "interrupted: stopping the demo" >&2; exit 130; }
still_running() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a process the demo started ($pid) has ended: stopping the demo" >&2; exit 1; }
  done
}
# show 'COMMAND': print the command, run it, print its exit code when not 0.
show() {
  printf '\n%s$ %s%s\n' "$bold" "$1" "$off"
  local rc=0
  eval "$1" || rc=$?
  if ((rc == 130)); then interrupted; fi
  if ((rc != 0)); then printf '%s(exit code %d)%s\n' "$dim" "$rc" "$off"; fi
  still_running
}
# http_status URL [TOKEN]: the HTTP status of a GET (0 when nothing answers).
http_status() {
  node -e 'const [u, t] = process.argv.slice(1); const h = {Accept: "text/event-stream"};
    if (t) h.Authorization = "Bearer " + t;
    fetch(u, {headers: h}).then(r => { console.log(r.status); process.exit(0); }, () => { console.log(0); process.exit(0); });' "$1" "${2:-}"
}
# wait_status WANT URL [TOKEN]: wait (at most 20 s) until GET URL answers WANT: the gateway applies
# a file edit within a second or so.
wait_status() {
  local i
  local status
  for ((i = 0; i < 100; i++)); do
    status="$(http_status "$2" "${3:-}")" || interrupted
    [[ "$status" == "$1" ]] && return 0
    sleep 0.2
  done
  echo "warning: $2 does not answer $1 after 20 s; the gateway's log: $WORK/mcpgate.log" >&2
}
# wait_served TEXT: wait (at most 20 s) until the configuration mcpgate serves (its admin's
# /debug/xds) mentions TEXT, such as the name of a policy just added.
wait_served() {
  local i rc
  for ((i = 0; i < 100; i++)); do
    rc=0
    node -e 'fetch("http://127.0.0.1:19000/debug/xds").then(r => r.text()).then(t => process.exit(t.includes(process.argv[1]) ? 0 : 1), () => process.exit(1));' "$1" || rc=$?
    ((rc == 0)) && return 0
    ((rc > 1)) && interrupted
    sleep 0.2
  done
  echo "warning: the served configuration does not mention $1 after 20 s; the gateway's log: $WORK/mcpgate.log" >&2
}
# wait_access_log METHOD FILE: wait (at most 10 s) until FILE has the data plane's access-log line
# (it has a response_code) of an MCP METHOD: Envoy writes a line when the request ends, in batches.
wait_access_log() {
  local i
  for ((i = 0; i < 50; i++)); do
    grep -F -- "\"$1\"" "$2" | grep -q '"response_code"' && return 0
    sleep 0.2
  done
  echo "warning: no access-log line of $1 in $2 after 10 s" >&2
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
wait_port 8000 10 "${PIDS[1]}"
wait_port 8001 10 "${PIDS[0]}"

step "Step 3: Create the MCP Backend and Route"
say "The lab's Gateway (listener on 127.0.0.1:8080) and its step-3 backend and route go into the watched folder."
show "cp examples/mcp-connectivity/gateway.yaml examples/mcp-connectivity/mcp.yaml $WATCHED/"
show "cat $WATCHED/mcp.yaml"
say "mcpgate run writes the data plane's access log and ext_proc's audit lines to stdout, logs to stderr."
say "(${ENVOY_FLUSH_ARGS[*]}: Envoy writes its access log every ${ENVOY_FLUSH_ARGS[-1]} ms, so a call's line shows at once; without it, mcpgate run has Envoy write it every second: see mcpgate run --help.)"
show "bin/mcpgate run -f $WATCHED --envoy-bin $DATA_PLANE ${ENVOY_FLUSH_ARGS[*]} >$WORK/access.log 2>$WORK/mcpgate.log &"
PIDS+=($!)
wait_port 8080 60 "${PIDS[2]}" || { tail -n 20 "$WORK/mcpgate.log" >&2; exit 1; }

step "Step 4: Test MCP Connectivity"
say "mcp-inspector is $INSPECTOR_PKG's command, from $INSPECTOR_BINDIR (the lab runs it as npx -y @modelcontextprotocol/inspector)."
show 'mcp-inspector --cli --config examples/mcp-connectivity/mcp-inspector-config.json --server agentgateway --method tools/list'
show 'mcp-inspector --cli --config examples/mcp-connectivity/mcp-inspector-config.json --server agentgateway --method tools/call --tool-name fetch --tool-arg url=http://127.0.0.1:8001/get'

step "Step 5: View MCP Access Logs"
say "The data plane's access log line of the call (its mcpgate fields come from ext_proc) and ext_proc's audit line:"
wait_access_log tools/call "$WORK/access.log"
show "grep tools/call $WORK/access.log | tail -n 2"

step "Step 6: Require JWT Authentication"
show "cp examples/mcp-connectivity/jwt.yaml $WATCHED/"
wait_status 401 http://127.0.0.1:8080/sse

step "Step 7: Test Without a JWT (Should Fail)"
say "The gateway answers 401; the inspector then wants to start an OAuth login, which needs a terminal: exit code 3, auth_required."
show 'mcp-inspector --cli --config examples/mcp-connectivity/mcp-inspector-config.json --server agentgateway --method tools/list'
if command -v curl >/dev/null; then show "curl -si -w '\\n' http://127.0.0.1:8080/sse"; fi

step "Step 8: Test With a JWT (Should Succeed)"
show 'export DEV_TOKEN=$(cat examples/mcp-connectivity/dev-token.txt)'
show 'mcp-inspector --cli --config examples/mcp-connectivity/mcp-inspector-config.json --server agentgateway --header "Authorization: Bearer $DEV_TOKEN" --method tools/list'
show 'mcp-inspector --cli --config examples/mcp-connectivity/mcp-inspector-config.json --server agentgateway --header "Authorization: Bearer $DEV_TOKEN" --method tools/call --tool-name fetch --tool-arg url=http://127.0.0.1:8001/get'

step "Step 9: Add RBAC for Tool Access"
show "cp examples/mcp-connectivity/rbac.yaml $WATCHED/"
show "cat $WATCHED/rbac.yaml"
wait_served mcp-rbac # the lab's token passes before and after: wait until the rule is served
show 'mcp-inspector --cli --config examples/mcp-connectivity/mcp-inspector-config.json --server agentgateway --header "Authorization: Bearer $DEV_TOKEN" --method tools/call --tool-name fetch --tool-arg url=http://127.0.0.1:8001/get'
say "The rule refuses another org: with the lab's token, whose org is solo.io, a rule that wants other.org answers 403."
show "sed -i 's/jwt.org == \"solo.io\"/jwt.org == \"other.org\"/' $WATCHED/rbac.yaml"
wait_status 403 http://127.0.0.1:8080/sse "$(cat examples/mcp-connectivity/dev-token.txt)"
show 'mcp-inspector --cli --config examples/mcp-connectivity/mcp-inspector-config.json --server agentgateway --header "Authorization: Bearer $DEV_TOKEN" --method tools/list'

step "Step 10: Compare LLM vs MCP Configuration"
say "No LLM backend here. The MCP backend, and the Envoy cluster mcpgate makes of it:"
show "sed -n '/^kind: AgentgatewayBackend/,/^---/p' $WATCHED/mcp.yaml"
show "bin/mcpgate translate --bind-address 127.0.0.1 -f $WATCHED | sed -n '/^    clusters:/,/^    endpoints:/{/^    endpoints:/!p}'"

step "Done"
say "Everything this demo started stops now. For a gateway that stays up: make run."
