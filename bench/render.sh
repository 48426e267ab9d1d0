#!/usr/bin/env bash
# Benchmark: imagelock render (cold and warm) vs umoci unpack --rootless, same layout, one run.
#
# Usage: bench/render.sh [PATH-TO-IMAGELOCK]      (default: target/release/imagelock)
# Env:   BENCH_RUNS   repetitions of each case (default 1)
#        BENCH_KEEP=1 keep the temp dir (printed) instead of deleting it
#        TMPDIR       where the temp dir is created (default /tmp)
# See bench/README.md for what is measured and how to read the table.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGELOCK=${1:-$REPO_ROOT/target/release/imagelock}
RUNS=${BENCH_RUNS:-1}
CMD_TIMEOUT=600      # seconds, any single command
export IMAGELOCK_NO_PROGRESS=1
export LC_ALL=C

die() { echo "bench: $*" >&2; exit 1; }

[[ -x $IMAGELOCK ]] || die "imagelock binary not found at $IMAGELOCK (run: cargo build --release)"
IMAGELOCK=$(cd "$(dirname "$IMAGELOCK")" && pwd)/$(basename "$IMAGELOCK")
for tool in python3 umoci timeout; do
    command -v "$tool" >/dev/null || die "missing tool: $tool (apt-get install $tool)"
done
[[ -x /usr/bin/time ]] || die "missing /usr/bin/time (apt-get install time)"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"

T=$(mktemp -d "${TMPDIR:-/tmp}/imagelock-render-bench.XXXXXX")
cleanup() {
    if [[ ${BENCH_KEEP:-} == 1 ]]; then
        echo "bench: kept $T" >&2
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$T/results" "$T/logs"
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

# ---------------------------------------------------------------- fixtures
# big:  the sync benchmark's image: three gzip layers of 100, 60 and 33 MiB of random
#       data, one file each (what a render of big layers costs: decompress, hash, write).
# many: three gzip layers of ~64 MiB each, 6,000 files of 4-16 KiB per layer in 100
#       directories (per-entry costs: headers, creates, metadata, the hard-link walk).
log "generating the OCI layout (untimed)"
python3 - "$T/project/layout" <<'PY'
import gzip, hashlib, io, json, os, random, sys, tarfile

out = sys.argv[1]
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs, exist_ok=True)
MiB, KiB = 1 << 20, 1 << 10

def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)

def layer(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = set()
        for name, payload in files:
            d = os.path.dirname(name)
            if d and d not in dirs:
                dirs.add(d)
                info = tarfile.TarInfo(d)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(payload), 0, 0o644
            tar.addfile(info, io.BytesIO(payload))
    raw = buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    d, n = put(gzip.compress(raw, compresslevel=6, mtime=0))
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n}, diff_id

def image(ref, layers):
    descs = [l for l, _ in layers]
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [i for _, i in layers]}}
    cd, cn = put(json.dumps(config, sort_keys=True).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
                "layers": descs}
    md, mn = put(json.dumps(manifest, sort_keys=True).encode())
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
            "annotations": {"org.opencontainers.image.ref.name": ref}}

big = [layer([(f"data-{seed}.bin", random.Random(seed).randbytes(size * MiB))])
       for seed, size in ((1, 100), (2, 60), (3, 33))]
rng = random.Random(9)
many = [layer([(f"l{l}/d{i % 100:02}/f{i:05}", rng.randbytes(rng.randrange(4, 17) * KiB))
               for i in range(6000)]) for l in range(3)]
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [image("big", big), image("many", many)]}, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
for name, layers in (("big", big), ("many", many)):
    print(f"  {name}: {sum(l['size'] for l, _ in layers)} bytes in {len(layers)} gzip layers", file=sys.stderr)
PY
cat >"$T/project/images.toml" <<EOF
[store]
path = "store"

[images.big]
path = "layout:big"
insecure = true

