#!/usr/bin/env bash
# Fills fuzz/corpus/TARGET/ with seed inputs taken from the repository's own
# fixtures and examples (nothing is downloaded). Safe to re-run: it only adds
# files. The corpora are gitignored; libFuzzer grows them while it runs.
set -euo pipefail
fuzz="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$fuzz")"
corpus="$fuzz/corpus"
pgp="$repo/tests/fixtures/openpgp"

seed() { # seed TARGET NAME < content
    mkdir -p "$corpus/$1"
    cat > "$corpus/$1/seed-$2"
}
copy() { # copy TARGET FILE...
    local target=$1
    shift
    mkdir -p "$corpus/$target"
    for f in "$@"; do cp "$f" "$corpus/$target/seed-$(basename "$f")"; done
}

hex64=$(printf '%064d' 0 | tr 0 a)
hex128=$hex64$hex64

# reference
n=0
for r in alpine alpine:3.20 library/alpine index.docker.io/alpine \
    "docker.io/library/alpine:latest@sha256:$hex64" "localhost:5000/a/b-c/d__e:v1.0" \
    "[::1]:5000/x/y" "ghcr.io/org/repo@sha512:$hex128" "Example.COM/x" "a.b/c:tag@sha256:$hex64"; do
    printf '%s' "$r" | seed reference "$((n++))"
done

# lock_against_store: the example's own lock, which the example's blobs satisfy
copy lock_against_store "$repo/images.lock"

# manifest (images.toml) and lock (images.lock)
copy manifest "$repo/images.toml"
cat <<'TOML' | seed manifest all-sources
[store]
path = "store"
[registries."127.0.0.1:5000"]
insecure-http = true
[trust."example.com/"]
keys = ["keys/a.asc"]
identity = "match-repository"
[images.a]
docker = "alpine:3.20"
platforms = ["linux/amd64", "linux/arm64/v8"]
[images.b]
name = "example.com/app"
labels = { version = "1.0" }
[images.c]
url = "https://example.com/app.aci"
[images.d]
path = "layout:ref"
insecure = true
TOML
copy lockfile "$repo/images.lock"

# discovery: first line is NAME[\tLABEL=VALUE]..., then the page
printf 'example.com/app\tversion=1.0\tos=linux\tarch=amd64\n<html><head>
<meta name="ac-discovery" content="example.com https://example.com/{name}-{version}-{os}-{arch}.{ext}">
<meta name="ac-discovery" content="example.com hdfs://example.com/{name}.{ext}">
<meta name="ac-discovery-pubkeys" content="example.com https://example.com/pubkeys.gpg">
<script><meta name="ac-discovery" content="x y"></script><!-- <meta> --><title>t</title>
</head><body><META NAME=ac-discovery CONTENT="example.com/app   http://localhost/{name}.{ext}" /></body></html>\n' \
    | seed discovery page

# oci: a Content-Type selector byte, then the body
for f in "$repo"/examples/hello/index.json "$repo"/examples/hello/blobs/sha256/*; do
    if head -c1 "$f" | grep -q '{'; then
        for selector in 0 1 2; do
            { printf "\\x0$selector"; cat "$f"; } | seed oci "$selector-$(basename "$f" | cut -c1-12)"
        done
    fi
done

# simple signing payloads
copy simple_signing "$pgp/payload.json"
printf '{"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":"sha256:%s"},"identity":{"docker-reference":"example.com/app:1"}},"optional":{"creator":"skopeo","timestamp":1700000000}}' "$hex64" \
    | seed simple_signing claim

# OpenPGP keys and signatures
copy openpgp_keys "$pgp"/*.asc "$pgp"/*.gpg "$repo/examples/keys/example-TEST-ONLY.asc"
copy openpgp_verify "$pgp"/*.data.asc "$pgp"/*.data.sig "$pgp"/*.payload.msg "$pgp"/*.payload.asc "$repo/examples/hello.aci.asc"

# ACIs: the bundled example, recompressed with every supported compression
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gzip -dc "$repo/examples/hello.aci" > "$work/hello.tar"
copy aci "$repo/examples/hello.aci" "$work/hello.tar"
bzip2 -c "$work/hello.tar" | seed aci hello.tar.bz2
xz -c "$work/hello.tar" | seed aci hello.tar.xz
zstd -q -c "$work/hello.tar" | seed aci hello.tar.zst
tar -xOf "$work/hello.tar" manifest | seed aci_manifest hello

# A lock using every field: labels, signatures, dependencies, several manifests.
cat <<TOML | seed lockfile every-field
version = 1

[[image]]
id = "app"
source = "appc"
request = "example.com/app,version=1.0"
entry-hash = "sha256:$hex64"
verified = true
name = "example.com/app"
labels = { arch = "amd64", os = "linux", version = "1.0" }
discovery = "https://example.com/app?ac-discovery=1"
url = "https://example.com/app-1.0.aci"
image-id = "sha512-$hex128"
aci = { digest = "sha512:$hex128", size = 361, media-type = "application/vnd.appc.aci" }
signature = { url = "https://example.com/app-1.0.aci.asc", digest = "sha256:$hex64", size = 265, prefix = "example.com/", signed-by = "8836CD40C8B00F2B3BBE84E537F3026F530A8073", key = "8836CD40C8B00F2B3BBE84E537F3026F530A8073" }
dependencies = ["app-dep-0"]

[[image]]
id = "app-dep-0"
source = "appc"
request = "example.com/base"
entry-hash = "sha256:$hex64"
verified = true
dependency-of = "app"
name = "example.com/base"
url = "http://localhost:8080/base.aci"
image-id = "sha512-$hex128"
aci = { digest = "sha512:$hex128", size = 1, media-type = "application/vnd.appc.aci" }

[[image]]
id = "signed"
source = "docker"
request = "127.0.0.1:5000/test/signed:v1"
entry-hash = "sha256:$hex64"
verified = true
registry = "http://127.0.0.1:5000"
reference = "127.0.0.1:5000/test/signed:v1"

[[image.manifest]]
digest = "sha256:$hex64"
size = 401
media-type = "application/vnd.oci.image.manifest.v1+json"
config = { digest = "sha256:$hex64", size = 194, media-type = "application/vnd.oci.image.config.v1+json" }
layers = []
signature = { url = "http://127.0.0.1:5000/sigs/x/signature-1", digest = "sha256:$hex64", size = 10, prefix = "127.0.0.1:5000/", signed-by = "A", key = "B", identity = "127.0.0.1:5000/test/signed:v1" }
TOML
