#!/usr/bin/env bash
# Benchmark: imagelock sync vs skopeo copy/sync against one local docker-registry.
#
# Usage: bench/sync.sh [PATH-TO-IMAGELOCK]      (default: target/release/imagelock)
# Env:   BENCH_RUNS        cold-sync repetitions per case (default 5)
#        BENCH_NOOP_RUNS   no-op sync repetitions (default 10)
#        BENCH_KEEP=1      keep the temp dir (printed) instead of deleting it
#        TMPDIR            where the temp dir is created (default /tmp)
# See bench/README.md for what is measured and how to read the table.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGELOCK=${1:-$REPO_ROOT/target/release/imagelock}
RUNS=${BENCH_RUNS:-5}
NOOP_RUNS=${BENCH_NOOP_RUNS:-10}
CMD_TIMEOUT=600      # seconds, any single command
export IMAGELOCK_NO_PROGRESS=1
export LC_ALL=C

die() { echo "bench: $*" >&2; exit 1; }

[[ -x $IMAGELOCK ]] || die "imagelock binary not found at $IMAGELOCK (run: cargo build --release)"
IMAGELOCK=$(cd "$(dirname "$IMAGELOCK")" && pwd)/$(basename "$IMAGELOCK")
for tool in python3 skopeo docker-registry curl timeout gpg; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done
[[ -x /usr/bin/time ]] || die "missing /usr/bin/time (apt-get install time)"
# Case 3c signs with the test-only Sigstore producer (sigstore-js and its mock, on Node.js).
PRODUCER=$REPO_ROOT/tests/sigstore/producer
command -v node >/dev/null || die "missing tool: node (Node.js >= 20.17, for tests/sigstore/producer)"
for pkg in sign mock oci bundle; do
    [[ -d $PRODUCER/node_modules/@sigstore/$pkg ]] \
        || die "the Sigstore producer's packages are missing: run npm ci --prefix tests/sigstore/producer"
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ $NOOP_RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_NOOP_RUNS must be a positive integer"

