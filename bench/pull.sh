#!/usr/bin/env bash
# Pull + unpack from a loopback registry: Strata's remote-snapshot path (Strata fetches and
# applies each layer itself, containerd skips it) against containerd's built-in overlayfs
# snapshotter with an ordinary pull (containerd fetches into its content store and applies).
# Both pulls use the same client (tests/pull's stratapull: client.Pull with WithPullUnpack
# and the snapshotter-info labels, as CRI pulls), the same containerd 1.6, the same registry
# (Debian's docker-registry on 127.0.0.1, storage on the root filesystem).
#
# The image: tests/containerd/mkimage.py --bulk LAYERS,FILES,BIG (default 8 layers of 1,000
# small files and 10 random 1-4 MiB files each, ~210 MB unpacked), built offline, pushed
# once with skopeo. Each snapshotter's data, and containerd's root (bolt metadata and
# content store), are on their own fresh journaled ext4 loop disk.
#
# Per pair (alternating who goes first), per side: the pull's wall time; then syncfs of
# every disk; bytes written = the block layer's written sectors of the three loop devices
# (/sys/block/loopN/stat) across pull + sync; CPU = user + system seconds of containerd,
# Strata and the client during the pull. Then `ctr images rm --sync` + GC empties the side
# (checked: no snapshot, no content).
#
#   sudo bench/pull.sh [--pairs N] [--layers N] [--files N] [--big N]
#                      [--strata PATH] [--work-dir DIR] [--disk-size SIZE] [--port N]
#
# Defaults: 5 pairs, --strata $CARGO_TARGET_DIR/release/strata (build it with
# `cargo build --release --workspace --bins`), work dir /var/tmp/strata-pull-bench-run.
# Needs root. Prints every sample and medians with min..max; writes nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
. scripts/lib/common.sh
. scripts/lib/containerd.sh
. scripts/lib/loopdisk.sh

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
die() { echo "pull.sh: error: $*" >&2; exit 2; }
note() { echo "pull.sh: $*" >&2; }

PAIRS=5 LAYERS=8 FILES=1000 BIG=10 STRATA_ARG="" DISK_SIZE=3G PORT=5741
WORK=/var/tmp/strata-pull-bench-run
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --pairs) PAIRS=${2:?}; shift 2 ;;
    --layers) LAYERS=${2:?}; shift 2 ;;
    --files) FILES=${2:?}; shift 2 ;;
    --big) BIG=${2:?}; shift 2 ;;
    --strata) STRATA_ARG=${2:?}; shift 2 ;;
    --work-dir) WORK=${2:?}; shift 2 ;;
    --disk-size) DISK_SIZE=${2:?}; shift 2 ;;
    --port) PORT=${2:?}; shift 2 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
require_root
ensure_apt containerd runc docker-registry skopeo golang-go golang-github-containerd-containerd-dev e2fsprogs util-linux busybox-static
STRATA=$(realpath -e -- "${STRATA_ARG:-${CARGO_TARGET_DIR:-/var/tmp/strata-target}/release/strata}") ||
  die "strata binary not found; build it (cargo build --release --workspace --bins) or pass --strata"

R=$WORK/run-$$ NS=bench
CSOCK=$R/containerd.sock SSOCK=$R/strata.sock
SPID="" CPID="" RPID=""
containerd_run_dirs_note
teardown() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  kill_wait "$CPID" 10; kill_wait "$SPID" 10; kill_wait "$RPID" 10
  containerd_reap "$R" "$NS" "$R/state"
  loopdisk_release "$R"
  containerd_run_dirs_rm "$NS"
  if [ -z "$(mounts_under "$R")" ] && [ -z "$(loops_of "$R")" ]; then rm -rf "$R"; else note "could not clean $R up"; rc=1; fi
  exit "$rc"
}
trap teardown EXIT
trap 'note "interrupted"; exit 130' INT TERM HUP
mkdir -p "$R/state"

