#!/usr/bin/env python3
"""Write the nv-ipam image as an OCI image-layout archive, without a container engine.

    hack/oci-image.py --bin-dir dist/bin --version 0.1.0 --name localhost/nv-ipam:0.1.0 \
        --out dist/nv-ipam-image-0.1.0.oci.tar

Same content as the Containerfile: one layer holding /etc/nsswitch.conf (0644) and
/ipam-controller, /ipam-node, /nv-ipam (0755), owner 0:0. No ENTRYPOINT, CMD or USER (the
manifests give them). Only the standard library, so it runs on any Debian with python3.

Archive layout (OCI image-layout 1.0, a plain tar as skopeo's oci-archive: transport wants):

    oci-layout                    {"imageLayoutVersion":"1.0.0"}
    index.json                    one manifest descriptor: platform linux/amd64, the image name in
                                  org.opencontainers.image.ref.name (podman, skopeo) and
                                  io.containerd.image.name (ctr, docker load)
    blobs/sha256/<manifest>       config + one layer
    blobs/sha256/<config>         architecture amd64, os linux, rootfs.diff_ids = [sha256 of the tar]
    blobs/sha256/<layer>          tar+gzip

Reproducible: every mtime is --epoch (default SOURCE_DATE_EPOCH), owners 0:0 with no names,
entries sorted, gzip header without name or time, JSON with sorted keys. The same binaries and
epoch give the same bytes, hence the same digests.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

BINARIES = ("ipam-controller", "ipam-node", "nv-ipam")
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_add(tar, name, data, mode, epoch, is_dir=False):
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = epoch
    if is_dir:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def build_tar(entries, epoch):
    """entries: (name, bytes or None for a directory, mode); written sorted by name."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data, mode in sorted(entries, key=lambda e: e[0]):
            tar_add(tar, name, data, mode, epoch, is_dir=data is None)
    return buf.getvalue()


def gzip_bytes(data):
    buf = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of build-machine details.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def build(args):
    created = datetime.datetime.fromtimestamp(args.epoch, datetime.timezone.utc)
    created = created.strftime("%Y-%m-%dT%H:%M:%SZ")

    layer_entries = [("etc/", None, 0o755), ("etc/nsswitch.conf", read_file(args.nsswitch), 0o644)]
    for b in BINARIES:
        layer_entries.append((b, read_file(os.path.join(args.bin_dir, b)), 0o755))
    layer_tar = build_tar(layer_entries, args.epoch)
    layer_gz = gzip_bytes(layer_tar)

    labels = {
        "org.opencontainers.image.title": "nv-ipam",
        "org.opencontainers.image.version": args.version,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.description":
            "IPAM for Kubernetes secondary networks, API-compatible with nvidia-k8s-ipam",
    }
    config = canonical_json({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer_tar)]},
        "history": [{"created": created, "created_by": "hack/build-image.sh"}],
    })
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": MT_LAYER, "digest": sha256(layer_gz), "size": len(layer_gz)}],
        "annotations": {"org.opencontainers.image.created": created},
    })
    index = canonical_json({
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{
            "mediaType": MT_MANIFEST,
            "digest": sha256(manifest),
            "size": len(manifest),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                "org.opencontainers.image.ref.name": args.name,
                "io.containerd.image.name": args.name,
            },
        }],
    })

    outer = [
        ("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}), 0o644),
        ("index.json", index, 0o644),
        ("blobs/", None, 0o755),
        ("blobs/sha256/", None, 0o755),
    ]
    for blob in (manifest, config, layer_gz):
        outer.append(("blobs/sha256/" + sha256(blob).split(":", 1)[1], blob, 0o644))
    archive = build_tar(outer, args.epoch)

    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(archive)
    os.replace(tmp, args.out)
    print(f"{args.out}: {len(archive)} bytes, manifest {sha256(manifest)}, name {args.name}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin-dir", required=True, help="directory holding the three binaries")
    p.add_argument("--nsswitch", default=os.path.join(os.path.dirname(__file__), "image", "nsswitch.conf"))
    p.add_argument("--version", required=True)
    p.add_argument("--name", required=True, help="image reference, e.g. localhost/nv-ipam:0.1.0")
    p.add_argument("--epoch", type=int, default=int(os.environ.get("SOURCE_DATE_EPOCH", "0")),
                   help="mtime of every entry and the image's created time (SOURCE_DATE_EPOCH)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    try:
        build(args)
    except OSError as e:
        sys.exit(f"oci-image.py: {e}")


if __name__ == "__main__":
    main()
