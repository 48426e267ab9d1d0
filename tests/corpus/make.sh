#!/usr/bin/env bash
# The interop corpus: OCI images whose layers were written by real builders, for
# `imagelock render` to be compared with `umoci unpack` (tests/cli/interop.rs runs it).
#
# Usage: tests/corpus/make.sh OUT
#
# Writes, from nothing downloaded:
#   OUT/layout       an OCI image layout, one tag per case
#   OUT/cases.tsv    one line per case: TAG, BUILDER, FEATURES, EXPECT (tab-separated)
#     EXPECT is `umoci` (render == `umoci unpack` of TAG), `umoci:OTHER` (umoci refuses TAG;
#     render == `umoci unpack` of OTHER, the same tree written another way), or
#     `refused:FAULT` (render refuses TAG and says the layer is FAULT: malformed, hostile,
#     or hit a local limit).
#
# Builders: buildah (vfs storage, chroot isolation: `from scratch`, `copy`, then `mount`,
# changes and `commit` for whiteouts), `umoci insert` (a root entry `/`, no padding or
# end-of-archive blocks, `--whiteout`, `--opaque`) and `umoci repack`, GNU tar (gnu format
# with old sparse files and long-name entries; posix format with PAX sparse 0.0, 0.1 and 1.0
# and xattrs), bsdtar (pax with sparse 1.0 and xattrs and a `.` root entry; gnutar format),
# and Python's tarfile (PAX and GNU formats, base-256 ids and times, duplicates, root entries,
# a lone zero block, no trailer). Layers made by tar tools are added verbatim with
# `umoci raw add-layer`. Needs: buildah, umoci, tar, bsdtar, python3, and root (buildah's
# vfs storage, owners, xattrs).
set -euo pipefail

OUT=${1:?usage: make.sh OUT}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export LC_ALL=C TZ=UTC
umask 022
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
L=$OUT/layout
W=$OUT/work
rm -rf "$L" "$W" "$OUT/cases.tsv"
mkdir -p "$W"
: >"$OUT/cases.tsv"

log() { printf 'corpus: %s\n' "$*" >&2; }
case_line() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$OUT/cases.tsv"; }

# ---------------------------------------------------------------- source trees
# tree DIR: the files every builder packs. Long names (a 200-byte file name, a 400-byte
# path), symlinks (relative, absolute, dangling, a 150-byte target), a hard-link chain
# across directories, xattrs on a file and a directory, a sparse file (data at 4 KiB and
# at the end of 4 MiB) and an all-hole one, setuid and private modes, a fifo, an empty
# file and directory, spaces and UTF-8 in names.
tree() {
    python3 - "$1" <<'PY'
import os, sys
root = sys.argv[1]
os.makedirs(root)
def p(*parts): return os.path.join(root, *parts)
def write(rel, data, mode=0o644):
    os.makedirs(os.path.dirname(p(rel)) or root, exist_ok=True)
    with open(p(rel), "wb") as f: f.write(data)
    os.chmod(p(rel), mode)
write("etc/hostname", b"corpus\n")
write("etc/gone", b"whited out by the upper layer\n", 0o600)
write("etc/shadow-ish", b"secret\n", 0o600)
os.makedirs(p("etc/private")); os.chmod(p("etc/private"), 0o750)
write("usr/bin/tool", b"#!/bin/sh\necho tool\n", 0o755)
write("usr/bin/su-ish", b"setuid\n", 0o4755)
write("usr/share/a name with spaces.txt", b"spaces\n")
write("usr/share/ünïcödé.txt", "ünïcödé\n".encode())
write("usr/share/empty", b"")
os.makedirs(p("var/empty"))
write("n" * 200, b"a 200-byte file name\n")
deep = os.path.join("deep", "d" * 150, "e" * 120, "f" * 100, "leaf.txt")
write(deep, b"a 400-byte path\n")
write("links/a", b"one inode, four names\n")
os.link(p("links/a"), p("links/b"))
os.link(p("links/b"), p("links/c"))
os.link(p("links/c"), p("usr/bin/tool-alias"))
os.symlink("usr/bin", p("bin"))
os.symlink("/etc/hostname", p("etc/abs-link"))
os.symlink("does/not/exist", p("dangling"))
os.symlink("../" + "t" * 147, p("usr/long-target"))
os.setxattr(p("usr/bin/tool"), "user.imagelock", b"kept")
os.setxattr(p("etc/private"), "user.dir", b"on a directory")
with open(p("sparse.bin"), "wb") as f:
    f.truncate(4 << 20)
    f.seek(4096); f.write(b"data in the middle")
    f.seek((4 << 20) - 3); f.write(b"end")
with open(p("holes-only.bin"), "wb") as f:
    f.truncate(1 << 20)
write("opq/old-1", b"hidden by an opaque whiteout\n")
write("opq/keep-dir/old-2", b"hidden too\n")
os.mkfifo(p("run-fifo"))
for d, dirs, files in os.walk(root):
    for n in dirs + files:
        os.utime(os.path.join(d, n), (1_600_000_000, 1_600_000_000), follow_symlinks=False)
PY
}