[images.many]
path = "layout:many"
insecure = true
EOF
(cd "$T/project" && "$IMAGELOCK" -q lock && "$IMAGELOCK" -q sync) >"$T/logs/setup.log" 2>&1 \
    || die "lock/sync failed: $(tail -5 "$T/logs/setup.log")"

# ---------------------------------------------------------------- helpers
# timed NAME CMD...: wall clock (bash EPOCHREALTIME around the command, including the
# fork/exec of `timeout` and /usr/bin/time, ~2-3 ms), peak RSS and user+sys CPU.
timed() {
    local name=$1 start end rc=0; shift
    sync # no run pays for the previous run's writeback
    start=$EPOCHREALTIME
    (cd "$T/project" && /usr/bin/time -o "$T/results/.res" -f '%M %U %S' \
        timeout "$CMD_TIMEOUT" "$@") >>"$T/logs/$name.log" 2>&1 || rc=$?
    end=$EPOCHREALTIME
    (( rc == 0 )) || { tail -n 20 "$T/logs/$name.log" >&2; die "$name failed (exit $rc)"; }
    python3 -c "print(f'{$end - $start:.6f}')" >>"$T/results/$name.t"
    read -r rss user sys < <(tail -n 1 "$T/results/.res")
    printf '  %-22s run %d: %8.3f s  rss %6s KiB  cpu %s s\n' "$name" \
        "$(wc -l <"$T/results/$name.t")" "$(tail -n 1 "$T/results/$name.t")" "$rss" \
        "$(python3 -c "print(f'{$user + $sys:.2f}')")" >&2
}

# same NAME A B: the two trees have the same paths, types, modes and contents.
same() {
    python3 - "$2" "$3" <<'PY' || die "$1: the trees differ"
import hashlib, os, stat, sys
def snap(root):
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n); st = os.lstat(p); rel = os.path.relpath(p, root)
            h = hashlib.sha256(open(p, "rb").read()).hexdigest() if stat.S_ISREG(st.st_mode) else os.readlink(p) if stat.S_ISLNK(st.st_mode) else ""
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), h)
    return out
a, b = snap(sys.argv[1]), snap(sys.argv[2])
sys.exit(0 if a == b else f"  {len(set(a) ^ set(b))} paths differ, e.g. {sorted(set(a) ^ set(b))[:3]}")
PY
}

# ---------------------------------------------------------------- runs
for img in big many; do
    log "$img: cold render (empty render cache), warm render, warm --copy, umoci unpack --rootless; $RUNS run(s) each"
    for _ in $(seq "$RUNS"); do
        rm -rf "$T/project/store/rendered" "$T/project/out-cold" "$T/project/out-warm" \
            "$T/project/out-copy" "$T/project/bundle"
        timed "$img-cold" "$IMAGELOCK" -q render "$img" out-cold
        timed "$img-warm" "$IMAGELOCK" -q render "$img" out-warm
        timed "$img-copy" "$IMAGELOCK" -q render "$img" out-copy --copy
        timed "$img-umoci" umoci unpack --rootless --image "layout:$img" bundle
    done
    same "$img" "$T/project/out-cold" "$T/project/bundle/rootfs"
    same "$img" "$T/project/out-warm" "$T/project/bundle/rootfs"
    log "$img: imagelock's trees match umoci's (paths, types, modes, contents)"
done

# ---------------------------------------------------------------- table
median() { sort -n "$T/results/$1.t" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo
printf '%-6s %12s %12s %12s %12s %10s %10s\n' image "cold (s)" "warm (ms)" "copy (s)" "umoci (s)" "umoci/cold" "cold/warm"
for img in big many; do
    cold=$(median "$img-cold"); warm=$(median "$img-warm"); copy=$(median "$img-copy"); umoci=$(median "$img-umoci")
    python3 -c "print(f'{\"$img\":<6} {$cold:12.3f} {$warm * 1000:12.1f} {$copy:12.3f} {$umoci:12.3f} {$umoci / $cold:9.1f}x {$cold / $warm:9.1f}x')"
done
echo "(medians of $RUNS run(s); targets: cold >= 2x faster than umoci, warm >= 5x faster than cold)"
