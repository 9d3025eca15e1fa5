# Shared by scripts/run.sh and scripts/demo.sh (sourced, not run). Expects to run from the repository
# root after `make build`.

# LAB is the lab's example: its manifests (the files the scripts serve), the lab's token
# (dev-token.txt) and the inspector's configuration (mcp-inspector-config.json).
LAB=examples/mcp-connectivity

# INSPECTOR_PKG is the pinned @modelcontextprotocol/inspector@VERSION (the lab runs it with npx;
# make tools installs it into $MCPGATE_CACHE/npm/$INSPECTOR_PKG).
INSPECTOR_PKG="$(grep '^@modelcontextprotocol/inspector@' test/e2e/testdata/npm-tools.txt)"

# copy_lab DIR: the lab's manifests are copied into DIR, unless DIR exists (it has the user's
# edits, kept from an earlier run). examples/ itself is left as it is: the tests read it.
copy_lab() {
  if [[ -d "$1" ]]; then return 0; fi
  mkdir -p "$1.tmp"
  cp "$LAB"/*.yaml "$1.tmp/"
  mv "$1.tmp" "$1"
}

# pick_data_plane sets DATA_PLANE to the Envoy to start: $ENVOY_BIN, else `envoy` on PATH, else the
# test double bin/envoydouble, with a notice saying so.
pick_data_plane() {
  if [[ -n "${ENVOY_BIN:-}" ]]; then
    DATA_PLANE="$ENVOY_BIN"
  elif command -v envoy >/dev/null 2>&1; then
    DATA_PLANE="$(command -v envoy)"
  else
    DATA_PLANE="bin/envoydouble"
    cat >&2 <<'NOTICE'
************************************************************************************************
NOTICE: no Envoy found (set ENVOY_BIN=/path/to/envoy or put `envoy` on PATH). The data plane is
bin/envoydouble, mcpgate's test double of Envoy: it reads the same bootstrap and xDS and calls
ext_proc as Envoy does, but it is not Envoy. Use a real Envoy for anything but trying mcpgate out.
************************************************************************************************
NOTICE
  fi
  if [[ ! -x "$DATA_PLANE" ]]; then
    echo "data plane $DATA_PLANE is not an executable file (run make build, or fix ENVOY_BIN)" >&2
    exit 1
  fi
  echo "data plane: $DATA_PLANE" >&2
}

# ENVOY_FLUSH_ARGS (for mcpgate run) make Envoy write its access log every 100 ms, so that a
# request's line shows up right after its answer: mcpgate run asks Envoy for every second without
# them (Envoy's own default, --file-flush-interval-msec, is 10 s). The double writes each line at
# once and accepts the flag.
ENVOY_FLUSH_ARGS=(--envoy-arg --file-flush-interval-msec --envoy-arg 100)

# GATEWAY_PORTS are the 127.0.0.1 ports make run and make demo listen on (check_ports' PORT:WHAT).
GATEWAY_PORTS=(8000:"fetch server" 8080:"the Gateway's listener" 18000:"mcpgate xDS" 18001:"mcpgate ext_proc"
  18002:"mcpgate mux" 19000:"mcpgate admin" 15000:"Envoy admin")

# check_ports fails, naming every one, when something already listens on the given 127.0.0.1 ports
# (arguments: PORT:WHAT ...).
check_ports() {
  local busy=() pw
  for pw in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/${pw%%:*}") 2>/dev/null; then busy+=("$pw"); fi
  done
  if ((${#busy[@]} > 0)); then
    echo "these ports are already in use: stop what listens there (another make run or make demo?)" >&2
    for pw in "${busy[@]}"; do echo "  127.0.0.1:${pw%%:*} (${pw#*:})" >&2; done
    exit 1
  fi
}

# require_bins fails unless `make build` has built what the scripts start.
require_bins() {
  local b
  for b in bin/mcpgate bin/fetchserver; do
    [[ -x "$b" ]] || { echo "$b is missing: run make build" >&2; exit 1; }
  done
}

# wait_port waits up to $2 seconds until 127.0.0.1:$1 accepts connections; with a pid as $3, it
# fails at once when that process has exited (it could not start: its log says why).
wait_port() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    if [[ -n "${3:-}" ]] && ! kill -0 "$3" 2>/dev/null; then
      echo "the process that should listen on 127.0.0.1:$1 exited" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1 after $2 s" >&2
  return 1
}

# stop_pids ends the processes whose ids are in the PIDS array (the ones this script started).
stop_pids() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
