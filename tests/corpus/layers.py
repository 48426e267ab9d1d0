"""Layers written with Python's tarfile for the interop corpus (see make.sh).

Usage: layers.py TREE OUT  (TREE: the corpus source tree; OUT: a directory to create)

Writes OUT/pax.tar, pax-upper.tar, gnu.tar, zero-block.tar, zero-block-ref.tar and the
refused cases name-too-long.tar, truncated.tar, size-disagrees.tar. Deterministic: fixed
times and owners.
"""

import io
import os
import sys
import tarfile

BLOCK = 512
MTIME = 1_600_000_000


def info(name, kind=tarfile.REGTYPE, mode=0o644, size=0, link="", uid=0, gid=0, mtime=MTIME, pax=None):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.size, ti.linkname = kind, mode, size, link
    ti.uid, ti.gid, ti.mtime = uid, gid, mtime
    ti.uname = ti.gname = ""
    if pax:
        ti.pax_headers = dict(pax)
    return ti


def build(fmt, entries, trailer=True):
    """A tar of (TarInfo, data) entries; without `trailer`, it ends right after the last
    entry's data (no padding, no end-of-archive blocks), as `umoci insert` writes."""
    buf = io.BytesIO()
    tar = tarfile.open(fileobj=buf, mode="w", format=fmt)
    last = 0
    for ti, data in entries:
        tar.addfile(ti, io.BytesIO(data) if data is not None else None)
        last = len(data or b"")
    if trailer:
        tar.close()
        return buf.getvalue()
    raw = buf.getvalue()
    return raw[: len(raw) - (-last % BLOCK)]


def from_tree(tree):
    """The tree's entries, as tarfile.gettarinfo sees them (hard links, symlinks, fifos,
    xattrs as SCHILY records), sparse files expanded."""
    entries = []
    tar = tarfile.TarFile(fileobj=io.BytesIO(), mode="w", format=tarfile.PAX_FORMAT)
    for d, dirs, files in os.walk(tree):
        dirs.sort()
        for n in sorted(dirs) + sorted(files):
            path = os.path.join(d, n)
            ti = tar.gettarinfo(path, os.path.relpath(path, tree))
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            xattrs = {}
            if not os.path.islink(path):
                for key in os.listxattr(path, follow_symlinks=False):
                    xattrs["SCHILY.xattr." + key] = os.getxattr(path, key, follow_symlinks=False).decode()
            ti.pax_headers = xattrs
            data = None
            if ti.isreg():
                with open(path, "rb") as f:
                    data = f.read()
            entries.append((ti, data))
    return entries


def main():
    tree, out = sys.argv[1], sys.argv[2]
    os.makedirs(out)

    def write(name, data):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)

    long_dir = "p" * 120 + "/" + "q" * 120
    pax = [
        # Root entries: `/` and `./` give the root its metadata.
        (info("/", tarfile.DIRTYPE, 0o755), None),
        (info("./", tarfile.DIRTYPE, 0o755), None),
        *from_tree(tree),
        (info(long_dir, tarfile.DIRTYPE, 0o755), None),
        (info(long_dir + "/leaf-with-a-long-path.txt", size=5), b"long\n"),
        (info("long-link", tarfile.SYMTYPE, 0o777, link="/" + "x" * 200), None),
        (info(long_dir + "/hard", tarfile.LNKTYPE, link="links/a"), None),
        # Duplicates: the last entry wins.
        (info("dup.txt", size=6), b"first\n"),
        (info("dup.txt", size=5, mode=0o600), b"last\n"),
        (info("dup-dir", tarfile.DIRTYPE, 0o700), None),
        (info("dup-dir", tarfile.DIRTYPE, 0o751), None),
        (info("became-link", size=5), b"file\n"),
        (info("became-link", tarfile.SYMTYPE, 0o777, link="dup.txt"), None),
        # The last entry's data ends the stream: no padding, no end-of-archive blocks.
        (info("zz-last", size=7), b"the end"),
    ]
    write("pax.tar", build(tarfile.PAX_FORMAT, pax, trailer=False))
    write(
        "pax-upper.tar",
        build(
            tarfile.PAX_FORMAT,
            [
                (info("etc/.wh.gone"), b""),
                (info("links/.wh.c"), b""),
                (info("opq/.wh..wh..opq"), b""),
                (info("opq/new", size=4), b"new\n"),
            ],
        ),
    )
    write(
        "gnu.tar",
        build(
            tarfile.GNU_FORMAT,
            [
                (info("g" * 180, size=4), b"gnu\n"),
                (info("gnu-long-link", tarfile.SYMTYPE, 0o777, link="h" * 180), None),
                # Over octal's reach: base-256 ids and a time before the epoch.
                (info("big-ids", size=3, uid=3_000_000, gid=3_000_001, mtime=-100), b"ids"),
            ],
        ),
    )
    a = (info("a", size=2), b"a\n")
    b = (info("b", size=2), b"b\n")
    ref = build(tarfile.USTAR_FORMAT, [a, b])
    write("zero-block-ref.tar", ref)
    # A lone zero block between the two entries (after a's header and data).
    cut = 2 * BLOCK
    write("zero-block.tar", ref[:cut] + bytes(BLOCK) + ref[cut:])
    write("name-too-long.tar", build(tarfile.PAX_FORMAT, [(info("n" * 300, size=3), b"300")]))
    whole = build(tarfile.USTAR_FORMAT, [a, (info("cut-short", size=5000), bytes(5000))])
    write("truncated.tar", whole[: 3 * BLOCK + 1000])
    size_ok = build(tarfile.PAX_FORMAT, [(info("sized", size=3, pax={"comment": "x"}), b"abc")])
    # The PAX record says 5 bytes, the header 3: readers that skip by one or the other part ways.
    # (the record is rewritten in place, same length, so the header's own fields still hold).
    assert b"13 comment=x\n" in size_ok
    write("size-disagrees.tar", size_ok.replace(b"13 comment=x\n", b"13 size=0005\n", 1))


if __name__ == "__main__":
    main()
