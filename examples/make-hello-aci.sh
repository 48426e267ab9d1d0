#!/usr/bin/env bash
# Regenerates the bundled signed ACI example:
#   examples/hello.aci                      a tiny ACI (gzip), name imagelock.example/hello
#   examples/hello.aci.asc                  its detached signature
#   examples/keys/example-TEST-ONLY.asc     the public key that made it
#
# TEST ONLY: the signing key is a throwaway made here in a temporary GNUPGHOME and
# deleted at the end. Nobody holds its secret half, so nothing it "signed" proves
# anything beyond this demo. Never trust this key for real images.
#
# The ACI bytes are deterministic (fixed mtimes and owners, no gzip name/time), the
# key and signature are not (fresh key each run): after running this, run
# `cargo run -- lock` to re-pin examples in images.lock, and commit all four files.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 - "$here/hello.aci" <<'PY'
import gzip, io, json, sys, tarfile
manifest = {
    "acKind": "ImageManifest",
    "acVersion": "0.8.11",
    "name": "imagelock.example/hello",
    "labels": [
        {"name": "version", "value": "1.0"},
        {"name": "os", "value": "linux"},
        {"name": "arch", "value": "amd64"},
    ],
    "app": {"exec": ["/hello.sh"], "user": "0", "group": "0"},
}
raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
    def add(name, data=None, mode=0o644):
        info = tarfile.TarInfo(name)
        info.mtime = 0
        info.uname = info.gname = "root"
        if data is None:
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        else:
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    add("rootfs")
    add("rootfs/hello.sh", b"#!/bin/sh\necho hello from a signed ACI\n", 0o755)
    add("manifest", json.dumps(manifest, indent=2).encode() + b"\n")
with open(sys.argv[1], "wb") as f:
    f.write(gzip.compress(raw.getvalue(), compresslevel=9, mtime=0))
PY

export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"
uid="imagelock example key (TEST ONLY, throwaway, do not trust) <example@imagelock.invalid>"
gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
    --quick-generate-key "$uid" ed25519 sign never
mkdir -p "$here/keys"
gpg --batch --armor --export "example@imagelock.invalid" > "$here/keys/example-TEST-ONLY.asc"
gpg --batch --quiet --yes --pinentry-mode loopback --passphrase '' \
    --local-user "example@imagelock.invalid" --armor \
    --output "$here/hello.aci.asc" --detach-sign "$here/hello.aci"
echo "wrote $here/hello.aci, hello.aci.asc and keys/example-TEST-ONLY.asc; now run: cargo run -- lock"