# upper DIR: a layer of changes as tar files carry them: whiteout files, an opaque
# directory, a replaced file, a new file.
upper() {
    mkdir -p "$1/etc" "$1/links" "$1/opq"
    : >"$1/etc/.wh.gone"
    : >"$1/links/.wh.c"
    : >"$1/opq/.wh..wh..opq"
    echo "new in the upper layer" >"$1/opq/new"
    echo "replaced" >"$1/etc/hostname"
}

# ---------------------------------------------------------------- the layout
log "an empty base image (umoci init, umoci new)"
umoci init --layout "$L" >/dev/null
umoci new --image "$L:empty" >/dev/null
tree "$W/tree"
upper "$W/upper"

# add_layers TAG FILE...: TAG = empty + the tar files, verbatim.
add_layers() {
    local tag=$1 from=empty; shift
    for layer in "$@"; do
        umoci raw add-layer --image "$L:$from" --tag "$tag" "$layer" >/dev/null
        from=$tag
    done
}

# ---------------------------------------------------------------- GNU tar
log "GNU tar layers"
gnutar() { tar --numeric-owner --owner=0 --group=0 "$@"; }
gnutar --format=gnu --sparse -cf "$W/gnu.tar" -C "$W/tree" .
gnutar --format=gnu -cf "$W/gnu-upper.tar" -C "$W/upper" .
add_layers gnutar-gnu "$W/gnu.tar" "$W/gnu-upper.tar"
gnutar --format=posix --sparse --xattrs -cf "$W/posix.tar" -C "$W/tree" .
gnutar --format=posix -cf "$W/posix-upper.tar" -C "$W/upper" .
add_layers gnutar-posix "$W/posix.tar" "$W/posix-upper.tar"
for version in 0.0 0.1; do
    gnutar --format=posix --sparse --sparse-version=$version --xattrs -cf "$W/posix-$version.tar" -C "$W/tree" .
    add_layers "gnutar-sparse-${version/./}" "$W/posix-$version.tar"
done
# Ids over octal's 7 digits: base-256 in gnu format, PAX records in posix format.
mkdir -p "$W/ids" && echo "big ids" >"$W/ids/owned" && chmod 640 "$W/ids/owned"
tar --numeric-owner --owner=3000000 --group=3000001 --format=gnu -cf "$W/ids-gnu.tar" -C "$W/ids" owned
tar --numeric-owner --owner=3000000 --group=3000001 --format=posix -cf "$W/ids-posix.tar" -C "$W/ids" owned
add_layers gnutar-big-ids "$W/ids-gnu.tar" "$W/ids-posix.tar"
# Old GNU sparse entries (type S), which umoci refuses; the reference is the posix layer.
case_line gnutar-gnu "GNU tar --format=gnu" "long names (L/K), old GNU sparse (S), hard-link chain, symlinks, fifo, whiteouts, opaque dir" umoci:gnutar-gnu-as-posix
# (gnu format keeps no xattrs: nor does the reference.)
gnutar --format=posix --sparse -cf "$W/posix-no-xattrs.tar" -C "$W/tree" .
add_layers gnutar-gnu-as-posix "$W/posix-no-xattrs.tar" "$W/gnu-upper.tar"
case_line gnutar-posix "GNU tar --format=posix" "PAX long names, PAX sparse 1.0, xattrs, hard-link chain, symlinks, fifo, whiteouts, opaque dir" umoci
case_line gnutar-sparse-00 "GNU tar --format=posix" "PAX sparse 0.0, xattrs" umoci
case_line gnutar-sparse-01 "GNU tar --format=posix" "PAX sparse 0.1, xattrs" umoci
case_line gnutar-big-ids "GNU tar --format=gnu, posix" "base-256 uid/gid, PAX uid/gid" umoci

# ---------------------------------------------------------------- bsdtar
log "bsdtar layers"
LC_ALL=C.UTF-8 bsdtar --format pax --numeric-owner --uid 0 --gid 0 -cf "$W/bsd-pax.tar" -C "$W/tree" .
LC_ALL=C.UTF-8 bsdtar --format pax --numeric-owner --uid 0 --gid 0 -cf "$W/bsd-upper.tar" -C "$W/upper" .
add_layers bsdtar-pax "$W/bsd-pax.tar" "$W/bsd-upper.tar"
case_line bsdtar-pax "bsdtar (libarchive) --format pax" "root entry ., PAX sparse 1.0, xattrs (SCHILY and LIBARCHIVE), long names, hard-link chain, symlinks, fifo, whiteouts, opaque dir" umoci
LC_ALL=C.UTF-8 bsdtar --format gnutar --numeric-owner --uid 0 --gid 0 -cf "$W/bsd-gnutar.tar" -C "$W/tree" .
add_layers bsdtar-gnutar "$W/bsd-gnutar.tar" "$W/bsd-upper.tar"
case_line bsdtar-gnutar "bsdtar (libarchive) --format gnutar" "root entry ., GNU long names (L/K), hard-link chain, symlinks, fifo, sparse file expanded" umoci

