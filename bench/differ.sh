#!/usr/bin/env bash
# Strata's differ against containerd's walking differ, under containerd 1.7, side by side in
# one run on a fresh journaled ext4 loop disk.
#
#   bench/differ.sh [--pairs N] [--bulk LAYERS,FILES,BIG] [--changes N] [strata-binary]
#
# Three setups, each a private containerd 1.7 (and Strata) with its root on the loop disk:
#   strata     Strata overlay, diff service order ["strata-diff", "walking"]
#   walking    Strata overlay, ["walking"]: containerd's applier and differ on Strata's
#              snapshots
#   overlayfs  containerd's own overlayfs snapshotter, ["walking"]
# Unpack: the image (mkimage.py --bulk, default 6 layers x 3,000 files + 8 random files of
# 1-4 MiB each, gzip) is imported without unpacking into a fresh namespace, then
# `ctr snapshots unpack` is timed; the namespace is removed and garbage-collected after.
# Diff: a snapshot of a 10,000-file image (3 x 3,334 files) with N (default 100) files
# rewritten, then `ctr snapshots diff` is timed.
# Each pair runs every setup once, in an order that alternates between pairs. Printed per
# setup: median wall seconds, daemon CPU seconds (Strata + containerd and their children,
# e.g. unpigz), and bytes the daemons wrote (/proc/PID/io write_bytes); then the ratios
# strata/walking and strata/overlayfs as median (min-max) over the pairs.
# KEEP_LOGS=DIR keeps the daemons' logs (Strata's says per layer how long its apply took and
# whether the blob was read from containerd's directory). Needs root. Builds nothing: pass a release build (default
# $CARGO_TARGET_DIR/release/strata).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
. "$REPO/scripts/lib/common.sh"
. "$REPO/scripts/lib/containerd.sh"
. "$REPO/scripts/lib/loopdisk.sh"
require_root "$@"

PAIRS=5 BULK=6,3000,8 CHANGES=100
while [ $# -gt 0 ]; do
    case "$1" in
        --pairs) PAIRS=$2; shift 2 ;;
        --bulk) BULK=$2; shift 2 ;;
        --changes) CHANGES=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) break ;;
    esac
done
STRATA=$(realpath -e -- "${1:-$CARGO_TARGET_DIR/release/strata}")
ensure_apt runc busybox-static python3 e2fsprogs
export PATH="$(ensure_containerd17):$PATH"

