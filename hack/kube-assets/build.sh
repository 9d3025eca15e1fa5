#!/usr/bin/env bash
# Builds kube-apiserver and etcd from their Go modules into $MCPGATE_CACHE/kube (the folder that
# envtest's KUBEBUILDER_ASSETS points at). Release binaries cannot be downloaded on the build
# machines, so they are compiled. Each binary is skipped when its --version already matches.
#
# Wrapper modules live under the cache folder, never in the repository's go.mod: kubernetes'
# go.mod replaces its staging modules with local folders, so `go install` of it is refused; the
# wrapper replaces each staging module with its published v0.X.Y. etcd gets its own wrapper
# because mixing it with kubernetes makes `go get` downgrade k8s.io/kubernetes.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE="${MCPGATE_CACHE:-$HOME/.cache/mcpgate}"
ASSETS="$CACHE/kube"
WORK="$CACHE/kube-build"
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

mkdir -p "$ASSETS" "$WORK"
log() { printf 'kube-assets: %s\n' "$*" >&2; }

# staging_version v1.37.2 -> v0.37.2 (staging modules are published as v0.MINOR.PATCH).
staging_version() { printf 'v0.%s\n' "${1#v1.}"; }

build_apiserver() {
  local want="Kubernetes $KUBE_VERSION" have=""
  if [[ -x "$ASSETS/kube-apiserver" ]]; then
    have="$("$ASSETS/kube-apiserver" --version 2>/dev/null || true)"
  fi
  if [[ "$have" == "$want" ]]; then
    log "kube-apiserver $KUBE_VERSION present"
    return
  fi
  log "building kube-apiserver $KUBE_VERSION (cold: about 6 min, 3 GB RAM)"
  local dir="$WORK/kube-apiserver-$KUBE_VERSION" staging minor
  staging="$(staging_version "$KUBE_VERSION")"
  minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  mkdir -p "$dir"
  local modfile
  modfile="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "$modfile" ]] || { log "cannot find go.mod of k8s.io/kubernetes@$KUBE_VERSION"; exit 1; }
  {
    printf 'module local/kube-apiserver-build\n\ngo 1.26.0\n\n'
    # Each `k8s.io/X => ./staging/src/k8s.io/X` line becomes `k8s.io/X => k8s.io/X v0.M.P`.
    sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*#replace \1 => \1 '"$staging"'#p' "$modfile"
  } >"$dir/go.mod"
  local n
  n="$(grep -c '^replace ' "$dir/go.mod")"
  [[ "$n" -gt 0 ]] || { log "no staging replaces found in $modfile"; exit 1; }
  log "$n staging modules replaced with $staging"
  (cd "$dir" && go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION")
  (cd "$dir" && go build -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=$minor" \
    -o "$ASSETS/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$ASSETS/kube-apiserver.tmp" "$ASSETS/kube-apiserver"
  have="$("$ASSETS/kube-apiserver" --version)"
  [[ "$have" == "$want" ]] || { log "built kube-apiserver reports '$have', want '$want'"; exit 1; }
}

build_etcd() {
  local have=""
  if [[ -x "$ASSETS/etcd" ]]; then
    have="$("$ASSETS/etcd" --version 2>/dev/null | sed -n 's/^etcd Version: //p' || true)"
  fi
  if [[ "$have" == "${ETCD_VERSION#v}" ]]; then
    log "etcd $ETCD_VERSION present"
    return
  fi
  log "building etcd $ETCD_VERSION"
  local dir="$WORK/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  printf 'module local/etcd-build\n\ngo 1.26.0\n' >"$dir/go.mod"
  (cd "$dir" && go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  (cd "$dir" && go build -ldflags '-s -w' -o "$ASSETS/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$ASSETS/etcd.tmp" "$ASSETS/etcd"
  have="$("$ASSETS/etcd" --version | sed -n 's/^etcd Version: //p')"
  [[ "$have" == "${ETCD_VERSION#v}" ]] || { log "built etcd reports '$have', want '${ETCD_VERSION#v}'"; exit 1; }
}

build_etcd
build_apiserver
log "assets in $ASSETS"
