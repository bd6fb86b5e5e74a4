#!/usr/bin/env python3
"""Writes a docker-archive (the format `docker save` wrote before Docker 25:
manifest.json with RepoTags, <id>.json, <layer>/layer.tar) of one
uncompressed layer made from a directory, for the image cache test: it is
what `cairnctl image cache-create` converts to an OCI archive.

  docker-archive.py --tag cache-docker:v1 --rootfs DIR --out app.tar --entrypoint /sleeper
"""

import argparse
import hashlib
import io
import json
import os
import tarfile


def layer_tar(rootfs):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(os.listdir(rootfs)):
            info = tar.gettarinfo(os.path.join(rootfs, name), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with open(os.path.join(rootfs, name), "rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tag", required=True)
    p.add_argument("--rootfs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--entrypoint", required=True)
    a = p.parse_args()
    layer = layer_tar(a.rootfs)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": [a.entrypoint]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }, sort_keys=True).encode()
    config_id = hashlib.sha256(config).hexdigest()
    layer_dir = hashlib.sha256(diff_id.encode()).hexdigest()
    manifest = json.dumps([{
        "Config": config_id + ".json",
        "RepoTags": [a.tag],
        "Layers": [layer_dir + "/layer.tar"],
    }]).encode()
    with tarfile.open(a.out, "w", format=tarfile.GNU_FORMAT) as tar:
        add(tar, layer_dir + "/layer.tar", layer)
        add(tar, layer_dir + "/VERSION", b"1.0")
        add(tar, config_id + ".json", config)
        add(tar, "manifest.json", manifest)
        add(tar, "repositories", json.dumps({a.tag.split(":")[0]: {a.tag.split(":")[1]: layer_dir}}).encode())


if __name__ == "__main__":
    main()