T=$(mktemp -d /tmp/strata-differ-bench.XXXXXX)
declare -A SPID CPID
cleanup() {
    set +e
    local s
    for s in "${!CPID[@]}"; do kill_wait "${CPID[$s]}" 20 || true; done
    for s in "${!SPID[@]}"; do kill_wait "${SPID[$s]}" 20 || true; done
    containerd_reap "$T" bench "$T/none" 2>/dev/null || true
    unmount_under "$T" || true
    loopdisk_release "$T"
    [ -n "${KEEP_LOGS:-}" ] && cp "$T"/*.log "$KEEP_LOGS"/ 2>/dev/null; rm -rf "$T"
}
trap cleanup EXIT INT TERM

loopdisk_make "$T/disk.img" "$T/disk" 12G ext4
D=$T/disk
echo "building images (--bulk $BULK; diff base 3,3334,0)..." >&2
mapfile -t UNPACK < <(python3 "$REPO/tests/containerd/mkimage.py" --bulk "$BULK" /bin/busybox "$T/unpack.tar" localhost/bench:unpack)
mapfile -t BASE < <(python3 "$REPO/tests/containerd/mkimage.py" --bulk 3,3334,0 /bin/busybox "$T/base.tar" localhost/bench:base)

SETUPS=(strata walking overlayfs)
for s in "${SETUPS[@]}"; do
    R=$D/$s
    mkdir -p "$R"
    config=$R/containerd.toml
    if [ "$s" = overlayfs ]; then
        containerd_config "$config" "$R/containerd" "$R/state" "$R/c.sock" overlayfs
    else
        containerd_config "$config" "$R/containerd" "$R/state" "$R/c.sock"
        containerd_proxy_plugin "$config" strata snapshot "$R/strata.sock"
        containerd_proxy_plugin "$config" strata-diff diff "$R/strata.sock"
        "$STRATA" serve --root "$R/strata" --address "$R/strata.sock" --containerd-address "$R/c.sock" \
            >>"$T/$s-strata.log" 2>&1 &
        SPID[$s]=$!
        wait_until 30 test -S "$R/strata.sock"
    fi
    order='"walking"'
    [ "$s" = strata ] && order='"strata-diff", "walking"'
    printf '\n[plugins."io.containerd.service.v1.diff-service"]\n  default = [%s]\n' "$order" >>"$config"
    # Debug logging costs containerd time on every request: measure at info.
    sed -i 's/level = "debug"/level = "info"/' "$config"
    containerd_start "$config" "$T/$s-containerd.log" "$R/c.sock"
    CPID[$s]=$CONTAINERD_PID
done

snapshotter() { if [ "$1" = overlayfs ]; then echo overlayfs; else echo strata; fi; }
pids() { echo "${CPID[$1]}" ${SPID[$1]:-}; }
# cpu_ticks PID...: user+system time of PIDs and their reaped children, in clock ticks.
cpu_ticks() {
    local p sum=0
    for p in "$@"; do
        sum=$((sum + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat")))
    done
    echo "$sum"
}
written() {
    local p sum=0
    for p in "$@"; do sum=$((sum + $(awk '/^write_bytes/ {print $2}' "/proc/$p/io"))); done
    echo "$sum"
}
TICK=$(getconf CLK_TCK)

# measure SETUP CMD...: runs CMD, prints "wall cpu bytes" for the setup's daemons.
measure() {
    local s=$1 c0 w0 t0 t1
    shift
    sync
    c0=$(cpu_ticks $(pids "$s")) w0=$(written $(pids "$s"))
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    echo "$(echo "$t1 - $t0" | bc) $(echo "($(cpu_ticks $(pids "$s")) - $c0) / $TICK" | bc -l) $(($(written $(pids "$s")) - w0))"
}

round_unpack() {
    local s=$1 n=$2 sock=$D/$1/c.sock sn
    sn=$(snapshotter "$s")
    ctr -a "$sock" -n "u$n" images import --no-unpack "$T/unpack.tar" >/dev/null
    measure "$s" ctr -a "$sock" -n "u$n" snapshots unpack --snapshotter "$sn" "${UNPACK[0]}"
    ctr -a "$sock" -n "u$n" images rm localhost/bench:unpack >/dev/null
    containerd_gc "$sock" "u$n" "gc$n"
}

prepare_diff() {
    local s=$1 sock=$D/$1/c.sock sn m=$T/mnt-$1
    sn=$(snapshotter "$s")
    ctr -a "$sock" -n base images import --snapshotter "$sn" "$T/base.tar" >/dev/null
}

round_diff() {
    local s=$1 n=$2 sock=$D/$1/c.sock sn m=$T/mnt-$1
    sn=$(snapshotter "$s")
    mkdir -p "$m"
    ctr -a "$sock" -n base snapshots --snapshotter "$sn" prepare "w$n" "${BASE[3]}" >/dev/null
    ctr -a "$sock" -n base snapshots --snapshotter "$sn" mounts "$m" "w$n" | sh
    find "$m/bulk" -type f -name 'l2-*' | sort | head -n "$CHANGES" | while read -r f; do echo "changed $n" >"$f"; done
    umount "$m"
    measure "$s" ctr -a "$sock" -n base snapshots --snapshotter "$sn" diff "w$n"
    ctr -a "$sock" -n base snapshots --snapshotter "$sn" rm "w$n" >/dev/null
}

for s in "${SETUPS[@]}"; do prepare_diff "$s"; done
declare -A RES
for ((i = 0; i < PAIRS; i++)); do
    if ((i % 2)); then order=(overlayfs walking strata); else order=(strata walking overlayfs); fi
    for s in "${order[@]}"; do
        RES[unpack,$s,$i]=$(round_unpack "$s" "$i")
        RES[diff,$s,$i]=$(round_diff "$s" "$i")
        echo "pair $((i + 1))/$PAIRS $s: unpack ${RES[unpack,$s,$i]} diff ${RES[diff,$s,$i]}" >&2
    done
done

for what in unpack diff; do
    {
        for s in "${SETUPS[@]}"; do
            for ((i = 0; i < PAIRS; i++)); do echo "$what $s $i ${RES[$what,$s,$i]}"; done
        done
    } >"$T/$what.txt"
    python3 - "$T/$what.txt" "$what" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
what = sys.argv[2]
data = {}
for w, s, i, wall, cpu, wb in rows:
    data.setdefault(s, {})[int(i)] = (float(wall), float(cpu), int(wb))
print(f"\n{what}: median over {len(data['strata'])} pairs")
print(f"  {'setup':10} {'wall s':>8} {'cpu s':>8} {'MiB written':>12}")
for s, d in data.items():
    v = list(d.values())
    print(f"  {s:10} {statistics.median(x[0] for x in v):8.3f} {statistics.median(x[1] for x in v):8.3f} {statistics.median(x[2] for x in v) / 2**20:12.1f}")
for other in ("walking", "overlayfs"):
    for k, name in ((0, "wall"), (1, "cpu")):
        r = [data["strata"][i][k] / data[other][i][k] for i in data["strata"] if data[other][i][k] > 0]
        print(f"  strata/{other} {name}: {statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})")
PY
done
