"""Compares two rendered root filesystems (see make.sh and tests/cli/interop.rs).

Usage: compare.py A B [--owners]

Compares every path below A and B (the roots themselves are left out): type, permission
bits, size, content (SHA-256), symlink target, extended attributes, hard-link groups (the
paths that share an inode within the tree) and, with --owners, uid and gid. Prints each
difference and exits 1 when there is one; prints a one-line summary and exits 0 otherwise.
"""

import hashlib
import os
import stat
import sys

KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFSOCK: "socket",
}


def snapshot(root, owners):
    entries, inodes = {}, {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(d, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            kind = KINDS[stat.S_IFMT(st.st_mode)]
            entry = {"type": kind, "mode": oct(stat.S_IMODE(st.st_mode))}
            if kind == "file":
                digest = hashlib.sha256()
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        digest.update(chunk)
                entry["size"] = st.st_size
                entry["sha256"] = digest.hexdigest()
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            if kind == "symlink":
                entry["target"] = os.readlink(path)
                del entry["mode"]  # symlinks have no mode of their own
            else:
                entry["xattrs"] = {
                    key: os.getxattr(path, key, follow_symlinks=False).hex()
                    for key in sorted(os.listxattr(path, follow_symlinks=False))
                }
            if owners:
                entry["owner"] = (st.st_uid, st.st_gid)
            entries[rel] = entry
    groups = sorted(sorted(paths) for paths in inodes.values() if len(paths) > 1)
    return entries, groups


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    owners = "--owners" in sys.argv
    (a, a_groups), (b, b_groups) = (snapshot(root, owners) for root in args)
    problems = []
    for path in sorted(set(a) | set(b)):
        if path not in b:
            problems.append(f"only in {args[0]}: {path} {a[path]}")
        elif path not in a:
            problems.append(f"only in {args[1]}: {path} {b[path]}")
        elif a[path] != b[path]:
            fields = sorted(k for k in set(a[path]) | set(b[path]) if a[path].get(k) != b[path].get(k))
            diff = ", ".join(f"{k}: {a[path].get(k)} != {b[path].get(k)}" for k in fields)
            problems.append(f"differs: {path}: {diff}")
    if a_groups != b_groups:
        problems.append(f"hard-link groups differ:\n  {a_groups}\n  {b_groups}")
    if problems:
        print("\n".join(problems[:40]))
        if len(problems) > 40:
            print(f"... and {len(problems) - 40} more")
        sys.exit(1)
    print(f"identical: {len(a)} paths, {len(a_groups)} hard-link groups")


if __name__ == "__main__":
    main()
