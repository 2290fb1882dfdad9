#!/usr/bin/env bash
# Build the nv-ipam container image as an OCI archive, with no container engine or daemon:
#
#   hack/build-image.sh [OUTDIR]     (default: dist)
#     -> OUTDIR/bin/{ipam-controller,ipam-node,nv-ipam,kubectl-nv_ipam}   (hack/build-static.sh;
#        the image holds the first three)
#     -> OUTDIR/nv-ipam-image-<version>.oci.tar           image localhost/nv-ipam:<version>
#
# The image holds what the Containerfile copies. Load it where it is needed, e.g. on an
# air-gapped node:
#   ctr -n k8s.io images import nv-ipam-image-0.1.0.oci.tar      (containerd, what kubelet uses)
#   podman load -i nv-ipam-image-0.1.0.oci.tar
#   skopeo copy oci-archive:nv-ipam-image-0.1.0.oci.tar docker://registry.example/nv-ipam:0.1.0
#
# Reproducible: mtimes are SOURCE_DATE_EPOCH, else the time of the last git commit, else 0.
# The archive is checked by hack/check-image.sh before this script reports success.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUTDIR=${1:-dist}
die() { printf 'build-image.sh: error: %s\n' "$*" >&2; exit 1; }
# python3 writes the archive, jq checks it (hack/check-image.sh): say so before the long build
for tool in python3 jq; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (Debian: apt-get install $tool)"
done

VERSION=$(sed -n 's/^version = "\([^"]*\)".*/\1/p' Cargo.toml | head -n1)
[[ -n $VERSION ]] || die "no version in Cargo.toml"
NAME=localhost/nv-ipam:$VERSION
OUT=$OUTDIR/nv-ipam-image-$VERSION.oci.tar

# Not exported: cc (ring's build script) reruns when SOURCE_DATE_EPOCH changes, which would
# rebuild everything on every switch between this script and a plain build-static.sh.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

hack/build-static.sh "$OUTDIR/bin"
python3 hack/oci-image.py --bin-dir "$OUTDIR/bin" --version "$VERSION" --name "$NAME" --epoch "$epoch" --out "$OUT"
hack/check-image.sh "$OUT" "$NAME" "$OUTDIR/bin"
