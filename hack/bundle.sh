#!/usr/bin/env bash
# Build the air-gapped bundle: everything an offline cluster needs, in one tarball.
#
#   hack/bundle.sh [OUTDIR]        (default: dist/)
#
# Writes OUTDIR/nv-ipam-<version>-linux-amd64.tar.gz (version from Cargo.toml) and
# OUTDIR/nv-ipam-<version>-linux-amd64.tar.gz.sha256, prints the tarball's path on stdout;
# progress goes to stderr. The tarball holds one directory, nv-ipam-<version>-linux-amd64/:
#
#   INSTALL.md                   the install guide (docs/install-airgapped.md)
#   UPGRADE.md                   upgrading, and replacing nvidia-k8s-ipam (docs/upgrade.md)
#   VERSION                      the version, for the guide's commands
#   bin/{ipam-controller,ipam-node,nv-ipam}   static x86_64 (hack/build-static.sh)
#   bin/kubectl-nv_ipam          the `kubectl nv-ipam` plugin, static (not in the image: it runs
#                                where kubectl does)
#   image/nv-ipam-image-<version>.oci.tar     OCI image localhost/nv-ipam:<version> of those
#                                             binaries (hack/build-image.sh, if present)
#   manifests/{no-webhook,certmanager,openshift}.yaml   rendered overlays (hack/render-manifests.sh)
#   manifests/crds/*.yaml        the CRDs alone (deploy/crds), for staged installs
#   examples/*.yaml              deploy/examples pools + a Multus macvlan NetworkAttachmentDefinition
#   SHA256SUMS                   sha256 of every other file (`sha256sum -c SHA256SUMS`)
#
# Reproducible: names sorted, every mtime = SOURCE_DATE_EPOCH (default: the last commit's
# time), owner 0:0, modes normalised, gzip without name or time. Equal inputs give a
# byte-identical tarball.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { printf 'bundle.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

OUTDIR=${1:-dist}
OVERLAYS=(no-webhook certmanager openshift)
for tool in tar gzip sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found"
done
# --sort=name and --mtime=@N are GNU tar features.
tar --version 2>/dev/null | grep -q 'GNU tar' || die "GNU tar is required (Debian: apt-get install tar)"

# version = the first `version = "..."` of the [package] table
VERSION=$(awk '/^\[/ { pkg = ($0 == "[package]") } pkg && /^version[[:space:]]*=/ {
  gsub(/^version[[:space:]]*=[[:space:]]*"|".*$/, ""); print; exit }' Cargo.toml)
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || die "no package version found in Cargo.toml (got '$VERSION')"

# Not exported: cc (ring's build script) reruns when SOURCE_DATE_EPOCH changes, so a value only
# bundle builds see would rebuild everything on every switch to a plain cargo build.
# hack/build-image.sh computes the same default itself.
EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null)} ||
  die "not a git checkout: set SOURCE_DATE_EPOCH (seconds since 1970) for the files' mtime"
[[ $EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be seconds since 1970, got '$EPOCH'"
if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
  log "warning: uncommitted changes: the bundle is built from the working tree, not from a commit"
fi

NAME=nv-ipam-$VERSION-linux-amd64
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nv-ipam-bundle.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
B=$WORK/$NAME
mkdir -p "$B"/{bin,manifests/crds,examples}

need_script() { # path: a step this bundle cannot do without
  [[ -x $1 ]] || die "$1 is missing or not executable (is this a complete checkout?)"
}

log "$NAME (mtime $EPOCH)"

# -- binaries and image ------------------------------------------------------------
# hack/build-image.sh builds the static binaries itself (hack/build-static.sh) and packs exactly
# those into the image, so the bundle takes both from it; without it, the binaries alone.
IMAGE=nv-ipam-image-$VERSION.oci.tar
if [[ -x hack/build-image.sh ]]; then
  hack/build-image.sh "$WORK/image-out" >&2
  [[ -s $WORK/image-out/$IMAGE ]] || die "hack/build-image.sh did not write $IMAGE"
  mkdir -p "$B/image"
  mv "$WORK/image-out/$IMAGE" "$B/image/$IMAGE"
  BIN_SRC=$WORK/image-out/bin
else
  need_script hack/build-static.sh
  log "no hack/build-image.sh: the bundle has no image/ (build it from the Containerfile)"
  hack/build-static.sh "$WORK/bin" >&2
  BIN_SRC=$WORK/bin
fi
for b in ipam-controller ipam-node nv-ipam kubectl-nv_ipam; do
  [[ -x $BIN_SRC/$b ]] || die "no static $b in $BIN_SRC (hack/build-static.sh)"
  cp "$BIN_SRC/$b" "$B/bin/$b"
done

# -- manifests -------------------------------------------------------------------
need_script hack/render-manifests.sh
hack/render-manifests.sh "$WORK/rendered" >&2
for o in "${OVERLAYS[@]}"; do
  f=$WORK/rendered/$o.yaml
  [[ -s $f ]] || die "hack/render-manifests.sh did not write $o.yaml"
  # The guide's image commands rely on this reference; a version bump must move both.
  grep -q "image: *[\"']\{0,1\}localhost/nv-ipam:$VERSION\b" "$f" ||
    die "$o.yaml does not use the image localhost/nv-ipam:$VERSION (Cargo.toml version $VERSION)"
  cp "$f" "$B/manifests/$o.yaml"
done
# the CRD files only (deploy/crds also holds its kustomization.yaml)
crds=$(grep -l '^kind: *CustomResourceDefinition' deploy/crds/*.yaml) || die "no CRDs in deploy/crds"
# shellcheck disable=SC2086 # file names from our own repo, without spaces
cp $crds "$B/manifests/crds/"

# -- examples and guide ------------------------------------------------------------
cp deploy/examples/*.yaml "$B/examples/"
cp hack/bundle/examples/*.yaml "$B/examples/"
cp docs/install-airgapped.md "$B/INSTALL.md"
cp docs/upgrade.md "$B/UPGRADE.md"
printf '%s\n' "$VERSION" >"$B/VERSION"

# -- checksums and tarball ---------------------------------------------------------
(
  cd "$B"
  find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum >SHA256SUMS
)
# Modes do not depend on the umask: executables 0755, everything else 0644.
find "$B" -type d -exec chmod 0755 {} +
find "$B" -type f -exec chmod 0644 {} +
chmod 0755 "$B"/bin/*

TARBALL=$OUTDIR/$NAME.tar.gz
tar -C "$WORK" --sort=name --format=gnu --mtime="@$EPOCH" \
  --owner=0 --group=0 --numeric-owner -cf - "$NAME" | gzip -9 -n >"$TARBALL.tmp"
mv -f "$TARBALL.tmp" "$TARBALL"
(cd "$OUTDIR" && sha256sum "$NAME.tar.gz" >"$NAME.tar.gz.sha256")

log "wrote $TARBALL ($(du -h "$TARBALL" | cut -f1)), sha256 $(cut -d' ' -f1 "$TARBALL.sha256")"
printf '%s\n' "$TARBALL"
