#!/usr/bin/env bash
# Build the test binaries from the Go module proxy, using the wrapper modules under
# hack/testbins/, into a cache directory outside the repository:
#   - etcd (hack/testbins/etcd);
#   - kube-apiserver, kubectl, kubelet, kube-controller-manager and kube-scheduler, all five from
#     one wrapper module (hack/testbins/kubernetes) in one `go build`, so the packages they share
#     compile once: the integration-test control plane (hack/control-plane.sh), rendering of
#     deploy/, and the end-to-end cluster (hack/cluster.sh);
#   - the Multus thin plugin (hack/testbins/multus) and, beside it, Multus' own
#     deployments/multus-daemonset.yml from the module zip (hack/cluster.sh takes the
#     NetworkAttachmentDefinition CRD from it);
#   - upstream's bridge and macvlan CNI plugins (hack/testbins/cni-plugins), which speak CNI
#     1.1.0 (Debian's stop at 1.0.0): tests/cni_netns.rs runs them at that version. They sit in
#     a cni-plugins/ subdirectory, so that a PATH holding the bin dir keeps iproute2's `bridge`.
# Prints the bin dir (one directory holding all of them) on stdout; progress goes to stderr.
#
#   hack/build-testbins.sh            # build what is missing, print the bin dir
#   hack/build-testbins.sh --kubectl  # only kubectl (rendering deploy/, hack/bundle.sh): print its path
#   NV_IPAM_TESTBINS_CACHE=DIR ...    # cache root (default /var/cache/nv-ipam-testbins)
#
# Layout: $CACHE/<wrapper>-<version>-<sha256(go.sum)[:12]>/<binaries>
#         $CACHE/bin-<kubernetes key>+<etcd key>+<multus key>+<cni-plugins key>/{etcd,kube-apiserver,
#           kubectl,kubelet,kube-controller-manager,kube-scheduler,multus,multus-daemonset.yml,
#           cni-plugins/{bridge,macvlan}} -> symlinks (cni-plugins: to the directory)
# A binary that exists is not rebuilt, and `go` is then not needed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${NV_IPAM_TESTBINS_CACHE:-/var/cache/nv-ipam-testbins}
log() { printf 'build-testbins: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# version of MODULE as required in the wrapper's go.mod (no `go` needed)
mod_version() { # gomod module
  sed -n "s|^[[:space:]]*\(require[[:space:]]\+\)\?$2[[:space:]]\+\(v[^[:space:]]*\).*|\2|p" "$1" | head -n1
}

# wrapper name -> "version key_dir"
component_key() { # name wrapper_dir module
  local name=$1 dir=$2 mod=$3 ver sum
  ver=$(mod_version "$dir/go.mod" "$mod")
  [[ -n $ver ]] || die "no version of $mod in $dir/go.mod"
  sum=$(sha256sum "$dir/go.sum" | cut -c1-12)
  printf '%s %s\n' "$ver" "$name-$ver-$sum"
}

need_go() {
  command -v go >/dev/null 2>&1 ||
    die "'go' not found in PATH; Go >= 1.26 and the Go module proxy are needed to build the test binaries"
}

# go build PKGS from wrapper DIR into OUTDIR (atomically: a temp dir, then one rename per binary)
# with LDFLAGS. Several packages in one `go build -o DIR/` share the compilation of common packages.
go_build() { # dir outdir ldflags pkg...
  local dir=$1 outdir=$2 ldflags=$3 start=$SECONDS tmp p
  shift 3
  need_go
  log "building $* (cold, on 2 cores: etcd ~4 min, the five Kubernetes programs ~15 min, multus ~2 min, bridge+macvlan ~10 s) ..."
  tmp=$outdir/.tmp.$$
  rm -rf "$tmp"
  mkdir -p "$tmp"
  (
    cd "$dir"
    # GOTOOLCHAIN=local: never download a toolchain behind our back.
    # -mod=readonly: go.mod/go.sum are committed and must be complete.
    CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
      go build -trimpath -ldflags "$ldflags" -o "$tmp/" "$@"
  )
  for p in "$@"; do
    p=$(go_binary_name "$p")
    mv -f "$tmp/$p" "$outdir/$p"
  done
  rmdir "$tmp"
  log "built ${*##*/} in $((SECONDS - start)) s"
}

# the file name `go build -o DIR/` gives PKG: its last element, or the one before a /vN suffix
go_binary_name() {
  local p=$1 last=${1##*/}
  if [[ $last =~ ^v[0-9]+$ ]]; then
    p=${p%/*}
    last=${p##*/}
  fi
  printf '%s' "$last"
}

# Version stamping of a k8s.io/kubernetes command as Kubernetes' own build does it
# (https://github.com/kubernetes/kubernetes/blob/master/hack/lib/version.sh): without
# it the binary reports v0.0.0-master. buildDate is the tag's time from the proxy, so
# the binary does not depend on when it was built. The proxy does not tell the git
# commit; an empty gitCommit beats "$Format:%H$".
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

# --- the five Kubernetes programs ---------------------------------------------
KDIR=$ROOT/hack/testbins/kubernetes
KMOD=k8s.io/kubernetes
KUBE_PROGS=(kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler)
read -r KVER KKEY < <(component_key kubernetes "$KDIR" "$KMOD")
KOUT=$CACHE/$KKEY
mkdir -p "$KOUT"
if $ONLY_KUBECTL; then
  want=(kubectl)
else
  want=("${KUBE_PROGS[@]}")
fi
missing=()
for p in "${want[@]}"; do [[ -x $KOUT/$p ]] || missing+=("$KMOD/cmd/$p"); done
if ((${#missing[@]})); then
  need_go
  go_build "$KDIR" "$KOUT" "-s -w$(kube_version_ldflags "$KDIR" "$KVER")" "${missing[@]}"
else
  log "cached: $KOUT/{${want[*]}}"
fi
for p in "${want[@]}"; do
  case $p in
    kubectl) v=$("$KOUT/kubectl" version --client | sed -n 's/^Client Version: //p') ;;
    *) v=$("$KOUT/$p" --version | sed -n 's/^Kubernetes //p') ;;
  esac
  [[ $v == "$KVER" ]] || die "$p reports version '$v', expected '$KVER'"
done
if $ONLY_KUBECTL; then
  log "kubectl $KVER"
  printf '%s\n' "$KOUT/kubectl"
  exit 0
fi

# --- etcd ----------------------------------------------------------------------
EDIR=$ROOT/hack/testbins/etcd
EMOD=go.etcd.io/etcd/server/v3
read -r EVER EKEY < <(component_key etcd "$EDIR" "$EMOD")
EOUT=$CACHE/$EKEY
if [[ ! -x $EOUT/etcd ]]; then
  mkdir -p "$EOUT"
  go_build "$EDIR" "$EOUT" "-s -w" "$EMOD"
  # the module root is etcd's main package, which `go build` names "server"
  mv -f "$EOUT/$(go_binary_name "$EMOD")" "$EOUT/etcd"
else
  log "cached: $EOUT/etcd"
fi
ev=$("$EOUT/etcd" --version | sed -n 's/^etcd Version: //p')
[[ v$ev == "$EVER" ]] || die "etcd --version says '$ev', expected '${EVER#v}'"

# --- Multus thin plugin -----------------------------------------------------------
MDIR=$ROOT/hack/testbins/multus
MMOD=gopkg.in/k8snetworkplumbingwg/multus-cni.v4
read -r MVER MKEY < <(component_key multus "$MDIR" "$MMOD")
MOUT=$CACHE/$MKEY
if [[ ! -x $MOUT/multus || ! -s $MOUT/multus-daemonset.yml ]]; then
  mkdir -p "$MOUT"
  [[ -x $MOUT/multus ]] || go_build "$MDIR" "$MOUT" "-s -w -X $MMOD/pkg/multus.version=$MVER" "$MMOD/cmd/multus"
  need_go
  mdir=$(cd "$MDIR" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' "$MMOD")
  [[ -n $mdir && -s $mdir/deployments/multus-daemonset.yml ]] ||
    die "no deployments/multus-daemonset.yml in the $MMOD $MVER module ($mdir)"
  cp "$mdir/deployments/multus-daemonset.yml" "$MOUT/multus-daemonset.yml.tmp"
  chmod 0644 "$MOUT/multus-daemonset.yml.tmp"
  mv -f "$MOUT/multus-daemonset.yml.tmp" "$MOUT/multus-daemonset.yml"
else
  log "cached: $MOUT/multus"
fi

# --- upstream CNI plugins (bridge, macvlan) --------------------------------------------
CDIR=$ROOT/hack/testbins/cni-plugins
CMOD=github.com/containernetworking/plugins
CNI_PROGS=(bridge macvlan)
read -r CVER CKEY < <(component_key cni-plugins "$CDIR" "$CMOD")
COUT=$CACHE/$CKEY
mkdir -p "$COUT"
missing=()
for p in "${CNI_PROGS[@]}"; do [[ -x $COUT/$p ]] || missing+=("$CMOD/plugins/main/$p"); done
if ((${#missing[@]})); then
  go_build "$CDIR" "$COUT" "-s -w -X $CMOD/pkg/utils/buildversion.BuildVersion=$CVER" "${missing[@]}"
else
  log "cached: $COUT/{${CNI_PROGS[*]}}"
fi
for p in "${CNI_PROGS[@]}"; do
  # without CNI_COMMAND a plugin prints its name, version and CNI versions on stderr
  about=$(env -i "$COUT/$p" 2>&1 || true)
  [[ $about == *"CNI $p plugin $CVER"* ]] || die "$p says '$about', expected version $CVER"
  [[ $about == *"CNI protocol versions supported:"*"1.1.0"* ]] || die "$p does not support CNI 1.1.0: '$about'"
done

# --- publish ----------------------------------------------------------------------
BIN=$CACHE/bin-$KKEY+$EKEY+$MKEY+$CKEY
links=("${KUBE_PROGS[@]/#/$KKEY/}" "$EKEY/etcd" "$MKEY/multus" "$MKEY/multus-daemonset.yml")
mkdir -p "$BIN"
for l in "${links[@]}"; do
  [[ -e $BIN/${l##*/} ]] || ln -sfn "../$l" "$BIN/${l##*/}"
done
[[ -e $BIN/cni-plugins ]] || ln -sfn "../$CKEY" "$BIN/cni-plugins"
log "Kubernetes $KVER (${KUBE_PROGS[*]}), etcd $EVER, multus $MVER, CNI plugins $CVER (${CNI_PROGS[*]})"
printf '%s\n' "$BIN"
