#!/usr/bin/env python3
"""Build, offline, a small OCI image for the containerd end-to-end test.

    mkimage.py BUSYBOX OUT.tar IMAGE_NAME [LAYERS]

Writes an OCI image layout tarball (oci-layout, index.json, blobs/sha256/...)
with three gzip layers on top of busybox:

layer 1 (base)
  bin/busybox + symlinks (sh, ls, cat, stat, ...), etc/passwd, etc/group,
  tmp (1777), and under /data:
    keep.txt, modify.txt, rmme.txt        read / copy-up-modify / delete in the container
    deleteme.txt                          whited out by layer 2 (.wh.deleteme.txt)
    opaque/old1.txt, opaque/sub/old2.txt  hidden by layer 2's opaque marker
    gone-dir/{a,b}                        whole directory whited out by layer 3
    hl-a, hl-b                            hard links (one inode, nlink 2)
    owned.txt                             uid 1234 gid 5678 mode 0640
    suid-bin                              mode 4755
    private/ (0700, 1000:1000) + secret   restrictive directory
    link-rel -> keep.txt, link-abs -> /data/keep.txt, link-dir -> private
layer 2
    .wh.deleteme.txt, opaque/.wh..wh..opq + opaque/new.txt
    hl2-a, hl2-b (hard links made in an upper layer)
    sgid-dir/ (2775, 0:4321), layer2.txt
layer 3
    modify.txt replaced ("layer3"), .wh.gone-dir, layer3.txt
    chowned.txt: re-added with uid 2000 gid 2001 mode 0604 (was 0:0 0644 in layer 1)
layer 4 (with LAYERS=4 or 5)
    layer4.txt
layer 5 (with LAYERS=5; the differ test's extras)
    extras/: user.* and security.capability xattrs, a fifo, character and block devices, a
    24 MiB file, a 120-byte name under 4 long directories and a symlink to it; private/
    (a directory below) replaced by a file, keep.txt (a file below) by a directory

Prints the manifest digest, then the chain ID of each layer, one a line.

    mkimage.py --bulk LAYERS,FILES,BIG BUSYBOX OUT.tar IMAGE_NAME

instead writes the many-file image of the unpack benchmark (bench/unpack.sh), gzip
level 6, LAYERS layers (at least 3), each with FILES small files (64 B - 8 KiB) in
nested directories that every layer shares (bulk/dNN/eN/lK-fNNNNN, 20 files per
leaf directory) and BIG larger files (bulk/big/lK-N.bin: 1, 2, 4, 1, ... MiB of
random bytes). Layer 1 also holds busybox (bin/, etc/, tmp/), so the image runs.
Layer 2 whites out bulk/d00/e0/l1-f00000 (.wh.) and makes bulk/d00/e1 opaque
(.wh..wh..opq; it then holds only layer 2's files). File contents come from a
seeded generator, so the image is the same every time. Output as above.

Every tar member has mtime 1700000000 so the image is reproducible.
"""

import gzip
import hashlib
import io
import json
import platform
import sys
import tarfile

MTIME = 1700000000
APPLETS = [
    "sh", "ls", "cat", "stat", "id", "echo", "rm", "mkdir", "touch", "test", "[",
    "grep", "wc", "head", "sleep", "sync", "readlink", "find", "cp", "mv", "ln",
    "chmod", "chown", "printf", "true", "false", "sed", "tr", "sort", "uniq", "dd",
    "env", "du", "df", "mount", "awk", "basename", "dirname", "seq", "xargs",
]


