#!/usr/bin/env bash
# Render every kustomize overlay of deploy/overlays/ to one plain manifest file each, for
# installs without kustomize (kubectl apply -f) and for the air-gapped bundle:
#
#   hack/render-manifests.sh OUTDIR      # writes OUTDIR/<overlay>.yaml, e.g. OUTDIR/no-webhook.yaml
#
# Uses the kubectl that hack/build-testbins.sh builds (same version as the test apiserver), so
# the output does not depend on whichever kubectl/kustomize is installed. NV_IPAM_KUBECTL=PATH
# uses that kubectl instead. Any render error fails the script, and nothing half-written is
# left under the final name.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf 'render-manifests: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

(($# == 1)) || die "usage: $0 OUTDIR"
OUT=$1
mkdir -p "$OUT" || die "cannot create $OUT"

KUBECTL=${NV_IPAM_KUBECTL:-}
if [[ -z $KUBECTL ]]; then
  KUBECTL=$("$ROOT/hack/build-testbins.sh" --kubectl) || die "hack/build-testbins.sh --kubectl failed"
fi
[[ -x $KUBECTL ]] || die "kubectl not found at $KUBECTL"

n=0
for dir in "$ROOT"/deploy/overlays/*/; do
  name=$(basename "$dir")
  dest=$OUT/$name.yaml
  "$KUBECTL" kustomize "$dir" >"$dest.tmp.$$" || { rm -f "$dest.tmp.$$"; die "kubectl kustomize deploy/overlays/$name failed"; }
  [[ -s $dest.tmp.$$ ]] || { rm -f "$dest.tmp.$$"; die "deploy/overlays/$name rendered nothing"; }
  mv -f "$dest.tmp.$$" "$dest"
  log "$dest ($(grep -c '^kind:' "$dest") objects)"
  n=$((n + 1))
done
((n > 0)) || die "no overlays under $ROOT/deploy/overlays"
