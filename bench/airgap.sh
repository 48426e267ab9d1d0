#!/usr/bin/env bash
# Airgap and fleet benchmark, same machine, same registries, in one run:
#   export + import of 31 images (one ~193 MiB 3-layer image, 30 small) vs
#   `skopeo sync --dest dir` + copying that directory (cp -r), and
#   `imagelock push` to a second registry vs skopeo pushing the same images
#   there three ways: `skopeo sync` from the origin registry, `skopeo sync`
#   from a local directory (like imagelock, which reads its store), and one
#   `skopeo copy` per image (what a script around skopeo does); then, with
#   one small image updated at the origin, a full bundle of the new lock vs a
#   delta against the old one (`export --since`), exported and imported.
# Every push goes to a freshly started, empty mirror; each case runs
# BENCH_RUNS times (default 3), interleaved, and the median is reported.
# Registry storage lives in BENCH_REGISTRY_DIR (default: /dev/shm when
# writable, else the temporary directory): the registry's disk is not what is
# measured, and on a long-lived ext4 its inode allocation dominates both tools.
#   cargo build --release && bench/airgap.sh [path/to/imagelock]
set -euo pipefail
BIN="$(realpath "${1:-target/release/imagelock}")"
HERE="$(cd "$(dirname "$0")" && pwd)"
RUNS="${BENCH_RUNS:-3}"
T="$(mktemp -d "${TMPDIR:-/tmp}/imagelock-airgap.XXXXXX")"
if [ -z "${BENCH_REGISTRY_DIR:-}" ]; then
    if [ -w /dev/shm ]; then BENCH_REGISTRY_DIR=/dev/shm; else BENCH_REGISTRY_DIR="$T"; fi
fi
R="$(mktemp -d "$BENCH_REGISTRY_DIR/imagelock-airgap-registries.XXXXXX")"
declare -A PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$T" "$R"; }
trap cleanup EXIT
trap 'exit 130' INT TERM PIPE
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
mkdir -p "$T/logs"
. "$HERE/registry.sh"
MIRROR_PORT=$(free_port)
restart_registry() { # NAME PORT: (re)starts an empty registry
    if [ -n "${PIDS[$1]:-}" ]; then kill "${PIDS[$1]}"; wait "${PIDS[$1]}" 2>/dev/null || true; fi
    rm -rf "${R:?}/$1-data"
    local started=0
    start_registry "$R/$1-data" "$2" "$T/logs/$1.log" || started=$?
    PIDS[$1]=$REGISTRY_PID
    [ "$started" = 0 ] || exit 1
}
ORIGIN="127.0.0.1:$(free_port)"
MIRROR="127.0.0.1:$MIRROR_PORT"
restart_registry origin "${ORIGIN#*:}"
log "origin $ORIGIN, mirror $MIRROR, registry storage under $R"
BENCH_HUGE=0 python3 "$HERE/make_layout.py" "$T/layout"
IMAGES="big $(printf 'small-%s ' $(seq 1 30))"
log "pushing 31 images to the origin with skopeo (untimed)"
for i in $IMAGES; do skopeo copy -q --dest-tls-verify=false "oci:$T/layout:$i" "docker://$ORIGIN/bench/$i:v1"; done
rm -rf "$T/layout"
mkdir -p "$T/project"
{
    printf '[registries."%s"]\ninsecure-http = true\n\n[registries."%s"]\ninsecure-http = true\n\n' "$ORIGIN" "$MIRROR"
    for i in $IMAGES; do printf '[images.%s]\ndocker = "%s/bench/%s:v1"\nplatforms = ["linux/amd64"]\ninsecure = true\n\n' "$i" "$ORIGIN" "$i"; done
} >"$T/project/images.toml"
{ echo "$ORIGIN:"; echo "  tls-verify: false"; echo "  images:"; for i in $IMAGES; do echo "    bench/$i: [v1]"; done; } >"$T/sync.yml"
cd "$T/project"
"$BIN" -q lock
IMAGELOCK_STORE="$T/store" "$BIN" -q sync
BYTES=$(du -sb "$T/store/blobs" | cut -f1)
now() { date +%s.%N; }
declare -A TIMES=()
timed() { # CASE COMMAND...: appends the command's wall time to TIMES[CASE]
    local case=$1 t0 t1; shift
    sync; t0=$(now); "$@" >/dev/null 2>"$T/logs/last.err" || { cat "$T/logs/last.err" >&2; exit 1; }; t1=$(now)
    TIMES[$case]="${TIMES[$case]:-} $(python3 -c "print(f'{$t1-$t0:.3f}')")"
}
median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.3f}')" ${TIMES[$1]}; }

il_export() { rm -f "$T/bundle.tar.zst"; IMAGELOCK_STORE="$T/store" "$BIN" -q export "$T/bundle.tar.zst"; }
il_import() { rm -rf "$T/store2"; IMAGELOCK_STORE="$T/store2" "$BIN" -q import "$T/bundle.tar.zst"; }
sk_dir() { rm -rf "$T/skdir"; skopeo sync --src yaml --dest dir --src-tls-verify=false "$T/sync.yml" "$T/skdir"; }
sk_cp() { rm -rf "$T/skdir-copy"; cp -r "$T/skdir" "$T/skdir-copy"; }
il_push() { IMAGELOCK_STORE="$T/store" "$BIN" -q push "$MIRROR/il"; }
sk_sync() { skopeo sync --src yaml --dest docker --src-tls-verify=false --dest-tls-verify=false "$T/sync.yml" "$MIRROR/sk"; }
sk_sync_dir() { skopeo sync --src dir --dest docker --dest-tls-verify=false "$T/skdir" "$MIRROR/skd"; }
sk_copy() {
    for i in $IMAGES; do
        skopeo copy -q --src-tls-verify=false --dest-tls-verify=false "docker://$ORIGIN/bench/$i:v1" "docker://$MIRROR/skc/$i:v1"
    done
}

