#!/usr/bin/env bash
# Build the integration-test control plane binaries (kube-apiserver, etcd) and
# kubectl (renders and dry-run-applies deploy/) from the Go module proxy, using
# the wrapper modules under hack/testbins/, into a cache directory outside the
# repository. Prints the bin dir (one directory holding `kube-apiserver`,
# `etcd` and `kubectl`) on stdout; progress goes to stderr.
#
#   hack/build-testbins.sh            # build what is missing, print the bin dir
#   hack/build-testbins.sh --kubectl  # only kubectl (rendering deploy/, hack/bundle.sh): print its path
#   NV_IPAM_TESTBINS_CACHE=DIR ...    # cache root (default /var/cache/nv-ipam-testbins)
#
# Layout: $CACHE/<component>-<version>-<sha256(go.sum)[:12]>/<component>
#         $CACHE/bin-<kube-apiserver key>+<etcd key>+<kubectl key>/{kube-apiserver,etcd,kubectl}
#           -> symlinks
# A component whose binary exists is not rebuilt, and `go` is then not needed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${NV_IPAM_TESTBINS_CACHE:-/var/cache/nv-ipam-testbins}
log() { printf 'build-testbins: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# version of MODULE as required in the wrapper's go.mod (no `go` needed)
mod_version() { # gomod module
  sed -n "s|^[[:space:]]*\(require[[:space:]]\+\)\?$2[[:space:]]\+\(v[^[:space:]]*\).*|\2|p" "$1" | head -n1
}

# component name -> "module version key_dir"
component_key() { # component wrapper_dir module
  local comp=$1 dir=$2 mod=$3 ver sum
  ver=$(mod_version "$dir/go.mod" "$mod")
  [[ -n $ver ]] || die "no version of $mod in $dir/go.mod"
  sum=$(sha256sum "$dir/go.sum" | cut -c1-12)
  printf '%s %s\n' "$ver" "$comp-$ver-$sum"
}

need_go() {
  command -v go >/dev/null 2>&1 ||
    die "'go' not found in PATH; Go >= 1.26 and the Go module proxy are needed to build the test binaries"
}

# go build PKG from wrapper DIR into OUT (atomically) with LDFLAGS
go_build() { # dir pkg out ldflags
  local dir=$1 pkg=$2 out=$3 ldflags=$4 start=$SECONDS
  need_go
  log "building $pkg (this can take 10-25 min cold on 2 cores) ..."
  (
    cd "$dir"
    # GOTOOLCHAIN=local: never download a toolchain behind our back.
    # -mod=readonly: go.mod/go.sum are committed and must be complete.
    CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
      go build -trimpath -ldflags "$ldflags" -o "$out.tmp.$$" "$pkg"
  )
  mv -f "$out.tmp.$$" "$out"
  log "built $out in $((SECONDS - start)) s"
}

# Version stamping of a k8s.io/kubernetes command as upstream hack/lib/version.sh
# does it: without it the binary reports v0.0.0-master. buildDate is the tag's
# time from the proxy, so the binary does not depend on when it was built. The
# proxy does not tell the git commit; an empty gitCommit beats "$Format:%H$".
kube_version_ldflags() { # wrapper_dir version
  local dir=$1 ver=$2 btime x="" p
  btime=$(cd "$dir" && GOTOOLCHAIN=local go list -m -f '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)
  [[ $ver =~ ^v([0-9]+)\.([0-9]+)\. ]] || die "unexpected kubernetes version $ver"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $p.gitVersion=$ver -X $p.gitMajor=${BASH_REMATCH[1]} -X $p.gitMinor=${BASH_REMATCH[2]}"
    x+=" -X $p.gitTreeState=clean -X $p.buildDate=${btime:-1970-01-01T00:00:00Z} -X $p.gitCommit="
  done
  printf '%s' "$x"
}

ONLY_KUBECTL=false
case ${1:-} in
  "") ;;
  --kubectl) ONLY_KUBECTL=true ;;
  *) die "usage: $0 [--kubectl]" ;;
esac

mkdir -p "$CACHE" || die "cannot create cache dir $CACHE (set NV_IPAM_TESTBINS_CACHE)"
# One build at a time per cache (parallel CI jobs / test runs share it).
exec 9>"$CACHE/.lock"
flock 9

KDIR=$ROOT/hack/testbins/kube-apiserver
KMOD=k8s.io/kubernetes
read -r KVER KKEY < <(component_key kube-apiserver "$KDIR" "$KMOD")

if ! $ONLY_KUBECTL; then
# --- etcd ----------------------------------------------------------------
EDIR=$ROOT/hack/testbins/etcd
EMOD=go.etcd.io/etcd/server/v3
read -r EVER EKEY < <(component_key etcd "$EDIR" "$EMOD")
EOUT=$CACHE/$EKEY
if [[ ! -x $EOUT/etcd ]]; then
  mkdir -p "$EOUT"
  go_build "$EDIR" "$EMOD" "$EOUT/etcd" "-s -w"
else
  log "cached: $EOUT/etcd"
fi

# --- kube-apiserver ------------------------------------------------------
KOUT=$CACHE/$KKEY
if [[ ! -x $KOUT/kube-apiserver ]]; then
  mkdir -p "$KOUT"
  need_go
  ld=$(kube_version_ldflags "$KDIR" "$KVER")
  go_build "$KDIR" "$KMOD/cmd/kube-apiserver" "$KOUT/kube-apiserver" "-s -w$ld"
else
  log "cached: $KOUT/kube-apiserver"
fi
fi

# --- kubectl (same Kubernetes version as the apiserver) -------------------
CDIR=$ROOT/hack/testbins/kubectl
read -r CVER CKEY < <(component_key kubectl "$CDIR" "$KMOD")
[[ $CVER == "$KVER" ]] || die "kubectl wrapper is at $CVER but kube-apiserver at $KVER; keep them equal"
COUT=$CACHE/$CKEY
if [[ ! -x $COUT/kubectl ]]; then
  mkdir -p "$COUT"
  need_go
  ld=$(kube_version_ldflags "$CDIR" "$CVER")
  go_build "$CDIR" "$KMOD/cmd/kubectl" "$COUT/kubectl" "-s -w$ld"
else
  log "cached: $COUT/kubectl"
fi

cv=$("$COUT/kubectl" version --client | sed -n 's/^Client Version: //p')
[[ $cv == "$CVER" ]] || die "kubectl version --client says '$cv', expected '$CVER'"
if $ONLY_KUBECTL; then
  log "kubectl $CVER"
  printf '%s\n' "$COUT/kubectl"
  exit 0
fi

# --- check and publish ---------------------------------------------------
kv=$("$KOUT/kube-apiserver" --version)
[[ $kv == "Kubernetes $KVER" ]] || die "kube-apiserver --version says '$kv', expected 'Kubernetes $KVER'"
ev=$("$EOUT/etcd" --version | sed -n 's/^etcd Version: //p')
[[ v$ev == "$EVER" ]] || die "etcd --version says '$ev', expected '${EVER#v}'"

BIN=$CACHE/bin-$KKEY+$EKEY+$CKEY
if [[ ! -e $BIN/kube-apiserver || ! -e $BIN/etcd || ! -e $BIN/kubectl ]]; then
  mkdir -p "$BIN"
  ln -sfn "../$KKEY/kube-apiserver" "$BIN/kube-apiserver"
  ln -sfn "../$EKEY/etcd" "$BIN/etcd"
  ln -sfn "../$CKEY/kubectl" "$BIN/kubectl"
fi
log "kube-apiserver $KVER, etcd $EVER, kubectl $CVER"
printf '%s\n' "$BIN"
