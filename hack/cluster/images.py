#!/usr/bin/env python3
"""The two small images of the end-to-end cluster (hack/cluster.sh), as OCI image-layout
archives that `ctr images import` loads, made from local files only (no registry):

    hack/cluster/images.py pause   --pause-bin PAUSE --name localhost/pause:e2e    --out pause.oci.tar
    hack/cluster/images.py busybox --busybox /bin/busybox --name localhost/busybox:e2e --out busybox.oci.tar

pause: one layer holding /pause (the static binary built from hack/cluster/pause.c), Entrypoint
["/pause"]. busybox: one layer holding Debian's static /bin/busybox, a /bin/<applet> symlink for
every applet it lists, /etc/passwd and /etc/group with root and nobody, /tmp (1777) and /root;
Cmd ["/bin/sh"]. The archive layout and its helpers are hack/oci-image.py's (same JSON, gzip and
digest rules), so a given input gives the same bytes.
"""

import argparse
import importlib.util
import io
import os
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("oci_image", os.path.join(HERE, "..", "oci-image.py"))
oci = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oci)


def layer_tar(entries, epoch):
    """entries: (name, kind, payload, mode) with kind 'dir', 'file' (payload bytes) or
    'symlink' (payload target); written sorted by name, owners 0:0."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, kind, payload, mode in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = epoch
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = payload
                tar.addfile(info)
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def write_image(name, entries, image_config, out, epoch):
    created = "1970-01-01T00:00:00Z" if epoch == 0 else oci.datetime.datetime.fromtimestamp(
        epoch, oci.datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    tar = layer_tar(entries, epoch)
    gz = oci.gzip_bytes(tar)
    config = oci.canonical_json({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [oci.sha256(tar)]},
        "history": [{"created": created, "created_by": "hack/cluster/images.py"}],
    })
    manifest = oci.canonical_json({
        "schemaVersion": 2,
        "mediaType": oci.MT_MANIFEST,
        "config": {"mediaType": oci.MT_CONFIG, "digest": oci.sha256(config), "size": len(config)},
        "layers": [{"mediaType": oci.MT_LAYER, "digest": oci.sha256(gz), "size": len(gz)}],
    })
    index = oci.canonical_json({
        "schemaVersion": 2,
        "mediaType": oci.MT_INDEX,
        "manifests": [{
            "mediaType": oci.MT_MANIFEST,
            "digest": oci.sha256(manifest),
            "size": len(manifest),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": name, "io.containerd.image.name": name},
        }],
    })
    outer = [
        ("oci-layout", oci.canonical_json({"imageLayoutVersion": "1.0.0"}), 0o644),
        ("index.json", index, 0o644),
        ("blobs/", None, 0o755),
        ("blobs/sha256/", None, 0o755),
    ]
    for blob in (manifest, config, gz):
        outer.append(("blobs/sha256/" + oci.sha256(blob).split(":", 1)[1], blob, 0o644))
    archive = oci.build_tar(outer, epoch)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(archive)
    os.replace(tmp, out)
    print(f"{out}: {len(archive)} bytes, {name}")


def pause_entries(args):
    with open(args.pause_bin, "rb") as f:
        return [("pause", "file", f.read(), 0o755)], {"Entrypoint": ["/pause"]}


def busybox_entries(args):
    with open(args.busybox, "rb") as f:
        bb = f.read()
    applets = subprocess.run([args.busybox, "--list"], check=True, capture_output=True, text=True).stdout.split()
    if "sh" not in applets or "ping" not in applets or "ip" not in applets:
        sys.exit(f"images.py: {args.busybox} lacks sh, ip or ping")
    entries = [
        ("bin/", "dir", None, 0o755),
        ("bin/busybox", "file", bb, 0o755),
        ("etc/", "dir", None, 0o755),
        ("etc/passwd", "file", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n", 0o644),
        ("etc/group", "file", b"root:x:0:\nnogroup:x:65534:\n", 0o644),
        ("root/", "dir", None, 0o700),
        ("tmp/", "dir", None, 0o1777),
    ]
    for a in sorted(set(applets)):
        if a != "busybox" and "/" not in a:
            entries.append(("bin/" + a, "symlink", "busybox", 0o777))
    return entries, {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["pause", "busybox"])
    p.add_argument("--pause-bin")
    p.add_argument("--busybox", default="/bin/busybox")
    p.add_argument("--name", required=True)
    p.add_argument("--epoch", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if args.kind == "pause" and not args.pause_bin:
        p.error("pause needs --pause-bin")
    entries, cfg = pause_entries(args) if args.kind == "pause" else busybox_entries(args)
    try:
        write_image(args.name, entries, cfg, args.out, args.epoch)
    except OSError as e:
        sys.exit(f"images.py: {e}")


if __name__ == "__main__":
    main()