note "building stratapull (offline, GOPATH mode)"
(cd "$REPO/tests/pull/gopath" && GO111MODULE=off GOPATH="$REPO/tests/pull/gopath:/usr/share/gocode" GOPROXY=off \
  CGO_ENABLED=0 GOCACHE=/var/tmp/strata-gocache go build -p 1 -o "$R/stratapull" stratapull) || die "building stratapull"

note "generating the image (--bulk $LAYERS,$FILES,$BIG)"
REF=127.0.0.1:$PORT/bench/pull:1
python3 "$REPO/tests/containerd/mkimage.py" --bulk "$LAYERS,$FILES,$BIG" /bin/busybox "$R/image.tar" "$REF" >"$R/ids"
mkdir -p "$R/registry"
cat >"$R/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $R/registry
http:
  addr: 127.0.0.1:$PORT
EOF
docker-registry serve "$R/registry.yml" >"$R/registry.log" 2>&1 &
RPID=$!
wait_until 20 curl -sf "http://127.0.0.1:$PORT/v2/" || die "the registry did not start: $(tail -3 "$R/registry.log")"
skopeo copy -q --dest-tls-verify=false "oci-archive:$R/image.tar" "docker://$REF" || die "skopeo push"
read -r COMPRESSED UNPACKED < <(python3 - "$R/image.tar" <<'EOF'
import json, sys, tarfile, gzip
t = tarfile.open(sys.argv[1]); idx = json.load(t.extractfile("index.json"))
m = json.load(t.extractfile("blobs/sha256/" + idx["manifests"][0]["digest"].split(":")[1]))
c = sum(l["size"] for l in m["layers"])
u = sum(len(gzip.decompress(t.extractfile("blobs/sha256/" + l["digest"].split(":")[1]).read())) for l in m["layers"])
print(c, u)
EOF
)
rm -f "$R/image.tar"
note "image: $LAYERS layers, $((COMPRESSED >> 20)) MiB compressed, $((UNPACKED >> 20)) MiB of tar"

note "making 3 loop disks ($DISK_SIZE each, ext4)"
for d in meta ovl strata; do loopdisk_make "$R/disk-$d.img" "$R/disk-$d" "$DISK_SIZE" ext4; done
LOOPS=$(for d in meta ovl strata; do basename "$(losetup -j "$R/disk-$d.img" | cut -d: -f1)"; done)

mkdir -p "$R/certs.d/127.0.0.1:$PORT"
echo "server = \"http://127.0.0.1:$PORT\"" >"$R/certs.d/127.0.0.1:$PORT/hosts.toml"
cat >"$R/strata.toml" <<EOF
root = "$R/disk-strata/root"
address = "$SSOCK"
containerd_address = ""
backend = "overlay"
backends = ["overlay"]
[pull]
hosts_dir = "$R/certs.d"
EOF
NO_COLOR=1 RUST_LOG=info setsid "$STRATA" serve --config "$R/strata.toml" </dev/null >"$R/strata.log" 2>&1 &
SPID=$!
wait_until 20 test -S "$SSOCK" || die "strata did not start: $(tail -n 5 "$R/strata.log")"
containerd_config "$R/containerd.toml" "$R/disk-meta/root" "$R/state" "$CSOCK" overlayfs
sed -i 's/level = "debug"/level = "info"/' "$R/containerd.toml"
printf '\n[plugins."io.containerd.snapshotter.v1.overlayfs"]\n  root_path = "%s"\n' "$R/disk-ovl/root" >>"$R/containerd.toml"
containerd_proxy_plugin "$R/containerd.toml" strata snapshot "$SSOCK"
containerd_start "$R/containerd.toml" "$R/containerd.log" "$CSOCK" || die "containerd did not start: $(tail -n 5 "$R/containerd.log")"
CPID=$CONTAINERD_PID
ctr_() { timeout 300 ctr -a "$CSOCK" -n "$NS" "$@"; }