T=$(mktemp -d "${TMPDIR:-/tmp}/imagelock-bench.XXXXXX")
REG_PID=
cleanup() {
    # The signed case's gpg starts an agent for its GNUPGHOME: stop it too.
    if [[ -d $T/gnupg ]]; then
        GNUPGHOME=$T/gnupg gpgconf --kill gpg-agent 2>/dev/null || true
    fi
    if [[ -n $REG_PID ]]; then
        kill "$REG_PID" 2>/dev/null || true
        wait "$REG_PID" 2>/dev/null || true
    fi
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

# ---------------------------------------------------------------- registry
. "$(dirname "$0")/registry.sh"
PORT=$(free_port)
HOST=127.0.0.1:$PORT
started=0
start_registry "$T/registry-data" "$PORT" "$T/logs/registry.log" || started=$?
REG_PID=$REGISTRY_PID
[[ $started == 0 ]] || die "docker-registry did not start on $HOST"
log "registry on $HOST (data under $T)"

# ---------------------------------------------------------------- fixtures
log "generating OCI layout (1 x ~193 MiB, 30 small images)"
python3 "$(dirname "$0")/make_layout.py" "$T/layout"
log "pushing 31 images with skopeo"
SMALL=$(seq 1 30)
push() {
    timeout "$CMD_TIMEOUT" skopeo copy -q --dest-tls-verify=false \
        "oci:$T/layout:$1" "docker://$HOST/bench/$1:v1" >>"$T/logs/push.log" 2>&1 \
        || die "push of $1 failed: $(tail -5 "$T/logs/push.log")"
}
push big
for i in $SMALL; do push "small-$i"; done
[[ ${BENCH_HUGE:-1} != 0 ]] && push huge
rm -rf "$T/layout"
# skopeo compresses uncompressed layers when pushing to a registry, so the
# registry holds tar+gzip layers (random data: gzip output ~ input size).
# BIG_BYTES = what a sync of bench/big:v1 must store (manifest+config+layers).
BIG_BYTES=$(curl -sf -m 10 -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$HOST/v2/bench/big/manifests/v1" | python3 -c '
import json, sys
raw = sys.stdin.buffer.read(); m = json.loads(raw)
print(len(raw) + m["config"]["size"] + sum(l["size"] for l in m["layers"]))
print(" ".join(sorted({l["mediaType"] for l in m["layers"]})), file=sys.stderr)') \
    || die "cannot read bench/big:v1 back from the registry"
log "big image in the registry: $BIG_BYTES bytes"

# ---------------------------------------------------------------- manifests
registries_table() { printf '[registries."%s"]\ninsecure-http = true\n\n' "$HOST"; }
entry() { printf '[images.%s]\ndocker = "%s/bench/%s:v1"\nplatforms = ["linux/amd64"]\ninsecure = true\n\n' "$1" "$HOST" "$2"; }

mkdir -p "$T/m-big" "$T/m-all" "$T/m-1000" "$T/m-huge"
{ registries_table; entry huge huge; } >"$T/m-huge/images.toml"
{ registries_table; entry big big; } >"$T/m-big/images.toml"
{ registries_table; entry big big; for i in $SMALL; do entry "small-$i" "small-$i"; done; } >"$T/m-all/images.toml"
{ registries_table; for n in $(seq 1 1000); do entry "img-$n" "small-$(( (n - 1) % 30 + 1 ))"; done; } >"$T/m-1000/images.toml"

cat >"$T/skopeo-sync.yml" <<EOF
$HOST:
  tls-verify: false
  images:
    bench/big: [v1]
$(for i in $SMALL; do echo "    bench/small-$i: [v1]"; done)
EOF

# ---------------------------------------------------------------- helpers
# timed NAME LOG CMD...: runs CMD under /usr/bin/time (peak RSS), appends
# wall-clock seconds to results/NAME.t, peak RSS KiB to results/NAME.rss and
# user+sys CPU seconds (of the command and its children) to results/NAME.cpu.
# Wall clock is taken from bash's EPOCHREALTIME around the command, so it
# includes fork/exec of `timeout` and /usr/bin/time (~2-3 ms here); with
# NO_RSS=1 /usr/bin/time is left out (~1 ms overhead) and no RSS is recorded.
timed() {
    local name=$1 logf=$2; shift 2
    local start end rc=0
    # Flush dirty pages left by the previous run, so no run pays for another's writeback.
    sync
    start=$EPOCHREALTIME
    if [[ -n ${NO_RSS:-} ]]; then
        timeout "$CMD_TIMEOUT" "$@" >>"$logf" 2>&1 || rc=$?
        end=$EPOCHREALTIME
        echo '- -' >"$T/results/.res"
    else
        /usr/bin/time -o "$T/results/.res" -f '%M %U %S' timeout "$CMD_TIMEOUT" "$@" >>"$logf" 2>&1 || rc=$?
        end=$EPOCHREALTIME
        tail -n 1 "$T/results/.res" | awk '{printf "%s %.2f\n", $1, $2 + $3}' >"$T/results/.res2"
        mv "$T/results/.res2" "$T/results/.res"
        awk '{print $1}' "$T/results/.res" >>"$T/results/$name.rss"
        awk '{print $2}' "$T/results/.res" >>"$T/results/$name.cpu"
    fi
    python3 -c "print(f'{$end - $start:.6f}')" >>"$T/results/$name.t"
    if (( rc != 0 )); then
        echo "bench: $name failed (exit $rc); last output:" >&2
        tail -n 20 "$logf" >&2
        return "$rc"
    fi
    read -r rss_kib cpu_s <"$T/results/.res"
    printf '  %-28s run %2d: %8.3f s  rss %s KiB  cpu(user+sys) %s s\n' "$name" \
        "$(wc -l <"$T/results/$name.t")" "$(tail -n 1 "$T/results/$name.t")" "$rss_kib" "$cpu_s" >&2
}
prep() { # NAME LOG CMD...: one untimed step, with its wall time logged
    local name=$1 logf=$2 start rc=0; shift 2
    start=$EPOCHREALTIME
    timeout "$CMD_TIMEOUT" "$@" >>"$logf" 2>&1 || rc=$?
    python3 -c "print(f'  {\"$name\":<28} {$EPOCHREALTIME - $start:8.3f} s (untimed setup)')" >&2
    (( rc == 0 )) || { tail -n 20 "$logf" >&2; die "$name failed (exit $rc)"; }
}

# verify_store DIR MIN_BYTES: every blob in the OCI layout DIR hashes to its name
# and blobs total at least MIN_BYTES (untimed; run after the first cold sync).
verify_store() {
    python3 - "$1" "$2" <<'VPY' >&2 || die "store verification failed for $1"
import hashlib, os, sys
d, need = os.path.join(sys.argv[1], "blobs", "sha256"), int(sys.argv[2])
total = n = 0
for name in os.listdir(d):
    h = hashlib.sha256()
    with open(os.path.join(d, name), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk); total += len(chunk)
    if h.hexdigest() != name:
        sys.exit(f"  blob {name} hashes to {h.hexdigest()}")
    n += 1
print(f"  verified {sys.argv[1]}: {n} blobs, {total} bytes, all digests match")
sys.exit(0 if total >= need else f"  only {total} bytes, expected >= {need}")
VPY
}

# ---------------------------------------------------------------- 1. big image
log "locking (untimed)"
prep "lock big" "$T/logs/lock.log" "$IMAGELOCK" --manifest "$T/m-big/images.toml" lock
prep "lock 31" "$T/logs/lock.log" "$IMAGELOCK" --manifest "$T/m-all/images.toml" lock

CURL_ARGS=()
for d in $(curl -sf -m 10 -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$HOST/v2/bench/big/manifests/v1" \
        | python3 -c 'import json,sys; print(*[l["digest"] for l in json.load(sys.stdin)["layers"]])'); do
    CURL_ARGS+=(-o "$T/dest/${d#sha256:}" "http://$HOST/v2/bench/big/blobs/$d")
done
log "cold sync, big image, $RUNS runs each (interleaved)"
for r in $(seq "$RUNS"); do
    rm -rf "$T/dest"
    timed il-big "$T/logs/il-big.log" "$IMAGELOCK" --manifest "$T/m-big/images.toml" sync --store "$T/dest"
    (( r == 1 )) && verify_store "$T/dest" "$BIG_BYTES"
    rm -rf "$T/dest"
    timed sk-big "$T/logs/sk-big.log" skopeo copy -q --src-tls-verify=false \
        "docker://$HOST/bench/big:v1" "oci:$T/dest:big"
    # reference floor: the three layer blobs fetched in parallel by curl into
    # files, no hashing, no manifest/config (what the registry + loopback allow)
    rm -rf "$T/dest"; mkdir -p "$T/dest"
    timed curl-big "$T/logs/curl-big.log" curl -sf --parallel --parallel-max 3 "${CURL_ARGS[@]}"
done
rm -rf "$T/dest"

# ---------------------------------------------------------------- 2. 31 images
log "cold sync, 31 images, $RUNS runs each (interleaved)"
for r in $(seq "$RUNS"); do
    rm -rf "$T/dest"
    timed il-31 "$T/logs/il-31.log" "$IMAGELOCK" --manifest "$T/m-all/images.toml" sync --store "$T/dest"
    (( r == 1 )) && verify_store "$T/dest" "$BIG_BYTES"
    rm -rf "$T/dest"; mkdir -p "$T/dest"
    timed sk-31 "$T/logs/sk-31.log" skopeo sync --src yaml --dest dir --src-tls-verify=false \
        "$T/skopeo-sync.yml" "$T/dest"
done
rm -rf "$T/dest"

# ---------------------------------------------------------------- 2b. 1 GiB blob (peak memory)
if [[ ${BENCH_HUGE:-1} != 0 ]]; then
    log "cold sync of a 1 GiB blob, once each (peak memory)"
    prep "lock huge" "$T/logs/lock.log" "$IMAGELOCK" --manifest "$T/m-huge/images.toml" lock
    rm -rf "$T/dest"
    timed il-huge "$T/logs/il-huge.log" "$IMAGELOCK" --manifest "$T/m-huge/images.toml" sync --store "$T/dest"
    rm -rf "$T/dest"
    timed sk-huge "$T/logs/sk-huge.log" skopeo copy -q --src-tls-verify=false \
        "docker://$HOST/bench/huge:v1" "oci:$T/dest:huge"
    rm -rf "$T/dest"
fi

# ---------------------------------------------------------------- 3. no-op over 1000
log "no-op sync over 1,000 locked images"
prep "lock 1000" "$T/logs/lock.log" "$IMAGELOCK" --manifest "$T/m-1000/images.toml" lock
prep "first sync 1000" "$T/logs/sync-1000.log" "$IMAGELOCK" --manifest "$T/m-1000/images.toml" sync --store "$T/store-1000"
NOOP=("$IMAGELOCK" --manifest "$T/m-1000/images.toml" sync -q --store "$T/store-1000")
FROZEN=("$IMAGELOCK" --manifest "$T/m-1000/images.toml" sync --frozen --offline -q --store "$T/store-1000")
for r in $(seq "$NOOP_RUNS"); do NO_RSS=1 timed il-noop "$T/logs/noop.log" "${NOOP[@]}"; done
for r in $(seq "$NOOP_RUNS"); do NO_RSS=1 timed il-noop-frozen "$T/logs/noop.log" "${FROZEN[@]}"; done
# one extra run of each under /usr/bin/time for peak RSS (not in the timings)
timed il-noop-rss "$T/logs/noop.log" "${NOOP[@]}"
timed il-noop-frozen-rss "$T/logs/noop.log" "${FROZEN[@]}"

# ---------------------------------------------------------------- 3b. no-op over 1000 signed
# The same 1,000 entries, each signed: 30 repositories copied with
# `skopeo copy --sign-by` (a throwaway Ed25519 key) into a file:// lookaside.
# Every sync re-checks every pin and re-verifies every signature offline.
log "no-op sync over 1,000 signed locked images"
export GNUPGHOME=$T/gnupg
mkdir -p -m 700 "$GNUPGHOME"
gpg --batch --passphrase '' --quick-generate-key "imagelock bench key (TEST ONLY) <bench@example.com>" \
    ed25519 sign 1d >>"$T/logs/gpg.log" 2>&1 || die "gpg key generation failed"
FPR=$(gpg --with-colons --list-keys bench@example.com | awk -F: '/^fpr/ {print $10; exit}')
mkdir -p "$T/m-signed/keys" "$T/registries.d" "$T/sigstore"
gpg --armor --export bench@example.com >"$T/m-signed/keys/bench.asc"
printf 'docker:\n  %s:\n    lookaside: file://%s\n' "$HOST" "$T/sigstore" >"$T/registries.d/bench.yaml"
for i in $SMALL; do
    timeout "$CMD_TIMEOUT" skopeo --registries.d "$T/registries.d" copy -q --src-tls-verify=false \
        --dest-tls-verify=false --sign-by "$FPR" "docker://$HOST/bench/small-$i:v1" \
        "docker://$HOST/signed/small-$i:v1" >>"$T/logs/push.log" 2>&1 \
        || die "signed copy of small-$i failed: $(tail -5 "$T/logs/push.log")"
done
signed_entry() { printf '[images.%s]\ndocker = "%s/signed/%s:v1"\nplatforms = ["linux/amd64"]\n\n' "$1" "$HOST" "$2"; }
{ registries_table
  printf '[trust."%s/signed/"]\nkeys = ["keys/bench.asc"]\nlookaside = "file://%s"\n\n' "$HOST" "$T/sigstore"
  for n in $(seq 1 1000); do signed_entry "img-$n" "small-$(( (n - 1) % 30 + 1 ))"; done
} >"$T/m-signed/images.toml"
prep "lock 1000 signed" "$T/logs/lock.log" "$IMAGELOCK" --manifest "$T/m-signed/images.toml" lock
prep "first sync 1000 signed" "$T/logs/sync-1000.log" "$IMAGELOCK" --manifest "$T/m-signed/images.toml" sync --store "$T/store-signed"
SIGNED=("$IMAGELOCK" --manifest "$T/m-signed/images.toml" sync -q --store "$T/store-signed")
for r in $(seq "$NOOP_RUNS"); do NO_RSS=1 timed il-noop-signed "$T/logs/noop.log" "${SIGNED[@]}"; done
timed il-noop-signed-rss "$T/logs/noop.log" "${SIGNED[@]}"

# ---------------------------------------------------------------- 3c. no-op over 1000 cosign-signed
# The same 1,000 entries over 30 repositories `cosign/small-N:v1`, signed keyless by ONE
# run of the test-only producer (sigstore-js, mock Fulcio/Rekor, one trusted root): a DSSE
# bundle (cosign v3's default; a referrers tag schema index on distribution 2.8) on the even
# ones, a legacy `.sig` signature on the odd ones. The lock pins one signature per manifest
# (the `.sig` tag is looked at first), so this split times both paths: 30 signatures.
log "no-op sync over 1,000 cosign-signed locked images"
COSIGN_ISSUER=https://token.actions.githubusercontent.com
COSIGN_SUBJECT=https://github.com/acme/bench/.github/workflows/release.yml@refs/heads/main
for i in $SMALL; do
    timeout "$CMD_TIMEOUT" skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
        "docker://$HOST/bench/small-$i:v1" "docker://$HOST/cosign/small-$i:v1" >>"$T/logs/push.log" 2>&1 \
        || die "copy of small-$i to cosign/ failed: $(tail -5 "$T/logs/push.log")"
done
python3 - "$HOST" "$T/cosign-out" "$COSIGN_ISSUER" "$COSIGN_SUBJECT" >"$T/cosign-job.json" <<'JOB' \
    || die "cannot write the producer's job (manifest digests of cosign/small-N:v1)"
import json, sys, urllib.request
host, out, issuer, subject = sys.argv[1:]
accept = "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json"
identity = {"issuer": issuer, "subject": subject}
targets = []
for i in range(1, 31):
    repo = f"cosign/small-{i}"
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/v1", method="HEAD", headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=10) as res:
        digest = res.headers["Docker-Content-Digest"]
    kind = "legacy" if i % 2 else "dsse"
    signatures = [{"name": f"small-{i}-{kind}", "kind": kind, "identity": identity}]
    targets.append({"repository": repo, "manifest": {"digest": digest}, "signatures": signatures})
json.dump({"out": out, "registry": f"http://{host}", "targets": targets}, sys.stdout)
JOB
prep "sign 30 (sigstore-js)" "$T/logs/producer.log" node "$PRODUCER/produce.mjs" "$T/cosign-job.json"
mkdir -p "$T/m-cosign/keys"
cp "$T/cosign-out/trusted_root.json" "$T/m-cosign/keys/trusted_root.json"
cosign_entry() { printf '[images.%s]\ndocker = "%s/cosign/%s:v1"\nplatforms = ["linux/amd64"]\n\n' "$1" "$HOST" "$2"; }
{ registries_table
  printf '[trust."%s/cosign/"]\nsigstore-identities = [{ issuer = "%s", subject = "%s" }]\ntrusted-root = "keys/trusted_root.json"\n\n' \
      "$HOST" "$COSIGN_ISSUER" "$COSIGN_SUBJECT"
  for n in $(seq 1 1000); do cosign_entry "img-$n" "small-$(( (n - 1) % 30 + 1 ))"; done
} >"$T/m-cosign/images.toml"
prep "lock 1000 cosign" "$T/logs/lock.log" "$IMAGELOCK" --manifest "$T/m-cosign/images.toml" lock
COSIGN_BUNDLES=$(grep -c '^kind = "bundle"' "$T/m-cosign/images.lock" || true)
COSIGN_LEGACY=$(grep -c '^kind = "cosign"' "$T/m-cosign/images.lock" || true)
[[ $COSIGN_BUNDLES == 500 && $COSIGN_LEGACY == 500 ]] \
    || die "the cosign lock should pin 500 bundles and 500 .sig signatures; it pins $COSIGN_BUNDLES and $COSIGN_LEGACY"
prep "first sync 1000 cosign" "$T/logs/sync-1000.log" "$IMAGELOCK" --manifest "$T/m-cosign/images.toml" sync --store "$T/store-cosign"
COSIGN=("$IMAGELOCK" --manifest "$T/m-cosign/images.toml" sync -q --store "$T/store-cosign")
for r in $(seq "$NOOP_RUNS"); do NO_RSS=1 timed il-noop-cosign "$T/logs/noop.log" "${COSIGN[@]}"; done
timed il-noop-cosign-rss "$T/logs/noop.log" "${COSIGN[@]}"

NOOP_CONNECTS=n/a
if command -v strace >/dev/null; then
    timeout "$CMD_TIMEOUT" strace -f -qq -e trace=connect -o "$T/logs/noop.strace" \
        "$IMAGELOCK" --manifest "$T/m-1000/images.toml" sync -q --store "$T/store-1000" >/dev/null 2>&1 || true
    NOOP_CONNECTS=$(grep -c "htons($PORT)" "$T/logs/noop.strace" || true)
fi
NOOP_OUT=$(wc -c <"$T/logs/noop.log")

# ---------------------------------------------------------------- 4. SHA-256 reference
log "SHA-256 reference rate"
OPENSSL_RATE=$(timeout 60 openssl speed -evp sha256 -bytes 1048576 -seconds 2 2>/dev/null \
    | awk '/^sha256/ {v=$NF; sub(/k$/,"",v); printf "%.0f", v*1000/1e6}' || true)
PY_RATE=$(python3 -c '
import hashlib, os, time
buf = os.urandom(1 << 20); h = hashlib.sha256(); t = time.perf_counter()
for _ in range(256): h.update(buf)
print(f"{256 * (1 << 20) / (time.perf_counter() - t) / 1e6:.0f}")')

# ---------------------------------------------------------------- report
echo
echo "imagelock: $IMAGELOCK ($("$IMAGELOCK" --version 2>/dev/null || echo '?'))"
echo "skopeo:    $(skopeo --version)"
echo "machine:   $(nproc) cores, $(uname -r); runs: cold=$RUNS no-op=$NOOP_RUNS; registry $HOST (loopback)"
echo
python3 - "$T/results" "$BIG_BYTES" "${OPENSSL_RATE:-}" "$PY_RATE" "$NOOP_CONNECTS" "$NOOP_OUT" <<'PY'
import os, statistics, sys
res, big_bytes, ossl, pyrate, connects, noop_out = sys.argv[1:]
big_bytes = int(big_bytes)

def load(name, ext):
    p = os.path.join(res, f"{name}.{ext}")
    if not os.path.exists(p):
        return []
    return [float(x) for x in open(p).read().split()]

def med(name): v = load(name, "t"); return statistics.median(v) if v else None
def rss(name): v = load(name, "rss"); return max(v) / 1024 if v else None
def cpu(name): v = load(name, "cpu"); return statistics.median(v) if v else None
def s(x): return "-" if x is None else f"{x:.3f} s"
def ms(x): return "-" if x is None else f"{x * 1000:.1f} ms"
def mb(x): return "-" if x is None else f"{x:.1f} MiB"

rows = [("cold sync, 1 image 193 MiB", "il-big", "sk-big", "skopeo copy"),
        ("cold sync, 31 images", "il-31", "sk-31", "skopeo sync"),
        ("cold sync, one 1 GiB blob (1 run)", "il-huge", "sk-huge", "skopeo copy")]
hdr = f"{'case':<34} {'imagelock':>12} {'skopeo':>12} {'ratio':>7} {'RSS imagelock':>14} {'RSS skopeo':>11}"
print(hdr); print("-" * len(hdr))
for label, a, b, _ in rows:
    ma, mb_ = med(a), med(b)
    ratio = f"{mb_ / ma:.2f}x" if ma and mb_ else "-"
    print(f"{label:<34} {s(ma):>12} {s(mb_):>12} {ratio:>7} {mb(rss(a)):>14} {mb(rss(b)):>11}")
for label, a in (("no-op sync, 1,000 images", "il-noop"),
                 ("no-op sync --frozen --offline", "il-noop-frozen"),
                 ("no-op sync, 1,000 signed images", "il-noop-signed"),
                 ("no-op sync, 1,000 cosign-signed", "il-noop-cosign")):
    v = load(a, "t")
    cell = f"{ms(statistics.median(v))} (max {ms(max(v)).replace(' ms', '')})" if v else "-"
    print(f"{label:<34} {cell:>25} {'':>7} {mb(rss(a + '-rss')):>14}")
print()
print("ratio = skopeo median / imagelock median (>1: imagelock faster); RSS = max over runs")
for a in ("il-big", "sk-big", "curl-big", "il-31", "sk-31", "il-huge", "sk-huge", "il-noop", "il-noop-frozen", "il-noop-signed",
          "il-noop-cosign"):
    c = cpu(a)
    extra = f"   (median cpu user+sys {c:.2f} s)" if c is not None else ""
    print(f"  {a:<15} runs: " + " ".join(f"{x:.3f}" for x in load(a, "t")) + extra)
cb = med("curl-big")
if cb:
    print(f"reference: curl, 3 big layers in parallel to files, no hashing: {s(cb)} median "
          f"(skopeo/curl = {med('sk-big') / cb:.2f}x)")
ib = med("il-big")
if ib:
    print(f"imagelock cold big sync throughput: {big_bytes / ib / 1e6:.0f} MB/s ({big_bytes} bytes)")
sb = med("sk-big")
if sb:
    print(f"skopeo copy throughput:             {big_bytes / sb / 1e6:.0f} MB/s")
print(f"SHA-256 reference (1 core): openssl {ossl or '?'} MB/s, python hashlib {pyrate} MB/s")
print(f"no-op sync: connect() calls to the registry port under strace: {connects}; "
      f"bytes printed by the -q no-op runs: {noop_out}")
PY
echo
echo "logs (first lines of imagelock output, cold big sync):"
head -n 5 "$T/logs/il-big.log" | sed 's/^/  /'
if [[ -s $T/logs/noop.log ]]; then
    echo "no-op sync output (first lines):"
    head -n 5 "$T/logs/noop.log" | sed 's/^/  /'
fi
