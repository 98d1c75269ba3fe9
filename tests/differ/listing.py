#!/usr/bin/env python3
"""Canonical listings, to compare what two differs produced.

    listing.py tree DIR      one line per entry under DIR
    listing.py layer FILE    one line per entry of a layer (tar, gzip or zstd-less tar.gz)

tree: path, type, mode (with setuid/setgid/sticky), uid:gid, and per type: size, SHA-256 and
mtime of files, link target of symlinks, device numbers, then every xattr but overlayfs'
own trusted.overlay.*, then a hard-link group (files sharing an inode get the same number,
numbered in path order). Directory times are left out: applying writes directories' children
after them, and both differs restore them, but a view's mount point itself is not part of
the tree.

layer: name (without a trailing slash), type, mode, uid:gid, size, SHA-256 of the content,
link target, device numbers, mtime (not for whiteouts: containerd's differ stamps them with
the time of the diff), and the security.capability xattr (the only one containerd's walking
differ writes; Strata keeps them all).
"""

import gzip
import hashlib
import os
import stat
import sys
import tarfile


def tree(root):
    lines, groups = [], {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            mode = st.st_mode
            kind = ("dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else
                    "symlink" if stat.S_ISLNK(mode) else "char" if stat.S_ISCHR(mode) else
                    "block" if stat.S_ISBLK(mode) else "fifo" if stat.S_ISFIFO(mode) else "other")
            line = "%s %s %o %d:%d" % (rel, kind, stat.S_IMODE(mode), st.st_uid, st.st_gid)
            if kind == "file":
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                line += " size=%d sha256=%s mtime=%d" % (st.st_size, h.hexdigest(), int(st.st_mtime))
                if st.st_nlink > 1:
                    line += " link-group=%d" % groups.setdefault(st.st_ino, len(groups))
            elif kind == "symlink":
                line += " -> " + os.readlink(path)
            elif kind in ("char", "block"):
                line += " dev=%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
            if kind != "symlink":
                for key in sorted(os.listxattr(path, follow_symlinks=False)):
                    if not key.startswith("trusted.overlay."):
                        value = os.getxattr(path, key, follow_symlinks=False)
                        line += " xattr:%s=%s" % (key, value.hex())
            lines.append(line)
    return lines


def layer(path):
    with open(path, "rb") as f:
        magic = f.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    lines = []
    with opener(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for ti in tar:
            name = ti.name.rstrip("/")
            kind = {tarfile.DIRTYPE: "dir", tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file",
                    tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink",
                    tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block",
                    tarfile.FIFOTYPE: "fifo"}.get(ti.type, "other")
            line = "%s %s %o %d:%d" % (name, kind, ti.mode, ti.uid, ti.gid)
            if kind == "file":
                data = tar.extractfile(ti).read()
                line += " size=%d sha256=%s" % (len(data), hashlib.sha256(data).hexdigest())
            if kind in ("symlink", "hardlink"):
                line += " -> " + ti.linkname
            if kind in ("char", "block"):
                line += " dev=%d,%d" % (ti.devmajor, ti.devminor)
            if not os.path.basename(name).startswith(".wh."):
                line += " mtime=%d" % int(ti.mtime)
            cap = ti.pax_headers.get("SCHILY.xattr.security.capability")
            if cap is not None:
                line += " cap=" + cap.encode("utf-8", "surrogateescape").hex()
            lines.append(line)
    return sorted(lines)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("tree", "layer"):
        sys.exit(__doc__)
    lines = tree(sys.argv[2]) if sys.argv[1] == "tree" else layer(sys.argv[2])
    sys.stdout.write("".join(line + "\n" for line in lines))


if __name__ == "__main__":
    main()
