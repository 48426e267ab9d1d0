#!/usr/bin/env python3
"""Regenerates examples/hello: a tiny, deterministic two-platform OCI image layout.

The bundled images.toml pins it, so `imagelock sync` works offline on a fresh
clone. Run from anywhere: `python3 examples/make-hello.py`. The output is
byte-identical on every run (fixed mtimes, owners and gzip header), so the
checked-in images.lock stays valid.
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hello")
PLATFORMS = [("linux", "amd64"), ("linux", "arm64")]


def blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def layer(files):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in files:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(content))
    uncompressed = raw.getvalue()
    return gzip.compress(uncompressed, compresslevel=9, mtime=0), uncompressed


def dumps(value):
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(os.path.join(OUT, "blobs", "sha256"))
    compressed, uncompressed = layer([("hello.txt", b"Hello from imagelock!\n")])
    layer_desc = blob(OUT, compressed)
    layer_desc["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    diff_id = "sha256:" + hashlib.sha256(uncompressed).hexdigest()
    entries = []
    for os_name, arch in PLATFORMS:
        config = {
            "architecture": arch,
            "os": os_name,
            "config": {"Cmd": ["/bin/cat", "/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        config_desc = blob(OUT, dumps(config))
        config_desc["mediaType"] = "application/vnd.oci.image.config.v1+json"
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [layer_desc],
        }
        manifest_desc = blob(OUT, dumps(manifest))
        manifest_desc["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
        manifest_desc["platform"] = {"architecture": arch, "os": os_name}
        entries.append(manifest_desc)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }
    index_desc = blob(OUT, dumps(index))
    index_desc["mediaType"] = "application/vnd.oci.image.index.v1+json"
    index_desc["annotations"] = {"org.opencontainers.image.ref.name": "1.0"}
    top = {"schemaVersion": 2, "manifests": [index_desc]}
    with open(os.path.join(OUT, "index.json"), "wb") as f:
        f.write(dumps(top) + b"\n")
    with open(os.path.join(OUT, "oci-layout"), "wb") as f:
        f.write(dumps({"imageLayoutVersion": "1.0.0"}) + b"\n")


if __name__ == "__main__":
    main()
