#!/usr/bin/env bash
# A layer Apply held mid-way must not stall anybody else (issue 15): under containerd 1.7 with
# Strata as snapshotter and differ, an image import is stopped inside Strata's Apply (the
# pause point `apply-layer`, armed while a file exists), and meanwhile Prepare, Stat and
# Remove of other keys are timed from Strata's CLI; then the Apply is released and the
# import must finish. Prints p50/p99 of each operation before and during the hold; asserts
# only what cannot flake: every operation completes while the Apply is still held, and the
# held import then succeeds.
#
#   tests/differ/held.sh STRATA-BINARY-WITH-CRASH-POINTS
#
# The binary must be built with `--features crash-points` (scripts/test does). Needs root.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$REPO/scripts/lib/common.sh"
. "$REPO/scripts/lib/containerd.sh"
require_root "$@"

STRATA=$(realpath -e -- "$1")
ensure_apt busybox-static python3
C17=$(ensure_containerd17)
export PATH="$C17:$PATH"

T=$(mktemp -d /tmp/strata-held.XXXXXX)
STRATA_PID="" CONTAINERD_PID="" IMPORTER=""
cleanup() {
    set +e
    rm -f "$T/hold"
    [ -n "$IMPORTER" ] && wait "$IMPORTER" 2>/dev/null
    [ -n "$CONTAINERD_PID" ] && kill_wait "$CONTAINERD_PID" 20
    [ -n "$STRATA_PID" ] && kill_wait "$STRATA_PID" 20
    containerd_reap "$T" held "$T/none" >/dev/null 2>&1
    unmount_under "$T"
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

STRATA_PAUSE_AT=apply-layer STRATA_PAUSE_FILE=$T/hold \
    "$STRATA" serve --root "$T/strata" --address "$T/strata.sock" --containerd-address "$T/c.sock" \
    >>"$T/strata.log" 2>&1 &
STRATA_PID=$!
wait_until 30 test -S "$T/strata.sock"
containerd_config "$T/containerd.toml" "$T/containerd" "$T/state" "$T/c.sock"
containerd_proxy_plugin "$T/containerd.toml" strata snapshot "$T/strata.sock"
containerd_proxy_plugin "$T/containerd.toml" strata-diff diff "$T/strata.sock"
printf '\n[plugins."io.containerd.service.v1.diff-service"]\n  default = ["strata-diff", "walking"]\n' >>"$T/containerd.toml"
containerd_start "$T/containerd.toml" "$T/containerd.log" "$T/c.sock"
python3 "$REPO/tests/containerd/mkimage.py" /bin/busybox "$T/img.tar" localhost/held:1 3 >/dev/null

cli() { "$STRATA" "$1" --address "$T/strata.sock" "${@:2}" >/dev/null; }
# rounds TAG N: N rounds of Prepare, Stat (info), Remove of fresh keys; one
# "op milliseconds" line per call into $T/TAG.
rounds() {
    local tag=$1 n=$2 i op t0 t1
    : >"$T/$tag"
    for ((i = 0; i < n; i++)); do
        for op in prepare info rm; do
            t0=$(date +%s%N)
            cli "$op" "$tag-$i"
            t1=$(date +%s%N)
            echo "$op $(((t1 - t0) / 1000))" >>"$T/$tag"
        done
    done
}
report() {
    python3 - "$T/before" "$T/during" <<'PY'
import statistics, sys
def load(p):
    d = {}
    for line in open(p):
        op, us = line.split()
        d.setdefault(op, []).append(int(us) / 1000)
    return d
before, during = load(sys.argv[1]), load(sys.argv[2])
def p99(v):
    v = sorted(v)
    return v[min(len(v) - 1, round(0.99 * (len(v) - 1)))]
print("held Apply: CLI round trips (ms), p50 / p99 over", len(before["info"]), "rounds")
for op in ("prepare", "info", "rm"):
    b, d = before[op], during[op]
    print(f"  {op:8} before {statistics.median(b):7.1f} / {p99(b):7.1f}   during {statistics.median(d):7.1f} / {p99(d):7.1f}")
PY
}

rounds before 30
touch "$T/hold"
ctr -a "$T/c.sock" -n held images import --snapshotter strata "$T/img.tar" >"$T/import.out" 2>&1 &
IMPORTER=$!
wait_until 60 grep -q 'pause point "apply-layer" reached' "$T/strata.log" ||
    { echo "held.sh: the Apply never reached its pause point" >&2; exit 1; }
rounds during 30
kill -0 "$IMPORTER" 2>/dev/null || { echo "held.sh: the import ended while its Apply was held" >&2; exit 1; }
report
rm "$T/hold"
if ! wait "$IMPORTER"; then
    IMPORTER=""
    echo "held.sh: the import failed once released:" >&2
    cat "$T/import.out" >&2
    exit 1
fi
IMPORTER=""
applied=$(grep -c "layer applied" "$T/strata.log" || true)
[ "$applied" -ge 3 ] || { echo "held.sh: Strata applied $applied layers, expected 3" >&2; exit 1; }
echo "held.sh: every operation completed while an Apply was held; the import then finished ($applied layers)"