class Layer:
    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name, kind, mode, uid=0, gid=0):
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = MTIME
        return ti

    def dir(self, name, mode=0o755, uid=0, gid=0):
        self.tar.addfile(self._info(name + "/", tarfile.DIRTYPE, mode, uid, gid))

    def file(self, name, data, mode=0o644, uid=0, gid=0, xattrs=None):
        if isinstance(data, str):
            data = data.encode()
        ti = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        ti.size = len(data)
        # PAX SCHILY.xattr records, as containerd's differ writes them; binary values pass
        # through tarfile's surrogateescape.
        for key, value in (xattrs or {}).items():
            ti.pax_headers["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
        self.tar.addfile(ti, io.BytesIO(data))

    def special(self, name, kind, mode, major=0, minor=0):
        ti = self._info(name, kind, mode)
        ti.devmajor, ti.devminor = major, minor
        self.tar.addfile(ti)

    def symlink(self, name, target):
        ti = self._info(name, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.tar.addfile(ti)

    def hardlink(self, name, target, mode=0o644, uid=0, gid=0):
        # Like tar(1), repeat the target's metadata: applying the entry re-applies it.
        ti = self._info(name, tarfile.LNKTYPE, mode, uid, gid)
        ti.linkname = target
        self.tar.addfile(ti)

    def finish(self, compresslevel=9):
        """Returns (gzip blob, diff_id of the uncompressed tar)."""
        self.tar.close()
        raw = self.buf.getvalue()
        gz = io.BytesIO()
        with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=compresslevel) as g:
            g.write(raw)
        return gz.getvalue(), "sha256:" + hashlib.sha256(raw).hexdigest()


def base_layer(busybox, passwd, group):
    """A layer with what a container needs to run: busybox and its applets in bin/, etc/passwd,
    etc/group, tmp/ (1777)."""
    layer = Layer()
    layer.dir("bin")
    layer.file("bin/busybox", busybox, 0o755)
    for applet in APPLETS:
        layer.symlink("bin/" + applet, "busybox")
    layer.dir("etc")
    layer.file("etc/passwd", passwd)
    layer.file("etc/group", group)
    layer.dir("tmp", 0o1777)
    return layer


def bulk_layers(busybox, nlayers, nfiles, nbig):
    """The layers of the --bulk image (see the module docstring)."""
    import random

    rng = random.Random(20231114)
    per_dir = 20
    layers = []
    for k in range(1, nlayers + 1):
        if k == 1:
            layer = base_layer(busybox, "root:x:0:0:root:/root:/bin/sh\n", "root:x:0:\n")
        else:
            layer = Layer()
        layer.dir("bulk")
        made = set()
        if k == 2:
            for d in ("bulk/d00", "bulk/d00/e0", "bulk/d00/e1"):
                layer.dir(d)
                made.add(d)
            layer.file("bulk/d00/e0/.wh.l1-f00000", "")
            layer.file("bulk/d00/e1/.wh..wh..opq", "")
        for i in range(nfiles):
            j = i // per_dir
            d1, d2 = "bulk/d%02d" % (j // 10), "bulk/d%02d/e%d" % (j // 10, j % 10)
            for d in (d1, d2):
                if d not in made:
                    made.add(d)
                    layer.dir(d)
            size = int(64 * 2 ** rng.uniform(0, 7))  # 64 B - 8 KiB, log-uniform
            half = size // 2
            text = (b"layer %d file %d\n" % (k, i)) * (half // 16 + 1)
            layer.file("%s/l%d-f%05d" % (d2, k, i), rng.randbytes(size - half) + text[:half])
        if nbig:
            layer.dir("bulk/big")
        for b in range(nbig):
            layer.file("bulk/big/l%d-%d.bin" % (k, b), rng.randbytes((1 << (b % 3)) << 20))
        layer.file("bulk/layer%d.txt" % k, "layer%d\n" % k)
        layers.append(layer)
    return layers


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "--bulk":
        try:
            nlayers, nfiles, nbig = (int(x) for x in sys.argv[2].split(","))
        except ValueError:
            sys.exit("mkimage.py: --bulk takes LAYERS,FILES,BIG (three integers)")
        if nlayers < 3 or nfiles < 1 or nbig < 0:
            sys.exit("mkimage.py: --bulk needs LAYERS >= 3, FILES >= 1, BIG >= 0")
        busybox_path, out_path, image_name = sys.argv[3:6]
        with open(busybox_path, "rb") as f:
            busybox = f.read()
        write_image(bulk_layers(busybox, nlayers, nfiles, nbig), out_path, image_name, 6)
        return
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: mkimage.py BUSYBOX OUT.tar IMAGE_NAME [LAYERS (3 or 4)]\n"
                 "       mkimage.py --bulk LAYERS,FILES,BIG BUSYBOX OUT.tar IMAGE_NAME")
    busybox_path, out_path, image_name = sys.argv[1:4]
    nlayers = int(sys.argv[4]) if len(sys.argv) == 5 else 3
    if nlayers not in (3, 4, 5):
        sys.exit("mkimage.py: LAYERS must be 3, 4 or 5")
    with open(busybox_path, "rb") as f:
        busybox = f.read()

    l1 = base_layer(busybox, "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/data:/bin/sh\n",
                    "root:x:0:\napp:x:1000:\n")
    l1.dir("root", 0o700)
    l1.dir("data")
    l1.file("data/keep.txt", "lower keep\n")
    l1.file("data/modify.txt", "layer1\n")
    l1.file("data/rmme.txt", "remove me in the container\n")
    l1.file("data/cow.txt", "copy me up\n", 0o640, 1234, 5678)
    l1.file("data/deleteme.txt", "whited out by layer 2\n")
    l1.dir("data/opaque")
    l1.file("data/opaque/old1.txt", "hidden by the opaque dir\n")
    l1.dir("data/opaque/sub")
    l1.file("data/opaque/sub/old2.txt", "hidden too\n")
    l1.dir("data/gone-dir")
    l1.file("data/gone-dir/a", "a\n")
    l1.file("data/gone-dir/b", "b\n")
    l1.file("data/hl-a", "hard linked content\n")
    l1.hardlink("data/hl-b", "data/hl-a")
    l1.file("data/owned.txt", "owned by 1234:5678\n", 0o640, 1234, 5678)
    l1.file("data/suid-bin", "#!/bin/sh\necho suid\n", 0o4755)
    l1.file("data/chowned.txt", "ownership changed in layer 3\n")
    l1.dir("data/private", 0o700, 1000, 1000)
    l1.file("data/private/secret", "s3cret\n", 0o600, 1000, 1000)
    l1.symlink("data/link-rel", "keep.txt")
    l1.symlink("data/link-abs", "/data/keep.txt")
    l1.symlink("data/link-dir", "private")

    l2 = Layer()
    l2.dir("data")
    l2.file("data/.wh.deleteme.txt", "")
    l2.dir("data/opaque")
    l2.file("data/opaque/.wh..wh..opq", "")
    l2.file("data/opaque/new.txt", "new in layer 2\n")
    l2.file("data/hl2-a", "upper hard link\n", 0o600, 42, 43)
    l2.hardlink("data/hl2-b", "data/hl2-a", 0o600, 42, 43)
    l2.dir("data/sgid-dir", 0o2775, 0, 4321)
    l2.file("data/layer2.txt", "layer2\n")

    l3 = Layer()
    l3.dir("data")
    l3.file("data/modify.txt", "layer3\n")
    l3.file("data/.wh.gone-dir", "")
    l3.file("data/layer3.txt", "layer3\n")
    l3.file("data/chowned.txt", "ownership changed in layer 3\n", 0o604, 2000, 2001)

    l4 = Layer()
    l4.dir("data")
    l4.file("data/layer4.txt", "layer4\n")

    l5 = Layer()
    l5.dir("data")
    l5.dir("data/extras")
    l5.file("data/extras/xattrs", "xattrs\n", xattrs={"user.note": b"hello\nworld", "user.empty": b""})
    # cap_net_bind_service=ep: vfs_cap_data revision 2, effective flag, permitted bit 10.
    cap = (0x02000001).to_bytes(4, "little") + (1 << 10).to_bytes(4, "little") + bytes(12)
    l5.file("data/extras/capable", "#!/bin/sh\n", 0o755, xattrs={"security.capability": cap})
    l5.special("data/extras/fifo", tarfile.FIFOTYPE, 0o640)
    l5.special("data/extras/null", tarfile.CHRTYPE, 0o666, 1, 3)
    l5.special("data/extras/loop9", tarfile.BLKTYPE, 0o660, 7, 9)
    import random
    big = random.Random(5).randbytes(24 << 20)
    l5.file("data/extras/big.bin", big, 0o644, 1000, 1000)
    deep = "data/extras/" + "/".join(["a-rather-long-directory-name-%d" % i for i in range(4)])
    parts = deep.split("/")
    for i in range(2, len(parts) + 1):
        l5.dir("/".join(parts[:i]))
    l5.file(deep + "/" + "f" * 120, "long name\n")
    l5.symlink("data/extras/long-link", "/" + deep + "/" + "f" * 120)
    # A type change: layer 1's directory data/private becomes a file.
    l5.file("data/private", "now a file\n", 0o600, 1000, 1000)
    # And a file becomes a directory.
    l5.dir("data/keep.txt", 0o750, 7, 8)
    l5.file("data/keep.txt/inside", "inside\n")

    write_image((l1, l2, l3, l4, l5)[:nlayers], out_path, image_name)


def write_image(image_layers, out_path, image_name, compresslevel=9):
    """Writes the OCI layout tarball of image_layers (Layer objects, bottom first) and
    prints the manifest digest, then each layer's chain ID."""
    blobs = {}

    def add_blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    layers, diff_ids = [], []
    for layer in image_layers:
        gz, diff_id = layer.finish(compresslevel)
        layers.append({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": add_blob(gz),
            "size": len(gz),
        })
        diff_ids.append(diff_id)

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    config = json.dumps({
        "architecture": arch,
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/data",
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "mkimage.py layer %d" % (i + 1)}
                    for i in range(len(layers))],
    }, sort_keys=True).encode()
    config_desc = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": add_blob(config),
        "size": len(config),
    }
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": layers,
    }, sort_keys=True).encode()
    manifest_digest = add_blob(manifest)
    tag = image_name.rsplit(":", 1)[1] if ":" in image_name.rsplit("/", 1)[-1] else "latest"
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": len(manifest),
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {
                "io.containerd.image.name": image_name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }, sort_keys=True).encode()

    with tarfile.open(out_path, "w") as out:
        def put(name, data, mode=0o644):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), mode, MTIME
            out.addfile(ti, io.BytesIO(data))

        put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        put("index.json", index)
        for digest, data in sorted(blobs.items()):
            put("blobs/sha256/" + digest.split(":", 1)[1], data)

    # For the caller: the manifest digest, then each layer's chain ID.
    chain = []
    for d in diff_ids:
        chain.append(d if not chain else "sha256:" + hashlib.sha256((chain[-1] + " " + d).encode()).hexdigest())
    print(manifest_digest)
    for c in chain:
        print(c)


if __name__ == "__main__":
    main()