for run in $(seq "$RUNS"); do
    log "round $run of $RUNS: export + import"
    timed il_export il_export
    timed il_import il_import
    timed sk_dir sk_dir
    timed sk_cp sk_cp
    log "round $run of $RUNS: push, each to a fresh mirror"
    for case in il_push sk_sync sk_sync_dir sk_copy; do
        restart_registry mirror "$MIRROR_PORT"
        timed "$case" "$case"
        if [ "$case" = il_push ]; then timed il_push_again il_push; fi
    done
done
"$BIN" -q --store "$T/store2" fsck

# Delta bundles: small-7 updated at the origin (one layer new), then a full
# bundle of the new lock vs a delta against the old one (`export --since`);
# the full one is imported into an empty store, the delta into a copy of the
# store that imported the base bundle (the air-gapped side's state).
log "delta: small-7 updated at the origin"
cp images.lock "$T/base.lock"
BENCH_UPDATED=1 python3 "$HERE/make_layout.py" "$T/layout2"
skopeo copy -q --dest-tls-verify=false "oci:$T/layout2:small-7" "docker://$ORIGIN/bench/small-7:v1"
"$BIN" -q update small-7
IMAGELOCK_STORE="$T/store" "$BIN" -q sync
il_full_export() { rm -f "$T/full.tar.zst"; IMAGELOCK_STORE="$T/store" "$BIN" -q export "$T/full.tar.zst"; }
il_delta_export() { rm -f "$T/delta.tar.zst"; IMAGELOCK_STORE="$T/store" "$BIN" -q export --since "$T/base.lock" "$T/delta.tar.zst"; }
il_full_import() { IMAGELOCK_STORE="$T/store3" "$BIN" -q import "$T/full.tar.zst"; }
il_delta_import() { IMAGELOCK_STORE="$T/store3" "$BIN" -q import "$T/delta.tar.zst"; }
for run in $(seq "$RUNS"); do
    log "round $run of $RUNS: full and delta bundles"
    timed il_full_export il_full_export
    timed il_delta_export il_delta_export
    rm -rf "$T/store3"
    timed il_full_import il_full_import
    rm -rf "$T/store3"; cp -a "$T/store2" "$T/store3"
    timed il_delta_import il_delta_import
done
IMAGELOCK_STORE="$T/store3" "$BIN" -q sync --offline
IMAGELOCK_STORE="$T/store3" "$BIN" -q verify

f() { python3 -c "print(f'{$1:.3f}')"; }
ratio() { python3 -c "print(f'{($1)/($2):.2f}x')"; }
IL_BUNDLE=$(f "$(median il_export)+$(median il_import)")
SK_BUNDLE=$(f "$(median sk_dir)+$(median sk_cp)")
echo
echo "imagelock: $BIN ($("$BIN" --version)); skopeo: $(skopeo --version); $(nproc) cores"
echo "$BYTES bytes of blobs, 31 images; registry storage: $BENCH_REGISTRY_DIR; median of $RUNS runs"
printf '%-46s %10s %10s %8s\n' case imagelock skopeo ratio
printf '%-46s %9ss %9ss %8s\n' "export+import vs sync --dest dir + cp -r" "$IL_BUNDLE" "$SK_BUNDLE" "$(ratio "$SK_BUNDLE" "$IL_BUNDLE")"
printf '%-46s %9ss %9ss\n' "  export / skopeo sync --dest dir" "$(median il_export)" "$(median sk_dir)"
printf '%-46s %9ss %9ss\n' "  import / cp -r" "$(median il_import)" "$(median sk_cp)"
IL_PUSH=$(median il_push)
for case in "sk_sync:push vs skopeo sync registry -> mirror" "sk_sync_dir:push vs skopeo sync local dir -> mirror" "sk_copy:push vs skopeo copy per image -> mirror"; do
    printf '%-46s %9ss %9ss %8s\n' "${case#*:}" "$IL_PUSH" "$(median "${case%%:*}")" "$(ratio "$(median "${case%%:*}")" "$IL_PUSH")"
done
printf '%-46s %9ss\n' "push again (nothing to transfer)" "$(median il_push_again)"
echo "bundle: $(du -b "$T/bundle.tar.zst" | cut -f1) bytes"
FULL_BYTES=$(du -b "$T/full.tar.zst" | cut -f1)
DELTA_BYTES=$(du -b "$T/delta.tar.zst" | cut -f1)
echo
echo "small-7 updated (one layer new): full bundle vs delta (export --since the old lock)"
printf '%-46s %10s %10s %8s\n' case full delta ratio
printf '%-46s %10s %10s %8s\n' "bundle size (bytes)" "$FULL_BYTES" "$DELTA_BYTES" "$(ratio "$FULL_BYTES" "$DELTA_BYTES")"
printf '%-46s %9ss %9ss %8s\n' "export" "$(median il_full_export)" "$(median il_delta_export)" "$(ratio "$(median il_full_export)" "$(median il_delta_export)")"
printf '%-46s %9ss %9ss %8s\n' "import (delta: onto the base)" "$(median il_full_import)" "$(median il_delta_import)" "$(ratio "$(median il_full_import)" "$(median il_delta_import)")"
echo "all runs (s):"
for case in il_export il_import sk_dir sk_cp il_push il_push_again sk_sync sk_sync_dir sk_copy il_full_export il_delta_export il_full_import il_delta_import; do echo "  $case:${TIMES[$case]}"; done