# ---------------------------------------------------------------- Python's tarfile
log "Python tarfile layers"
python3 "$HERE/layers.py" "$W/tree" "$W/py"
add_layers python-pax "$W/py/pax.tar" "$W/py/pax-upper.tar"
case_line python-pax "Python tarfile PAX_FORMAT" "PAX long names and links, xattrs, root entries / and ./, duplicates (last wins), hard-link chain, whiteouts, no end-of-archive blocks" umoci
add_layers python-gnu "$W/py/gnu.tar"
case_line python-gnu "Python tarfile GNU_FORMAT" "GNU long names (L/K), base-256 uid/gid and negative mtime" umoci
add_layers python-zero-block "$W/py/zero-block.tar"
add_layers python-zero-block-ref "$W/py/zero-block-ref.tar"
case_line python-zero-block "Python tarfile (edited)" "a lone zero block between entries" umoci:python-zero-block-ref
add_layers python-name-too-long "$W/py/name-too-long.tar"
case_line python-name-too-long "Python tarfile" "a 300-byte file name (over this file system's 255)" refused:limit
add_layers python-truncated "$W/py/truncated.tar"
case_line python-truncated "Python tarfile (cut)" "the stream ends inside a file's data" refused:malformed
add_layers python-size-disagrees "$W/py/size-disagrees.tar"
case_line python-size-disagrees "Python tarfile (edited)" "a PAX size other than the header's" refused:malformed

# ---------------------------------------------------------------- umoci insert and repack
log "umoci insert and repack"
umoci insert --image "$L:empty" --tag umoci-insert "$W/tree" / >/dev/null
umoci insert --image "$L:umoci-insert" "$W/upper/opq/new" /opt/inserted/new >/dev/null
umoci insert --image "$L:umoci-insert" --whiteout /etc/gone >/dev/null
mkdir -p "$W/opq-new" && echo "opaque replacement" >"$W/opq-new/only"
umoci insert --image "$L:umoci-insert" --opaque "$W/opq-new" /opq >/dev/null
case_line umoci-insert "umoci insert" "root entry /, no padding or end-of-archive blocks, --whiteout, --opaque, long names, sparse file expanded, hard-link chain, xattrs, symlinks, fifo" umoci
umoci unpack --image "$L:umoci-insert" "$W/bundle" >/dev/null
R=$W/bundle/rootfs
rm -rf "$R/links" "$R/etc/hostname" "$R/var/empty"
mkdir -p "$R/links" && echo "new chain" >"$R/links/x" && ln "$R/links/x" "$R/links/y" && ln "$R/links/y" "$R/links/z"
python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.repacked", b"yes")' "$R/links/x"
ln -s links/x "$R/to-x"
echo "repacked" >"$R/etc/hostname"
printf 'x%.0s' $(seq 300) >"$R/usr/share/empty"
umoci repack --image "$L:umoci-repack" "$W/bundle" >/dev/null
case_line umoci-repack "umoci repack" "whiteouts of files and a directory, a new hard-link chain, xattrs, symlink, changed files" umoci

# ---------------------------------------------------------------- buildah
log "buildah (vfs, chroot isolation)"
B=(buildah --root "$W/buildah/root" --runroot "$W/buildah/run" --storage-driver vfs)
export BUILDAH_ISOLATION=chroot
c=$("${B[@]}" from scratch)
"${B[@]}" copy "$c" "$W/tree" / >/dev/null
"${B[@]}" commit -q "$c" corpus-base >/dev/null
c=$("${B[@]}" from corpus-base)
m=$("${B[@]}" mount "$c")
rm -rf "$m/etc/gone" "$m/links/c" "$m/opq"
mkdir "$m/opq" && echo "rebuilt" >"$m/opq/new"
echo "replaced" >"$m/etc/hostname"
"${B[@]}" umount "$c" >/dev/null
"${B[@]}" commit -q "$c" corpus-upper >/dev/null
"${B[@]}" push -q corpus-upper "oci:$L:buildah" >/dev/null
"${B[@]}" rm -a >/dev/null
"${B[@]}" rmi -a -f >/dev/null 2>&1 || true
case_line buildah "buildah from scratch, copy, mount, commit" "PAX long names, sparse file expanded, hard-link chain, xattrs, symlinks, fifo, whiteouts (deleted file, deleted and re-made dir)" umoci

rm -rf "$W"
log "$(wc -l <"$OUT/cases.tsv") cases in $L"
