#!/usr/bin/env bash
# Structural check of an image archive written by hack/build-image.sh:
#
#   hack/check-image.sh ARCHIVE [NAME [BIN_DIR]]
#
# Written apart from hack/oci-image.py on purpose (tar, gzip, sha256sum, jq), so that a mistake
# in the writer is not repeated by its checker. Checks: the OCI layout file; one manifest in
# index.json for linux/amd64, named NAME; every blob's sha256 equals its file name and each
# descriptor's size its length; no blob unreferenced; the config (amd64, linux, no Entrypoint,
# Cmd or User, diff_id = sha256 of the unzipped layer); the layer holds exactly /etc/,
# /etc/nsswitch.conf (0644) and the three binaries (0755), all 0:0; with BIN_DIR, the binaries
# are byte for byte the ones in BIN_DIR.
set -euo pipefail

ARCHIVE=${1:?usage: check-image.sh ARCHIVE [NAME [BIN_DIR]]}
NAME=${2:-}
BIN_DIR=${3:-}
[[ -z $BIN_DIR ]] || BIN_DIR=$(cd "$BIN_DIR" && pwd)
fails=0
fail() { printf 'check-image.sh: FAIL %s\n' "$*" >&2; fails=$((fails + 1)); }
for tool in tar gzip sha256sum jq; do
  command -v "$tool" >/dev/null 2>&1 || { echo "check-image.sh: '$tool' not found" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xf "$ARCHIVE" -C "$tmp"
cd "$tmp"

[[ $(jq -r .imageLayoutVersion oci-layout) == 1.0.0 ]] || fail "oci-layout: imageLayoutVersion is not 1.0.0"

# blob DIGEST SIZE MEDIATYPE: the file exists, hashes to its name and has the declared size.
referenced=()
blob() {
  local digest=$1 size=$2 what=$3 f=blobs/sha256/${1#sha256:}
  referenced+=("${digest#sha256:}")
  [[ $digest == sha256:* && -f $f ]] || { fail "$what: blob $digest missing"; return; }
  [[ $(sha256sum "$f" | cut -d' ' -f1) == "${digest#sha256:}" ]] || fail "$what: $f does not hash to its name"
  [[ $(stat -c %s "$f") == "$size" ]] || fail "$what: size $(stat -c %s "$f") != descriptor size $size"
}

[[ $(jq '.manifests | length' index.json) == 1 ]] || fail "index.json: expected exactly one manifest"
[[ $(jq -r '.manifests[0].mediaType' index.json) == application/vnd.oci.image.manifest.v1+json ]] ||
  fail "index.json: manifest media type"
[[ $(jq -r '.manifests[0].platform | "\(.os)/\(.architecture)"' index.json) == linux/amd64 ]] ||
  fail "index.json: platform is not linux/amd64"
if [[ -n $NAME ]]; then
  for a in org.opencontainers.image.ref.name io.containerd.image.name; do
    [[ $(jq -r --arg a "$a" '.manifests[0].annotations[$a]' index.json) == "$NAME" ]] ||
      fail "index.json: annotation $a is not $NAME"
  done
fi
m_digest=$(jq -r '.manifests[0].digest' index.json)
blob "$m_digest" "$(jq -r '.manifests[0].size' index.json)" manifest
manifest=blobs/sha256/${m_digest#sha256:}

[[ $(jq -r .schemaVersion "$manifest") == 2 ]] || fail "manifest: schemaVersion is not 2"
c_digest=$(jq -r .config.digest "$manifest")
[[ $(jq -r .config.mediaType "$manifest") == application/vnd.oci.image.config.v1+json ]] || fail "manifest: config media type"
blob "$c_digest" "$(jq -r .config.size "$manifest")" config
config=blobs/sha256/${c_digest#sha256:}
[[ $(jq '.layers | length' "$manifest") == 1 ]] || fail "manifest: expected exactly one layer"
[[ $(jq -r '.layers[0].mediaType' "$manifest") == application/vnd.oci.image.layer.v1.tar+gzip ]] || fail "manifest: layer media type"
l_digest=$(jq -r '.layers[0].digest' "$manifest")
blob "$l_digest" "$(jq -r '.layers[0].size' "$manifest")" layer
layer=blobs/sha256/${l_digest#sha256:}

[[ $(jq -r '"\(.os)/\(.architecture)"' "$config") == linux/amd64 ]] || fail "config: os/architecture is not linux/amd64"
[[ $(jq -r .rootfs.type "$config") == layers ]] || fail "config: rootfs.type is not layers"
for k in Entrypoint Cmd User; do
  [[ $(jq --arg k "$k" '.config[$k] // empty' "$config") == "" ]] || fail "config: $k is set (the manifests set it)"
done
diff_id=sha256:$(gzip -dc "$layer" | sha256sum | cut -d' ' -f1)
[[ $(jq -c .rootfs.diff_ids "$config") == "[\"$diff_id\"]" ]] || fail "config: diff_ids is not [$diff_id]"

for f in blobs/sha256/*; do
  [[ " ${referenced[*]} " == *" ${f##*/} "* ]] || fail "blob ${f##*/} is not referenced"
done

# "mode uid/gid name" of each layer entry; GNU tar prints directories with a trailing slash.
got=$(tar -tvzf "$layer" --numeric-owner | awk '{print $1, $2, $NF}' | sort)
want=$(printf '%s\n' \
  'drwxr-xr-x 0/0 etc/' '-rw-r--r-- 0/0 etc/nsswitch.conf' \
  '-rwxr-xr-x 0/0 ipam-controller' '-rwxr-xr-x 0/0 ipam-node' '-rwxr-xr-x 0/0 nv-ipam' | sort)
[[ $got == "$want" ]] || fail "layer entries differ from the expected ones:
--- got
$got
--- want
$want"

if [[ -n $BIN_DIR ]]; then
  mkdir rootfs
  tar -xzf "$layer" -C rootfs
  for b in ipam-controller ipam-node nv-ipam; do
    cmp -s "rootfs/$b" "$BIN_DIR/$b" || fail "layer /$b differs from $BIN_DIR/$b"
  done
fi

((fails == 0)) || { echo "check-image.sh: $ARCHIVE: $fails check(s) failed" >&2; exit 1; }
echo "check-image.sh: OK $ARCHIVE (manifest $m_digest, layer $(stat -c %s "$layer") bytes)" >&2
