#!/usr/bin/env bash
# fsck hashing rate: `imagelock fsck` re-hashing a store of BENCH_FSCK_FILES blobs of
# BENCH_FSCK_MIB MiB each, against sha256sum and openssl over the same files, one run,
# same machine. Page cache warm for everyone (each tool reads the files once before).
#   cargo build --release && bench/fsck.sh [path/to/imagelock]
set -euo pipefail
bin="${1:-target/release/imagelock}"
files="${BENCH_FSCK_FILES:-4}"
mib="${BENCH_FSCK_MIB:-256}"
work="$(mktemp -d "${TMPDIR:-/tmp}/imagelock-fsck.XXXXXX")"
trap 'rm -rf "$work"' EXIT
store="$work/store"
mkdir -p "$store/blobs/sha256" "$store/ingest"
printf '{"imageLayoutVersion":"1.0.0"}' > "$store/oci-layout"
printf '{"schemaVersion":2,"manifests":[]}' > "$store/index.json"
python3 - "$store/blobs/sha256" "$files" "$mib" <<'PY'
import hashlib, os, random, sys
out, files, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(files):
    rng = random.Random(i)
    data = b"".join(rng.randbytes(1 << 20) for _ in range(mib))
    with open(os.path.join(out, hashlib.sha256(data).hexdigest()), "wb") as f:
        f.write(data)
PY
bytes=$(( files * mib * 1024 * 1024 ))
cat "$store"/blobs/sha256/* > /dev/null   # warm the page cache
now() { date +%s.%N; }
rate() { python3 -c "import sys; print(f'{$bytes/($2-$1)/1e9:.2f} GB/s ({$2-$1:.3f} s)')" ; }
run() {
  local label="$1"; shift
  local t0 t1
  t0=$(now); "$@" > /dev/null 2>&1; t1=$(now)
  printf '%-40s %s\n' "$label" "$(python3 -c "print(f'{$bytes/($t1-$t0)/1e9:.2f} GB/s ({$t1-$t0:.3f} s)')")"
}
echo "store: $files blobs x $mib MiB = $bytes bytes; $(nproc) cores"
run "imagelock fsck (all cores)" "$bin" --store "$store" --manifest "$work/none.toml" -q fsck
run "sha256sum (1 core, sequential)" sha256sum "$store"/blobs/sha256/*
run "sha256sum x$(nproc) (xargs -P)" sh -c "ls $store/blobs/sha256/* | xargs -P $(nproc) -n 1 sha256sum"
run "openssl dgst -sha256 (1 core)" openssl dgst -sha256 "$store"/blobs/sha256/*
run "openssl x$(nproc) (xargs -P)" sh -c "ls $store/blobs/sha256/* | xargs -P $(nproc) -n 1 openssl dgst -sha256"
