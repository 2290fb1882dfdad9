#!/usr/bin/env bash
# The project's full test command: ./hack/test.sh
#
# Works on a fresh Debian 12 machine as root (installs the apt packages the
# tests need, skipping apt when they are all present), with Go >= 1.26 and
# Rust already installed. Steps: build the Kubernetes binaries, etcd, Multus and upstream's
# CNI bridge/macvlan (cached, hack/build-testbins.sh), cargo fmt --check, cargo clippy, then the whole
# cargo test suite under a real etcd + kube-apiserver (hack/control-plane.sh), then the
# delivery checks: static binaries, the image archive, then the end-to-end tests on a real
# single-node cluster (hack/e2e.sh: kubelet, containerd, Multus, the image and deploy/),
# then vendor-check.sh.
#
# NV_IPAM_SKIP_CLUSTER=1 skips the end-to-end cluster tests, for quick local runs only;
# .ci/run never sets it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'test.sh: error: %s\n' "$*" >&2; exit 1; }

# Debian packages: CNI plugins and iproute2 for the CNI/netns tests; jq,
# openssl, curl for hack/control-plane.sh; util-linux (setsid, flock), perl
# (free ports) and coreutils are in every Debian base image. file and libc6-dev (glibc's
# libc.a) for hack/build-static.sh; python3 for hack/build-image.sh. For the end-to-end
# cluster (hack/cluster.sh): containerd and runc (the container runtime), busybox-static (the
# test pods' image), iptables (the Service VIP rule), gcc (the pause binary), procps (sysctl).
PKGS=(containernetworking-plugins iproute2 jq openssl curl ca-certificates util-linux perl-base
  file libc6-dev python3 containerd runc busybox-static iptables gcc procps)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  step "installing ${missing[*]}"
  ((EUID == 0)) || die "missing Debian packages: ${missing[*]} (run as root, or install them)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Toolchains installed the usual way but missing from a minimal PATH (CI runners, sudo).
for d in /usr/local/go/bin "${HOME:-/root}/go/bin" "${HOME:-/root}/.cargo/bin"; do
  [[ -d $d && :$PATH: != *:$d:* ]] && PATH=$PATH:$d
done
export PATH

command -v go >/dev/null 2>&1 ||
  die "'go' not found in PATH: Go >= 1.26 (and the Go module proxy) are needed to build kube-apiserver, etcd and kubectl for the tests"
command -v cargo >/dev/null 2>&1 || die "'cargo' not found in PATH"

step "test binaries (kube-apiserver, kubectl, kubelet, kube-controller-manager, kube-scheduler, etcd, multus, CNI bridge and macvlan)"
start=$SECONDS
NV_IPAM_TESTBINS=$(hack/build-testbins.sh)
# kubectl renders deploy/ (kubectl kustomize) and dry-run-applies it in tests/kube_overlays.rs
NV_IPAM_KUBECTL=$NV_IPAM_TESTBINS/kubectl
export NV_IPAM_TESTBINS NV_IPAM_KUBECTL
printf 'test binaries in %s (%d s)\n' "$NV_IPAM_TESTBINS" $((SECONDS - start)) >&2

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

step "docs: relative links resolve, the layout list matches the tree (hack/check-docs.py)"
python3 hack/check-docs.py

# Built once here; tests/bundle_install.rs installs it (it would build its own otherwise).
step "air-gapped bundle (hack/bundle.sh), built twice: same bytes"
start=$SECONDS
NV_IPAM_BUNDLE=$(hack/bundle.sh target/bundle)
export NV_IPAM_BUNDLE
bundle_tmp=$(mktemp -d)
hack/bundle.sh "$bundle_tmp" >/dev/null
cmp "$NV_IPAM_BUNDLE" "$bundle_tmp/${NV_IPAM_BUNDLE##*/}" || die "the bundle is not reproducible (two builds differ)"
rm -rf "$bundle_tmp"
printf 'bundle %s (%d s)\n' "$NV_IPAM_BUNDLE" $((SECONDS - start)) >&2

# Build the tests before the control plane starts, so the two don't fight for
# the cores and the apiserver is not idle-waiting through a compile.
step "cargo test (build)"
cargo test --locked --all-targets --no-run

step "cargo test under a real control plane"
CRD_ARGS=()
if [[ -d deploy/crds ]] && compgen -G 'deploy/crds/*.y*ml' >/dev/null; then
  CRD_ARGS=(--crds deploy/crds)
fi
# Tests that need the control plane skip without it in a plain `cargo test`; here a missing
# control plane must fail them instead (tests/common/kube.rs, under_control_plane).
NV_IPAM_REQUIRE_CONTROL_PLANE=1 hack/control-plane.sh "${CRD_ARGS[@]}" -- cargo test --locked --all-targets

step "static binaries (hack/build-static.sh: file, ldd, --version)"
start=$SECONDS
hack/build-static.sh dist/bin
printf 'static binaries: %d s\n' $((SECONDS - start)) >&2

step "image archive (hack/build-image.sh + check-image.sh), built twice: same bytes"
start=$SECONDS
hack/build-image.sh dist
img=nv-ipam-image-$(sed -n 's/^version = "\([^"]*\)".*/\1/p' Cargo.toml | head -n1).oci.tar
img_tmp=$(mktemp -d)
hack/build-image.sh "$img_tmp"
cmp "dist/$img" "$img_tmp/$img" || die "the image archive $img is not reproducible"
rm -rf "$img_tmp"
printf 'image archive: %d s\n' $((SECONDS - start)) >&2

if [[ -n ${NV_IPAM_SKIP_CLUSTER:-} ]]; then
  step "end-to-end cluster tests SKIPPED (NV_IPAM_SKIP_CLUSTER is set; CI never sets it)"
else
  step "end-to-end tests on a real cluster (hack/e2e.sh: hack/cluster.sh up, tests/e2e_cluster.rs, down)"
  start=$SECONDS
  hack/e2e.sh --image "dist/$img"
  printf 'end-to-end: %d s\n' $((SECONDS - start)) >&2
fi

step "vendor-check.sh (vendor, allow-list, checksums, offline build), then --offline and --self-test"
start=$SECONDS
./vendor-check.sh
./vendor-check.sh --offline --no-build
./vendor-check.sh --self-test
printf 'vendor-check: %d s\n' $((SECONDS - start)) >&2
