#!/usr/bin/env python3
"""Writes the benchmarks' OCI layout to OUT: `big` (three uncompressed layers of
100, 60 and 33 MiB of random data), `small-1`..`small-30` (two layers of
64-512 KiB each) and, unless BENCH_HUGE=0, `huge` (one 1 GiB layer).
Deterministic (seeded), so every run pushes the same bytes. With
BENCH_UPDATED=1, only `small-7`, updated: its first layer as before, its
second one new (the delta-bundle case of bench/airgap.sh).

    python3 bench/make_layout.py OUT
"""
import hashlib, io, json, os, random, sys, tarfile

out = sys.argv[1]
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs, exist_ok=True)
MiB, KiB = 1 << 20, 1 << 10

def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)

def layer(seed, size):
    payload = random.Random(seed).randbytes(size)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"data-{seed}.bin")
        info.size, info.mtime, info.mode = size, 0, 0o644
        tar.addfile(info, io.BytesIO(payload))
    return put(buf.getvalue())

def image(ref, layers):
    descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n}
             for d, n in layers]
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [d for d, _ in layers]}}
    cd, cn = put(json.dumps(config, sort_keys=True).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
                "layers": descs}
    md, mn = put(json.dumps(manifest, sort_keys=True).encode())
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
            "annotations": {"org.opencontainers.image.ref.name": ref}}

updated = os.environ.get("BENCH_UPDATED", "0") == "1"
entries = [] if updated else [image("big", [layer(1, 100 * MiB), layer(2, 60 * MiB), layer(3, 33 * MiB)])]
if os.environ.get("BENCH_HUGE", "1") != "0" and not updated:
    # One 1 GiB layer, gzip "stored" (level 0) so skopeo pushes it as it is:
    # the peak-memory case (memory must not grow with blob size).
    import gzip, zlib
    rng7 = random.Random(7)
    payload = b"".join(rng7.randbytes(64 * MiB) for _ in range(16))
    d, n = put(gzip.compress(payload, compresslevel=0, mtime=0))
    del payload
    config = {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}}
    cd, cn = put(json.dumps(config, sort_keys=True).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n}]}
    md, mn = put(json.dumps(manifest, sort_keys=True).encode())
    entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
                    "annotations": {"org.opencontainers.image.ref.name": "huge"}})
rng = random.Random(42)
for i in range(1, 31):
    sizes = [rng.randrange(64, 513) * KiB for _ in range(2)]
    if updated and i != 7:
        continue
    seeds = [1000 + 2 * i, 5000 + 2 * i if updated else 1000 + 2 * i + 1]
    entries.append(image(f"small-{i}", [layer(s, n) for s, n in zip(seeds, sizes)]))
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": entries}, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
