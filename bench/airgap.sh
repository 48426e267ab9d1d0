#!/usr/bin/env bash
# Airgap and fleet benchmark, one run, same machine, same registries:
#   export + import of 31 images (one ~193 MiB 3-layer image, 30 small) vs
#   `skopeo sync --dest dir` + copying that directory (cp -r), and
#   `imagelock push` to a second registry vs `skopeo sync --dest docker` to it.
#   cargo build --release && bench/airgap.sh [path/to/imagelock]
set -euo pipefail
BIN="$(realpath "${1:-target/release/imagelock}")"
T="$(mktemp -d "${TMPDIR:-/tmp}/imagelock-airgap.XXXXXX")"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
mkdir -p "$T/logs"
start_registry() { # NAME -> prints host:port
    local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: %s}\nhttp:\n  addr: 127.0.0.1:%s\n  secret: bench\n' "$T/$1-data" "$port" >"$T/$1.yml"
    docker-registry serve "$T/$1.yml" >"$T/logs/$1.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do curl -s -m 1 -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.1; done
    echo "127.0.0.1:$port"
}
ORIGIN=$(start_registry origin)
MIRROR=$(start_registry mirror)
log "origin $ORIGIN, mirror $MIRROR"
BENCH_HUGE=0 python3 "$(dirname "$0")/make_layout.py" "$T/layout"
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
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2-$1:.3f}')"; }
BYTES=$(du -sb "$T/store/blobs" | cut -f1)

log "export + import"
t0=$(now); IMAGELOCK_STORE="$T/store" "$BIN" -q export "$T/bundle.tar.zst"; t1=$(now)
IMAGELOCK_STORE="$T/store2" "$BIN" -q import "$T/bundle.tar.zst"; t2=$(now)
IL_EXPORT=$(secs "$t0" "$t1"); IL_IMPORT=$(secs "$t1" "$t2")
"$BIN" -q --store "$T/store2" fsck
t0=$(now); skopeo sync --src yaml --dest dir --src-tls-verify=false "$T/sync.yml" "$T/skdir" >/dev/null; t1=$(now)
cp -r "$T/skdir" "$T/skdir-copy"; t2=$(now)
SK_SYNC=$(secs "$t0" "$t1"); SK_COPY=$(secs "$t1" "$t2")

log "push to the mirror"
t0=$(now); IMAGELOCK_STORE="$T/store" "$BIN" -q push "$MIRROR/il"; t1=$(now)
IL_PUSH=$(secs "$t0" "$t1")
t0=$(now); IMAGELOCK_STORE="$T/store" "$BIN" -q push "$MIRROR/il"; t1=$(now)
IL_PUSH_AGAIN=$(secs "$t0" "$t1")
sed "s|^$ORIGIN:|$ORIGIN:|" "$T/sync.yml" >/dev/null
t0=$(now); skopeo sync --src yaml --dest docker --src-tls-verify=false --dest-tls-verify=false "$T/sync.yml" "$MIRROR/sk" >/dev/null; t1=$(now)
SK_PUSH=$(secs "$t0" "$t1")

ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }
echo
echo "imagelock: $BIN ($("$BIN" --version)); skopeo: $(skopeo --version); $(nproc) cores; $BYTES bytes of blobs, 31 images"
printf '%-44s %10s %10s %8s\n' case imagelock skopeo ratio
printf '%-44s %9ss %9ss %8s\n' "export+import vs sync --dest dir + cp -r" "$(python3 -c "print(f'{$IL_EXPORT+$IL_IMPORT:.3f}')")" "$(python3 -c "print(f'{$SK_SYNC+$SK_COPY:.3f}')")" "$(ratio "$SK_SYNC+$SK_COPY" "$IL_EXPORT+$IL_IMPORT")"
printf '%-44s %9ss %9ss %8s\n' "  export / skopeo sync --dest dir" "$IL_EXPORT" "$SK_SYNC" ""
printf '%-44s %9ss %9ss %8s\n' "  import / cp -r" "$IL_IMPORT" "$SK_COPY" ""
printf '%-44s %9ss %9ss %8s\n' "push to a second registry (cold)" "$IL_PUSH" "$SK_PUSH" "$(ratio "$SK_PUSH" "$IL_PUSH")"
printf '%-44s %9ss\n' "push again (nothing to transfer)" "$IL_PUSH_AGAIN"
echo "bundle: $(du -b "$T/bundle.tar.zst" | cut -f1) bytes"
