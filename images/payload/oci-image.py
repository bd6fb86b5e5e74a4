#!/usr/bin/env python3
"""Builds a one-layer OCI image archive from a directory, without a registry
or a container engine, for the payload's image cache.

  oci-image.py --ref cairn.local/pause:v1.20.2 --rootfs DIR --out pause.tar \
      --entrypoint /pause [--cmd ARG]... [--env K=V]... --epoch SECONDS

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...)
as `ctr images import` and containerd's import API read it: the index names
the image with both `org.opencontainers.image.ref.name` and
`io.containerd.image.name` set to the full reference. The layer is an
uncompressed tar (the payload squashfs compresses it, and unpacking needs no
decompression under emulation).

Reproducible: entries sorted, owner 0:0, every mtime = --epoch, no
user/group names, JSON with sorted keys and no whitespace.
Only the standard library is used (CI has python3 and nothing else).
"""

import argparse
import datetime
import hashlib
import io
import json
import os
import stat
import tarfile

ARCH = "amd64"


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def layer_tar(rootfs, epoch):
    """The directory tree as a tar, deterministic."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        paths = []
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in dirnames + filenames:
                paths.append(os.path.join(dirpath, name))
        for path in sorted(paths, key=lambda p: os.path.relpath(p, rootfs)):
            rel = os.path.relpath(path, rootfs)
            st = os.lstat(path)
            info = tarfile.TarInfo(rel)
            info.mode = stat.S_IMODE(st.st_mode)
            info.mtime = epoch
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                tar.addfile(info)
            elif stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                raise SystemExit(f"oci-image: {path}: only files, directories and symlinks go into a layer")
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", required=True, help="full image reference, e.g. cairn.local/pause:v1.20.2")
    ap.add_argument("--rootfs", required=True, help="directory that becomes the image's one layer")
    ap.add_argument("--out", required=True, help="the OCI archive to write")
    ap.add_argument("--entrypoint", action="append", default=[], help="one entrypoint word (repeat)")
    ap.add_argument("--cmd", action="append", default=[], help="one default argument (repeat)")
    ap.add_argument("--env", action="append", default=[], help="K=V (repeat); PATH has a default")
    ap.add_argument("--epoch", type=int, required=True, help="mtime of every entry and the created time")
    a = ap.parse_args()

    if ":" not in a.ref.rsplit("/", 1)[-1]:
        raise SystemExit(f"oci-image: --ref {a.ref} needs a tag (name:tag)")
    env = list(a.env)
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, "PATH=/usr/local/bin:/usr/bin:/bin")
    created = datetime.datetime.fromtimestamp(a.epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    blobs = {}

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest, len(data)

    layer = layer_tar(a.rootfs, a.epoch)
    layer_digest, layer_size = blob(layer)
    image_config = {"User": "0", "Env": env, "WorkingDir": "/"}
    if a.entrypoint:
        image_config["Entrypoint"] = a.entrypoint
    if a.cmd:
        image_config["Cmd"] = a.cmd
    config = {
        "architecture": ARCH,
        "os": "linux",
        "created": created,
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": created, "created_by": "cairn images/payload/oci-image.py"}],
    }
    config_digest, config_size = blob(canonical(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    }
    manifest_digest, manifest_size = blob(canonical(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "platform": {"architecture": ARCH, "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": a.ref,
                    "org.opencontainers.image.ref.name": a.ref,
                },
            }
        ],
    }

    entries = [("oci-layout", canonical({"imageLayoutVersion": "1.0.0"})), ("index.json", canonical(index))]
    entries += [("blobs/sha256/" + d.split(":", 1)[1], data) for d, data in sorted(blobs.items())]
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, a.epoch
            tar.addfile(info)
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, a.epoch
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, a.out)
    print(f"{a.ref} {manifest_digest} layer {layer_size} bytes")


if __name__ == "__main__":
    main()