written() { # sectors written on the three loop disks, in bytes
  local l s=0
  for l in $LOOPS; do s=$((s + $(awk '{print $7}' "/sys/block/$l/stat"))); done
  echo $((s * 512))
}
cpu_ticks() { # user + system clock ticks of containerd and Strata
  awk '{ s += $14 + $15 } END { print s }' "/proc/$CPID/stat" "/proc/$SPID/stat"
}
syncfs_all() { sync -f "$R/disk-meta" "$R/disk-ovl" "$R/disk-strata"; }
TCK=$(getconf CLK_TCK)
SAMPLES=$R/samples.tsv
: >"$SAMPLES"

measure() { # measure PAIR SNAPSHOTTER
  local p=$1 s=$2 b0 c0 t0 t1 b1 c1 client
  syncfs_all
  b0=$(written) c0=$(cpu_ticks)
  t0=$EPOCHREALTIME
  client=$( { TIMEFORMAT='%U %S'; time "$R/stratapull" "$CSOCK" "$NS" "$s" "$REF" >/dev/null; } 2>&1 ) ||
    die "[$s] pull failed: $client"
  t1=$EPOCHREALTIME
  c1=$(cpu_ticks)
  syncfs_all
  b1=$(written)
  local fell pulled
  fell=$(grep -c "containerd pulls it instead" "$R/strata.log" || true)
  [ "$fell" = 0 ] || die "Strata fell back (see $R/strata.log)"
  python3 -c 'import sys; p,s,t0,t1,b,c,tck,cu,cs=sys.argv[1:]
print("\t".join([p, s, "%.3f" % (float(t1)-float(t0)), b, "%.2f" % ((int(c))/int(tck) + float(cu) + float(cs))]))' \
    "$p" "$s" "$t0" "$t1" "$((b1 - b0))" "$((c1 - c0))" "$TCK" $client >>"$SAMPLES"
  tail -1 "$SAMPLES" | awk -F'\t' '{ printf "pull.sh: pair %s %-9s wall %6.2f s  written %7.1f MiB  cpu %6.2f s\n", $1, $2, $3, $4/1048576, $5 }' >&2
  ctr_ images rm --sync "$REF" >/dev/null
  containerd_gc "$CSOCK" "$NS" "gc-$p-$s"
  [ -z "$(ctr_ snapshots --snapshotter "$s" ls | tail -n +2)" ] || die "[$s] snapshots left after images rm"
  [ -z "$(ctr_ content ls -q)" ] || die "[$s] content left after images rm"
  syncfs_all
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for ((p = 1; p <= PAIRS; p++)); do
  if [ $((p % 2)) -eq 1 ]; then order=(strata overlayfs); else order=(overlayfs strata); fi
  for s in "${order[@]}"; do measure "$p" "$s"; done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$SAMPLES" "$LAYERS" "$COMPRESSED" "$UNPACKED" "$LOAD0" "$LOAD1" <<'EOF'
import statistics, sys
path, layers, comp, unp, l0, l1 = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(path)]
by = {}
for p, s, wall, written, cpu in rows:
    by.setdefault(s, []).append((int(p), float(wall), int(written) / 2**20, float(cpu)))
print()
print("Pull + unpack, %s layers, %.0f MiB compressed, %.0f MiB of tar; %d pairs, alternating; load %s -> %s"
      % (layers, int(comp) / 2**20, int(unp) / 2**20, len(by["strata"]), l0, l1))
print("%-30s %28s %28s %16s" % ("", "strata (remote path)", "overlayfs (ordinary pull)", "ratio (median)"))
ratios = {}
for i, (name, unit) in enumerate([("wall time", "s"), ("bytes written (3 disks)", "MiB"), ("CPU (containerd+strata+client)", "s")], 1):
    cells = []
    med = {}
    for s in ("strata", "overlayfs"):
        v = [r[i] for r in by[s]]
        med[s] = statistics.median(v)
        cells.append("%8.2f %s (%.2f..%.2f)" % (med[s], unit, min(v), max(v)))
    pair = sorted(a[i] / b[i] for a, b in zip(sorted(by["strata"]), sorted(by["overlayfs"])))
    print("%-30s %28s %28s %7.2fx (pairs %.2f..%.2f)" % (name, cells[0], cells[1], med["strata"] / med["overlayfs"], pair[0], pair[-1]))
EOF
