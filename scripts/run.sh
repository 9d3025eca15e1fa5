#!/usr/bin/env bash
# `make run`: a working gateway on the lab's example. Starts the example fetch server (the lab's
# mcp-website-fetcher) on 127.0.0.1:8000 and `mcpgate run -f run`, which serves xDS and ext_proc and
# starts the data plane (Envoy if found, else bin/envoydouble, with a notice). run/ is the folder
# to edit: a copy of examples/mcp-connectivity's manifests made by the first make run, kept (with
# the edits) by the next ones; rm -rf run starts again from the example. The Gateway listens on
# 127.0.0.1:8080. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

require_bins
pick_data_plane
check_ports "${GATEWAY_PORTS[@]}"

# WATCHED is what mcpgate run serves (gitignored; MCPGATE_RUN_DIR for another folder, as the
# tests use): examples/ stays as committed, the tests read it.
WATCHED="${MCPGATE_RUN_DIR:-$PWD/run}"
if [[ -d "$WATCHED" ]]; then
  echo "serving $WATCHED (your copy of $LAB; rm -rf run to start again from the example)" >&2
else
  copy_lab "$WATCHED"
  echo "copied the manifests of $LAB to $WATCHED: edit them there" >&2
fi

# A file refused now has no last good version to fall back to (that lives in the memory of a
# running mcpgate): say so before the gateway starts, with mcpgate run's settings.
if ! bin/mcpgate translate --exclusive-ports --bind-address 127.0.0.1 -f "$WATCHED" >/dev/null; then
  echo "mcpgate: part of $WATCHED is refused (above) and not served until you fix it: the routes a refused policy targets answer 500 (rm -rf run starts again from the example)" >&2
fi

# What the banner says of authentication: the example's JWT policy may have been removed (lab
# step 3) or be refused.
if [[ -f "$WATCHED/jwt.yaml" ]]; then
  auth="The example includes the lab's JWT policy (jwt.yaml) and CEL rule (rbac.yaml): send the lab's token."
  noauth="Without the token the gateway answers 401: curl -si http://127.0.0.1:8080/sse
(the inspector then tries an OAuth login, which needs a terminal: it prints auth_required and exits 3)."
else
  auth="$WATCHED has no jwt.yaml (the lab's JWT policy, step 6): the gateway asks for no token; copy it back from $LAB to require one."
  noauth=""
fi

PIDS=()
trap stop_pids EXIT
trap 'exit 130' INT TERM

bin/fetchserver -addr 127.0.0.1:8000 &
PIDS+=($!)
wait_port 8000 10 "${PIDS[0]}"

# mcpgate's stdout is the data plane's access log and ext_proc's audit lines; its stderr, the logs.
bin/mcpgate run -f "$WATCHED" --envoy-bin "$DATA_PLANE" "${ENVOY_FLUSH_ARGS[@]}" &
PIDS+=($!)
wait_port 8080 60 "${PIDS[1]}"

inspector="npx -y $INSPECTOR_PKG --cli --config $PWD/$LAB/mcp-inspector-config.json --server agentgateway"
cat >&2 <<HELP

mcpgate: Gateway on http://127.0.0.1:8080 (SSE: /sse, Streamable HTTP: /mcp) -> fetch server on 127.0.0.1:8000.
Serving $WATCHED: edit the files there and the gateway picks the change up
(they are a copy of $LAB, kept across runs; rm -rf run starts again from the example).
$auth

  export DEV_TOKEN=\$(cat $PWD/$LAB/dev-token.txt)
  export MCP_INSPECTOR_SECRET_STORE=memory   # else every inspector call first prints a system keychain error
  $inspector \\
    --header "Authorization: Bearer \$DEV_TOKEN" --method tools/list
  $inspector \\
    --header "Authorization: Bearer \$DEV_TOKEN" --method tools/call --tool-name fetch --tool-arg url=http://127.0.0.1:19000/healthz

(--server agentgateway is the SSE endpoint; --server agentgateway-http is Streamable HTTP.)
$noauth
Metrics: http://127.0.0.1:19000/metrics. Ctrl-C stops the gateway and the fetch server.

HELP

# Until Ctrl-C, or until either process ends (the EXIT trap then stops the other).
rc=0
wait -n "${PIDS[@]}" || rc=$?
if ((rc != 0)); then echo "a process of make run exited with code $rc; stopping the others" >&2; fi
exit "$rc"
