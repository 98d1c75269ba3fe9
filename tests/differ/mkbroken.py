#!/usr/bin/env python3
"""Images with a broken layer, for the differ's error paths (tests/differ/run.sh).

    mkbroken.py truncated OUT.tar NAME   one layer whose gzip stream stops half-way (its
                                         digest is that of the truncated bytes, so containerd
                                         stores it; only decompressing it fails)
    mkbroken.py plain OUT.tar NAME       one good layer (the test then corrupts its blob in
                                         containerd's content store: a digest mismatch)

Prints the manifest digest, then the layer's chain ID (as mkimage.py does).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "containerd"))
import mkimage  # noqa: E402


class Truncated(mkimage.Layer):
    def finish(self, compresslevel=9):
        gz, diff_id = super().finish(compresslevel)
        return gz[: len(gz) // 2], diff_id


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("truncated", "plain"):
        sys.exit(__doc__)
    kind, out, name = sys.argv[1:]
    layer = Truncated() if kind == "truncated" else mkimage.Layer()
    layer.dir("broken")
    import random
    layer.file("broken/data.bin", random.Random(kind).randbytes(1 << 20))
    mkimage.write_image([layer], out, name)


if __name__ == "__main__":
    main()
